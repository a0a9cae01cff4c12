"""Hostile input meets the documented limits (engine/limits.py): a clear step error or a located
problem, never a traceback, a frozen process or a run left RUNNING."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine import LimitError, PolicyError, checked_operator, sandbox_environment
from engine.artifacts import ArtifactStore
from engine.limits import MAX_DEPTH, find_too_deep
from engine.outputs import decode, encode
from engine.validate import validate_document
from tests.conftest import policy

DEEP = "[" * 600 + "]" * 600
TOO_DEEP = "output of step 'x' is nested deeper than 200 levels at /data/0/0/0/0/0/0/0/..."


def nested(levels: int, inner: object = 1) -> object:
    value = inner
    for _ in range(levels):
        value = [value]
    return value


def alert() -> dict[str, object]:
    return {"id": "alert", "type": "core.value", "params": {"value": {"template": "failed: {{ run.error }}"}}}


def step_output(store, run_id: str, step: str) -> object:
    (row,) = [r for r in store.get_steps(run_id) if r["step_id"] == step]
    return json.loads(row["output_json"]) if row["output_json"] else None


@pytest.fixture
def deep_json_server() -> Iterator[str]:
    """A loopback server answering every GET with 600 nested JSON arrays."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = DEEP.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/deep"
    httpd.shutdown()
    httpd.server_close()


# -- item 1: deeply nested step outputs -----------------------------------------------------------


def test_fetch_http_of_deeply_nested_json_fails_the_step_and_runs_on_failure(run, store, deep_json_server):
    doc = policy(
        {"id": "x", "type": "fetch.http", "params": {"url": deep_json_server}},
        on_failure=[alert()],
        allowed_hosts=["127.0.0.1"],
    )
    result = run(doc)
    assert result.status == "FAILED"
    assert result.error == f"step 'x' failed: {TOO_DEEP}"
    assert {s.id: s.status for s in result.steps} == {"x": "FAILED", "alert": "SUCCESS"}
    assert step_output(store, result.run_id, "alert") == f"failed: step 'x' failed: {TOO_DEEP}"


def test_fetch_file_as_json_of_deeply_nested_json_fails_the_step(run, store, tmp_path):
    (tmp_path / "deep.json").write_text(DEEP, encoding="utf-8")
    doc = policy(
        {"id": "x", "type": "fetch.file", "params": {"path": str(tmp_path / "deep.json"), "as": "json"}},
        on_failure=[alert()],
    )
    result = run(doc)
    assert (result.status, result.error) == ("FAILED", f"step 'x' failed: {TOO_DEEP}")
    assert step_output(store, result.run_id, "alert") == f"failed: step 'x' failed: {TOO_DEEP}"
    with sqlite3.connect(store.state_dir / "engine.db") as db:
        assert db.execute("select status from runs").fetchall() == [("FAILED",)]


def test_encode_keeps_data_at_the_limit_and_refuses_one_level_more(tmp_path):
    store = ArtifactStore(tmp_path)
    at_limit = nested(MAX_DEPTH)
    assert decode(encode(at_limit, store), store) == at_limit
    with pytest.raises(Exception) as info:
        encode({"rows": nested(MAX_DEPTH)}, store, "output of step 'x'")
    assert str(info.value) == "output of step 'x' is nested deeper than 200 levels at /rows/0/0/0/0/0/0/0/..."


def test_a_dataframe_parquet_cannot_hold_fails_the_step_not_the_engine(tmp_path):
    import pandas as pd

    with pytest.raises(Exception) as info:
        encode(pd.DataFrame({"c": [1, "a"]}), ArtifactStore(tmp_path), "output of step 'x'")
    assert str(info.value).startswith("output of step 'x': the DataFrame cannot be stored as Parquet: ArrowInvalid: ")


def test_find_too_deep_is_iterative():
    assert find_too_deep(nested(100_000)) == (0,) * (MAX_DEPTH + 1)
    assert find_too_deep({"a": [[1]]}, limit=2) == ("a", 0, 0)
    assert find_too_deep({"a": [[1]]}, limit=3) is None


# -- item 2: arithmetic that would freeze the process ---------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 9 ** (9 ** 9) }}", "9 ** 387420489 would be an integer of more than 1000 digits"),
        (
            "{{ ((9 ** 1000) ** 1000) ** 1000 > 0 }}",
            "<an integer of 955 digits> ** 1000 would be an integer of more than 1000 digits",
        ),
        ("{{ 'x' * 10 ** 9 }}", "str * 1000000000 would make 1000000000 items (at most 1000000)"),
        ("{{ [0] * 10 ** 9 }}", "list * 1000000000 would make 1000000000 items (at most 1000000)"),
        ("{{ 'x'.ljust(10 ** 9) }}", "ljust() wider than 1000000 characters is not allowed"),
        ("{{ 'x' | center(10 ** 9) }}", "center() wider than 1000000 characters is not allowed"),
        ("{{ '%999999999d' % 1 }}", "a % format width or precision above 1000000 is not allowed"),
        ("{{ '%999999999d' | format(1) }}", "a % format width or precision above 1000000 is not allowed"),
    ],
    ids=["pow-pow", "pow-chain", "str-repeat", "list-repeat", "ljust", "center", "percent", "format"],
)
def test_a_template_beyond_the_limits_fails_its_step_at_once(run, source, message):
    doc = policy({"id": "t", "type": "core.value", "params": {"value": {"template": source}}}, on_failure=[alert()])
    started = time.monotonic()
    validate_document(doc)  # Jinja2 does not fold the constants when it compiles: no freeze here
    result = run(doc)
    assert time.monotonic() - started < 5
    assert result.status == "FAILED"
    assert result.steps[0].error == f"template at /steps/0/params/value: {message}"
    assert [s.status for s in result.steps] == ["FAILED", "SUCCESS"]


