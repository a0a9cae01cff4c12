"""engine.model_errors: numbers and booleans are written as JSON numbers and booleans; unknown tags
and misspelt keys inside params get the engine's own messages with "did you mean" (issue 11 §9)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import PolicyError
from engine.params import coerce_param
from engine.validate import validate_document
from tests.conftest import policy

SOURCE = {"id": "src", "type": "core.value", "params": {"value": [{"region": "emea", "amount": 3}]}}


def problems_of(doc: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    with pytest.raises(PolicyError) as info:
        validate_document(doc)
    return [(p.pointer, p.message, p.hint) for p in info.value.problems]


def gate(**params: Any) -> dict[str, Any]:
    return {
        "id": "gate",
        "type": "transform.validate",
        "params": {"input": {"ref": "ctx.src"}, "columns": {"amount": {"dtype": "decimal"}}, **params},
    }


def frame(*ops: Any) -> dict[str, Any]:
    return {"id": "shape", "type": "transform.frame", "params": {"input": {"ref": "ctx.src"}, "ops": list(ops)}}


def report(*sections: Any) -> dict[str, Any]:
    return {
        "id": "rep",
        "type": "report.build",
        "params": {"report_id": "r", "title": "R", "sections": list(sections)},
    }


# -- a JSON string where a number or a boolean goes -------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(
            {"min_valid_ratio": "0.9"},
            ("/steps/1/params/min_valid_ratio", 'expected a number, got the string "0.9"', "drop the quotes: 0.9"),
            id="number",
        ),
        pytest.param(
            {"min_valid_ratio": "ninety percent"},
            ("/steps/1/params/min_valid_ratio", 'expected a number, got the string "ninety percent"', None),
            id="not-a-number-at-all",
        ),
        pytest.param(
            {"strict": "true"},
            ("/steps/1/params/strict", 'expected true or false, got the string "true"', "drop the quotes: true"),
            id="boolean",
        ),
        pytest.param(
            {"columns": {"amount": {"dtype": "decimal", "checks": [{"str_length": ["2", None]}]}}},
            (
                "/steps/1/params/columns/amount/checks/0/str_length/0",
                'expected an integer, got the string "2"',
                "drop the quotes: 2",
            ),
            id="nested-in-a-tuple",
        ),
    ],
)
def test_a_quoted_number_in_params_is_a_problem(params, expected):
    assert problems_of(policy(SOURCE, gate(**params))) == [expected]


def test_the_policys_own_numbers_and_booleans_must_not_be_quoted():
    doc = policy(
        SOURCE,
        max_concurrency="3",
        timeout_s="60",
        defaults={"timeout_s": "5", "retry": {"max_attempts": "2", "jitter": "false"}},
        schedule={"interval_minutes": "15", "enabled": "true"},
        retention={"days": "30"},
    )
    assert problems_of(doc) == [
        ("/defaults/retry/jitter", 'expected true or false, got the string "false"', "drop the quotes: false"),
        ("/defaults/retry/max_attempts", 'expected an integer, got the string "2"', "drop the quotes: 2"),
        ("/defaults/timeout_s", 'expected a number, got the string "5"', "drop the quotes: 5"),
        ("/max_concurrency", 'expected an integer, got the string "3"', "drop the quotes: 3"),
        ("/retention/days", 'expected a number, got the string "30"', "drop the quotes: 30"),
        ("/schedule/enabled", 'expected true or false, got the string "true"', "drop the quotes: true"),
        ("/schedule/interval_minutes", 'expected an integer, got the string "15"', "drop the quotes: 15"),
        ("/timeout_s", 'expected a number, got the string "60"', "drop the quotes: 60"),
    ]


def test_a_quoted_schema_version():
    assert problems_of(policy(SOURCE, schema_version="1")) == [
        ("/schema_version", "must be 1 (got '1')", "drop the quotes: 1")
    ]


def test_param_defaults_and_schedule_params_say_to_drop_the_quotes():
    doc = policy(
        SOURCE,
        params={"n": {"type": "integer", "default": "1"}, "ratio": {"type": "number"}},
        schedule={"interval_minutes": 15, "params": {"ratio": "0.5"}},
    )
    assert problems_of(doc) == [
        ("/params/n/default", "default '1' is not of type integer", "drop the quotes: 1"),
        ("/schedule/params/ratio", "parameter 'ratio' must be of type number, got '0.5'", "drop the quotes: 0.5"),
    ]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"ref": "ctx.params.ratio"}, id="ref"),
        pytest.param({"template": "{{ params.ratio }}"}, id="template"),
        pytest.param({"secret": "RATIO"}, id="secret"),
    ],
)
def test_an_expression_where_a_number_goes_is_resolved_at_run_time(value):
    validate_document(policy(SOURCE, gate(min_valid_ratio=value), params={"ratio": {"type": "number", "default": 1}}))


def test_enum_values_dates_and_lists_for_tuples_still_read_as_json_writes_them():
    step = gate(columns={"amount": {"dtype": "decimal", "checks": [{"in_range": [0, 10]}]}}, mode="quarantine")
    validate_document(
        policy(SOURCE, {**step, "on_error": "log_and_continue", "trigger_rule": "all_done", "timeout_s": 5})
    )


def test_param_on_the_command_line_is_still_converted():
    valid = validate_document(policy(SOURCE, params={"ratio": {"type": "number", "default": 1}}))
    assert coerce_param(valid.policy, "ratio", "0.9") == 0.9


# -- tagged unions: unknown and missing tags ----------------------------------------------------------


def test_a_misspelt_op_names_the_op_and_the_nearest_one():
    doc = policy(SOURCE, frame({"op": "select", "columns": ["region"]}, {"op": "group-by", "keys": ["region"]}))
    assert problems_of(doc) == [("/steps/1/params/ops/1/op", "unknown op 'group-by'", "did you mean 'group_by'?")]


def test_an_unknown_op_with_nothing_near_lists_the_ops():
    assert problems_of(policy(SOURCE, frame({"op": "explode"}))) == [
        (
            "/steps/1/params/ops/0/op",
            "unknown op 'explode'",
            "one of: select, rename, map_fields, cast, filter, derive, fill_null, dedupe, sort, limit, group_by, "
            "join, pivot",
        )
    ]


def test_an_op_without_op():
    assert problems_of(policy(SOURCE, frame({"by": ["region"]}))) == [
        (
            "/steps/1/params/ops/0/op",
            "required field 'op' is missing",
            "one of: select, rename, map_fields, cast, filter, derive, fill_null, dedupe, sort, limit, group_by, "
            "join, pivot",
        )
    ]


def test_a_misspelt_section_type_and_chart_kind():
    doc = policy(
        SOURCE,
        report(
            {"type": "data-table", "data": {"ref": "ctx.src"}},
            {"type": "chart", "kind": "barr", "data": {"ref": "ctx.src"}, "x": "region", "y": "amount"},
        ),
    )
    assert problems_of(doc) == [
        (
            "/steps/1/params/sections/0/type",
            "unknown section type 'data-table' (types: data_table, metric_card, chart, text, conditional_section; "
            "a plugin's own types contain a dot, like 'acme.map')",
            "did you mean 'data_table'?",
        ),
        (
            "/steps/1/params/sections/1/kind",
            "unknown chart kind 'barr' (kinds: line, bar, stacked_bar, area, pie, scatter, candlestick; "
            "a plugin's own kinds contain a dot, like 'acme.waterfall')",
            "did you mean 'bar'?",
        ),
    ]


# -- misspelt keys inside nested models ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param(
            frame({"op": "sort", "by": ["amount"], "decending": True}),
            ("/steps/1/params/ops/0/decending", "unknown field 'decending'", "did you mean 'descending'?"),
            id="op-key",
        ),
        pytest.param(
            frame({"op": "group_by", "keys": ["region"], "aggregate": {"n": {"column": "amount", "fnn": "sum"}}}),
            [
                ("/steps/1/params/ops/0/aggregate/n/fn", "required field 'fn' is missing", None),
                ("/steps/1/params/ops/0/aggregate/n/fnn", "unknown field 'fnn'", "did you mean 'fn'?"),
            ],
            id="inside-an-op",
        ),
        pytest.param(
            frame({"op": "sort", "by": ["amount"], "zzz": True}),
            ("/steps/1/params/ops/0/zzz", "unknown field 'zzz'", "allowed: op, by, descending"),
            id="nothing-near",
        ),
        pytest.param(
            report({"type": "metric_card", "label": "Total", "lable": "x", "value": 1}),
            ("/steps/1/params/sections/0/lable", "unknown field 'lable'", "did you mean 'label'?"),
            id="section-key",
        ),
        pytest.param(
            report({"type": "data_table", "data": [], "columns": [{"name": "a", "lable": "A"}]}),
            ("/steps/1/params/sections/0/columns/0/lable", "unknown field 'lable'", "did you mean 'label'?"),
            id="column-object-not-a-string",
        ),
        pytest.param(
            report({"type": "metric_card", "label": "T", "value": 1, "format": {"type": "currency", "decimels": 0}}),
            ("/steps/1/params/sections/0/format/decimels", "unknown field 'decimels'", "did you mean 'decimals'?"),
            id="format-object-not-a-word",
        ),
        pytest.param(
            report(
                {
                    "type": "conditional_section",
                    "condition": {"ref": "ctx.src", "op": "not_empty"},
                    "sections": [{"type": "text", "bdy": "hi"}],
                }
            ),
            ("/steps/1/params/sections/0/sections/0/bdy", "unknown field 'bdy'", "did you mean 'body'?"),
            id="nested-section",
        ),
        pytest.param(
            gate(columns={"amount": {"dtype": "decimal", "chekcs": [{"ge": 0}]}}),
            ("/steps/1/params/columns/amount/chekcs", "unknown field 'chekcs'", "did you mean 'checks'?"),
            id="column-rule",
        ),
    ],
)
def test_a_misspelt_key_in_a_nested_model_gets_did_you_mean(step, expected):
    assert problems_of(policy(SOURCE, step)) == (expected if isinstance(expected, list) else [expected])
