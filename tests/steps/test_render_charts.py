"""Chart axes: y tick labels drawn by the real Kaleido never repeat, whatever the values' range.

Every figure is drawn to SVG with one browser; the tick labels are read from the SVG's text.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from steps.render import charts

CASES = {
    # id: (y values, y_format, chart kind, the tick labels Kaleido draws)
    "percent-narrow": (
        [0.571, 0.575, 0.578, 0.583, 0.58],
        {"type": "percent", "decimals": 0},
        "line",
        ["57.2%", "57.4%", "57.6%", "57.8%", "58.0%", "58.2%"],
    ),
    "percent-wide": ([0.1, 0.5, 0.9], {"type": "percent"}, "line", ["20%", "40%", "60%", "80%"]),
    "percent-one-value": ([0.575] * 3, {"type": "percent"}, "line", ["0%", "50%", "100%", "150%"]),
    "currency-narrow": (
        [1.2, 1.35, 1.5],
        {"type": "currency"},
        "line",
        ["$1.20", "$1.25", "$1.30", "$1.35", "$1.40", "$1.45", "$1.50"],
    ),
    "currency-bars-from-zero": ([1.2, 1.35, 1.5], {"type": "currency"}, "bar", ["$0.0", "$0.5", "$1.0", "$1.5"]),
    "currency-wide": (
        [400000, 1200000],
        {"type": "currency", "decimals": 0},
        "line",
        ["$400,000", "$600,000", "$800,000", "$1,000,000", "$1,200,000"],
    ),
    "number-narrow": (
        [1000.1, 1000.2, 1000.4],
        {"type": "number"},
        "line",
        ["1,000.10", "1,000.15", "1,000.20", "1,000.25", "1,000.30", "1,000.35", "1,000.40"],
    ),
}


def figure(values, fmt, kind):
    data = {"columns": ["x", "y"], "values": [list(range(len(values))), values]}
    return charts.figure({"kind": kind, "x": "x", "y": ["y"], "y_format": fmt}, {"data": data}, "/sections/0")


@pytest.fixture(scope="module")
def ticks() -> dict[str, list[str]]:
    async def draw() -> dict[str, list[str]]:
        found = {}
        async with charts.ImageRenderer(charts.browser_path()) as images:
            for name, (values, fmt, kind, _) in CASES.items():
                svg = (await images.image(figure(values, fmt, kind), "svg")).decode()
                found[name] = re.findall(r'<g class="ytick">.*?<text[^>]*>([^<]*)</text>', svg)
        return found

    return asyncio.run(draw())


@pytest.mark.parametrize("name", list(CASES))
def test_y_tick_labels_never_repeat(ticks, name):
    labels = ticks[name]
    assert len(set(labels)) == len(labels)
    assert labels == CASES[name][3]


def test_decimals_are_a_minimum_for_ticks():
    assert figure([0.571, 0.583], {"type": "percent", "decimals": 0}, "line").layout.yaxis.tickformat == ".1%"
    assert figure([0.1, 0.9], {"type": "percent", "decimals": 2}, "line").layout.yaxis.tickformat == ".2%"
    assert figure([10, 90], {"type": "number"}, "line").layout.yaxis.tickformat == ",.0f"