def test_templates_within_the_limits_still_compute():
    env = sandbox_environment(autoescape=False)
    source = (
        "{{ 2 ** 10 }} {{ 9 ** 1000 > 0 }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ '%.1f' | format(3.14159) }} {{ 7 % 3 }}"
    )
    assert env.from_string(source).render() == "1024 True ababab [1, 2] 3.1 1"


@pytest.mark.parametrize(
    "source",
    ["{{ '{:>999999999}'.format(1) }}", "{{ '{:>{}}'.format(1, 999999999) }}", "{{ '{x:.9999999f}'.format_map(d) }}"],
    ids=["width", "nested width", "format_map precision"],
)
def test_str_format_cannot_pad_past_the_limit(source):
    env = sandbox_environment(autoescape=False)
    started = time.monotonic()
    with pytest.raises(LimitError, match=r"^a str.format width or precision above 1000000 is not allowed$"):
        env.from_string(source).render(d={"x": 1.5})
    assert time.monotonic() - started < 0.5
    assert env.from_string("{{ '{:>5}|{:.2f}'.format(1, 2.5) }}").render() == "    1|2.50"


def test_the_mutable_sandbox_has_the_limits_too():
    env = sandbox_environment(immutable=False)
    with pytest.raises(LimitError, match="would be an integer of more than 1000 digits"):
        env.from_string("{{ 10 ** 1000 }}").render()
    assert env.from_string("{% set a = [] %}{{ a.append(1) or a }}").render() == "[1]"


@pytest.mark.parametrize(
    ("symbol", "left", "right"),
    [("**", 10, 1000), ("**", 2, 10**30), ("*", 10**600, 10**600), ("+", "x" * 600_000, "y" * 600_000)],
    ids=["pow", "huge-exponent", "mul", "concat"],
)
def test_checked_operator_refuses_before_computing(symbol, left, right):
    with pytest.raises(LimitError):
        checked_operator(symbol, left, right)


def test_checked_operator_passes_what_is_within_the_limits():
    assert checked_operator("**", 10, 999) == 10**999
    assert checked_operator("**", -1, 10**30) == 1
    assert checked_operator("*", "ab", 2) == "abab"


def derive(expression: object) -> dict[str, object]:
    return {
        "id": "t",
        "type": "transform.frame",
        "timeout_s": 1,
        "params": {"input": {"ref": "ctx.rows"}, "ops": [{"op": "derive", "column": "b", "expression": expression}]},
    }


ROWS = {"id": "rows", "type": "core.value", "params": {"value": [{"a": 1, "s": "x"}, {"a": 2, "s": "y"}]}}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "((9 ** 1000) ** 1000) ** 1000 > 0",
            "<an integer of 955 digits> ** 1000 would be an integer of more than 1000 digits",
        ),
        (
            "a + (10 ** 999) * (10 ** 999)",
            "<an integer of 1000 digits> * <an integer of 1000 digits> would be an integer of more than 1000 digits",
        ),
        ("'x' * 1000000000", "str * 1000000000 would make 1000000000 items (at most 1000000)"),
        ("+".join(["a"] * 5000), "the expression is nested deeper than 200 levels"),
    ],
    ids=["pow-chain", "mul", "str-repeat", "long-chain"],
)
def test_a_derive_expression_beyond_the_limits_is_a_validation_problem(expression, message):
    with pytest.raises(PolicyError) as info:
        validate_document(policy(ROWS, derive(expression)))
    assert [(p.pointer, p.message) for p in info.value.problems] == [("/steps/1/params/ops/0/expression", message)]


@pytest.mark.parametrize("kind", ["template", "literal"])
def test_a_derive_expression_known_only_at_run_time_is_checked_when_the_step_runs(run, kind):
    doc = policy(ROWS, derive({kind: "a + ((9 ** 1000) ** 1000) ** 1000"}), on_failure=[alert()])
    started = time.monotonic()
    result = run(doc)
    assert time.monotonic() - started < 10
    assert result.steps[1].error == (
        "op 0 (derive): <an integer of 955 digits> ** 1000 would be an integer of more than 1000 digits "
        "at /steps/1/params/ops/0"
    )
    assert result.status == "FAILED" and result.steps[-1].status == "SUCCESS"


