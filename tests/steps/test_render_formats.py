"""Number formats round half up, from the decimal a float prints as, in cards, tables and the fmt filter."""

from __future__ import annotations

import numpy as np
import pytest

from steps.render.formats import fixed, format_delta, format_value
from tests.steps.test_render_sections import html_of, report_policy


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (1234.5, {"type": "currency", "decimals": 0}, "$1,235"),  # the docs' table
        (1234.5, "integer", "1,235"),
        (2.5, "integer", "3"),
        (-2.5, "integer", "-3"),  # halves round away from zero
        (-1234.5, {"type": "currency", "decimals": 0}, "-$1,235"),
        (2.675, "number", "2.68"),  # the float is 2.67499999...: its repr, 2.675, is rounded
        (1.005, "number", "1.01"),
        (np.float64(2.675), "number", "2.68"),  # numpy's repr names its type: its float value counts
        (0.125, {"type": "number", "decimals": 2}, "0.13"),
        (0.0125, "percent", "1.3%"),  # 0.0125 * 100 is not computed in binary
        (0.12345, {"type": "percent", "decimals": 2}, "12.35%"),
        (-0.004, "currency", "$0.00"),  # rounds to zero: no sign
        (-0.4, "integer", "0"),
        (1e21, "number", "1,000,000,000,000,000,000,000.00"),
        (12345678901234567890, "integer", "12,345,678,901,234,567,890"),
        (1234.5, {"type": "currency", "decimals": 0, "rounding": "half_even"}, "$1,234"),
        (2.5, {"type": "integer", "rounding": "half_even"}, "2"),
        (3.5, {"type": "integer", "rounding": "half_up"}, "4"),
    ],
)
def test_numbers_round_half_up(value, fmt, text):
    assert format_value(value, fmt) == text


def test_a_delta_rounds_half_up_too():
    assert format_delta(1234.5, 0.0125, {"type": "currency", "decimals": 0}) == "+$1,235 (+1.3%)"
    assert format_delta(-0.00125, None, {"type": "percent", "decimals": 2}) == "−0.13 pts"
    assert format_delta(2.5, 0.0125, {"type": "integer", "rounding": "half_even"}) == "+2 (+1.2%)"


def test_an_unknown_rounding_is_named():
    with pytest.raises(ValueError) as exc:
        fixed(1.5, 0, "ceiling")
    assert str(exc.value) == "rounding must be one of 'half_up', 'half_even', not 'ceiling'"


def test_cards_tables_and_the_fmt_filter_use_the_same_rounding(run, store):
    rows = [{"item": "a", "amount": 1234.5}, {"item": "b", "amount": 2.675}]
    sections = [
        {
            "type": "metric_card",
            "id": "first",
            "label": "First",
            "format": {"type": "currency", "decimals": 0},
            "value": {"data": {"ref": "ctx.rows"}, "column": "amount", "agg": "max"},
        },
        {
            "type": "data_table",
            "data": {"ref": "ctx.rows"},
            "columns": [{"name": "item"}, {"name": "amount", "format": {"type": "number", "decimals": 2}}],
        },
        {"type": "text", "template": "Largest {{ metrics.first.value | fmt('integer') }}."},
        {
            "type": "text",
            "template": "Even {{ 1234.5 | fmt({'type': 'currency', 'decimals': 0, 'rounding': 'half_even'}) }}.",
        },
    ]
    html = html_of(store, run(report_policy(sections, rows=rows, render=("html",))))
    assert '<div class="metric-value size-xl">$1,235</div>' in html
    assert ">2.68</td>" in html and ">1,234.50</td>" in html
    assert "<p>Largest 1,235.</p>" in html
    assert "<p>Even $1,234.</p>" in html