def test_a_text_column_repeated_a_billion_times_fails_the_step(run):
    result = run(policy(ROWS, derive({"literal": "s * 1000000000"})))
    assert result.steps[1].error == (
        "op 0 (derive): * 1000000000 on the column 's' (text) would repeat each value 1000000000 times "
        "at /steps/1/params/ops/0"
    )


# -- item 6: policy shapes beyond the limits --------------------------------------------------------


def value_policy(value_text: str) -> str:
    return (
        '{"schema_version": 1, "id": "shapes",\n "steps": [{"id": "a", "type": "core.value",\n'
        f'  "params": {{"value": {value_text}}}}}]}}'
    )


TOO_DEEP_PROBLEM = (
    "lists and objects nested deeper than 200 levels below this point (at most 200 levels: flatten the "
    "data, or keep it in a file a step reads)"
)


@pytest.mark.parametrize(
    ("value_text", "problems"),
    [
        (
            "[" * 10_000 + "]" * 10_000,
            [f"  /steps/0/params/value/0/0/0/0 (line 3, column 220): {TOO_DEEP_PROBLEM}"],
        ),
        ("[" * 500 + "]" * 500, [f"  /steps/0/params/value/0/0/0/0 (line 3, column 220): {TOO_DEEP_PROBLEM}"]),
        (
            "9" * 5000,
            [
                "  /steps/0/params/value (line 3, column 14): integer of 5000 digits is too large (at most 1000 "
                "digits) (write an identifier or a long code as a string)"
            ],
        ),
        (
            '{"x": 1, "x": 2}',
            [
                "  /steps/0/params/value/x (line 3, column 32): duplicate key 'x': JSON keeps only the last one "
                "(remove or rename one of them)"
            ],
        ),
        (
            "[NaN, -Infinity, 1e999]",
            [
                "  /steps/0/params/value/0 (line 3, column 24): NaN is not valid JSON (write a number, or null)",
                "  /steps/0/params/value/1 (line 3, column 29): -Infinity is not valid JSON (write a number, or null)",
                "  /steps/0/params/value/2 (line 3, column 40): number 1e999 is out of range (it would be infinite) "
                "(use a smaller number)",
            ],
        ),
    ],
    ids=["10000-deep", "500-deep", "5000-digits", "duplicate-key", "nan-infinity"],
)
def test_validate_locates_shapes_beyond_the_limits(cli, write_policy, value_text, problems):
    path = write_policy(value_policy(value_text))
    done = cli("validate", str(path))
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}", *problems]


def test_a_policy_at_the_depth_limit_validates_and_runs(cli, write_policy):
    # /steps/0/params/value holds the lists: 4 levels, then 196 more
    path = write_policy(value_policy(json.dumps(nested(MAX_DEPTH - 4))))
    done = cli("run", str(path))
    assert "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr


def test_a_python_document_beyond_the_limits_is_refused_too():
    doc = policy({"id": "a", "type": "core.value", "params": {"value": [10**1200, float("nan"), nested(300)]}})
    with pytest.raises(PolicyError) as info:
        validate_document(doc)
    assert [(p.pointer, p.message) for p in info.value.problems] == [
        ("/steps/0/params/value/2/0/0/0", "lists and objects nested deeper than 200 levels below this point")
    ]
    doc["steps"][0]["params"]["value"].pop()
    with pytest.raises(PolicyError) as info:
        validate_document(doc)
    assert sorted((p.pointer, p.message) for p in info.value.problems) == [
        ("/steps/0/params/value/0", "integer of about 1201 digits is too large (at most 1000 digits)"),
        ("/steps/0/params/value/1", "number nan is not valid JSON"),
    ]


@pytest.mark.parametrize(
    ("param", "problem"),
    [
        ("n=" + "9" * 5000, "  /params/n: --param n: an integer of 5000 digits is too large (at most 1000 digits)"),
        (
            "o=" + "[" * 300 + "]" * 300,
            "  /params/o: --param o: the value is nested deeper than 200 levels at /0/0/0/0/0/0/0/0/...",
        ),
        ("o=" + "[" * 5000 + "]" * 5000, "  /params/o: --param o: the value is nested deeper than 200 levels"),
        ("r=nan", "  /params/r: --param r='nan' is not a valid number (e.g. --param r=1.5)"),
    ],
    ids=["huge-int", "deep-array", "very-deep-array", "nan"],
)
def test_param_values_beyond_the_limits_are_usage_problems(cli, write_policy, param, problem):
    params = {
        "n": {"type": "integer", "default": 1},
        "o": {"type": "array", "default": []},
        "r": {"type": "number", "default": 1},
    }
    path = write_policy(policy({"id": "a", "type": "core.value", "params": {"value": 1}}, params=params))
    done = cli("run", str(path), "--param", param)
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    assert problem in done.stderr.splitlines()
