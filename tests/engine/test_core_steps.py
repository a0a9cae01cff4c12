"""The built-in core.* steps: core.value, core.assert, core.shell (issue #3 §5)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from tests.conftest import policy


def output(store, result, step_id: str) -> Any:
    row = next(s for s in store.get_steps(result.run_id) if s["step_id"] == step_id)
    return json.loads(row["output_json"]) if row["output_json"] else None


def test_core_value_returns_its_resolved_value(run, store):
    doc = policy(
        {"id": "a", "type": "core.value", "params": {"value": {"n": 1}}},
        {"id": "b", "type": "value", "params": {"value": {"gathered": [{"ref": "ctx.a.n"}, {"ref": "ctx.a"}]}}},
        {"id": "nothing", "type": "core.value"},
    )
    result = run(doc)
    assert output(store, result, "b") == {"gathered": [1, {"n": 1}]}
    assert output(store, result, "nothing") is None


def test_core_value_delay(run):
    started = time.monotonic()
    run(policy({"id": "a", "type": "core.value", "params": {"value": 1, "delay_s": 0.2}}))
    assert time.monotonic() - started >= 0.2


PY = sys.executable


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(
            {"argv": [PY, "-c", "print('hi')"]},
            {"exit_code": 0, "stdout": "hi\n", "stderr": "", "json": None, "truncated": False},
            id="stdout",
        ),
        pytest.param(
            {"argv": [PY, "-c", "import json; print(json.dumps({'rows': [1, 2]}))"], "parse_json": True},
            {
                "exit_code": 0,
                "stdout": '{"rows": [1, 2]}\n',
                "stderr": "",
                "json": {"rows": [1, 2]},
                "truncated": False,
            },
            id="parse_json",
        ),
        pytest.param(
            {
                "argv": [PY, "-c", "import os, sys; sys.stderr.write(os.environ['GREETING'])"],
                "env": {"GREETING": "hello"},
            },
            {"exit_code": 0, "stdout": "", "stderr": "hello", "json": None, "truncated": False},
            id="env",
        ),
        pytest.param(
            {"argv": [PY, "-c", "print('x' * 70000, end='')"]},
            {"exit_code": 0, "stdout": "x" * 65536, "stderr": "", "json": None, "truncated": True},
            id="bounded",
        ),
    ],
)
def test_core_shell_output(run, store, params, expected):
    result = run(policy({"id": "sh", "type": "core.shell", "params": params}))
    assert result.status == "SUCCESS", result.steps[0].error
    assert output(store, result, "sh") == expected


def test_core_shell_cwd_is_relative_to_the_policy_file(run, store, tmp_path):
    (tmp_path / "sub").mkdir()
    doc = policy(
        {"id": "here", "type": "core.shell", "params": {"argv": [PY, "-c", "import os; print(os.getcwd())"]}},
        {
            "id": "sub",
            "type": "core.shell",
            "params": {"argv": [PY, "-c", "import os; print(os.getcwd())"], "cwd": "sub"},
        },
    )
    result = run(doc)  # the policy file is written to tmp_path
    assert output(store, result, "here")["stdout"].strip() == str(tmp_path)
    assert output(store, result, "sub")["stdout"].strip() == str(tmp_path / "sub")


@pytest.mark.parametrize(
    ("params", "error", "attempts"),
    [
        pytest.param(
            {"argv": [PY, "-c", "import sys; sys.stderr.write('disk full'); sys.exit(3)"]},
            f"{PY} exited with code 3: disk full",
            2,
            id="non-zero-exit-is-retryable",
        ),
        pytest.param(
            {"argv": ["/nonexistent/program"]},
            "cannot start '/nonexistent/program': No such file or directory",
            1,
            id="cannot-start",
        ),
        pytest.param(
            {"argv": [PY, "-c", "print('not json')"], "parse_json": True},
            "stdout is not JSON (line 1, column 1): Expecting value",
            1,
            id="bad-json",
        ),
    ],
)
def test_core_shell_failures(run, params, error, attempts):
    result = run(
        policy(
            {
                "id": "sh",
                "type": "core.shell",
                "params": params,
                "on_error": "retry_then_fail",
                "retry": {"max_attempts": 2, "backoff_s": 0},
            }
        )
    )
    step = result.steps[0]
    assert (result.status, step.error, step.attempts) == ("FAILED", error, attempts)


def test_core_shell_argv_must_be_a_list(run):
    from engine.errors import PolicyError

    with pytest.raises(PolicyError) as info:
        run(policy({"id": "sh", "type": "core.shell", "params": {"argv": "echo hi"}}))
    assert [(p.pointer, p.message) for p in info.value.problems] == [
        ("/steps/0/params/argv", "must be a list (got 'echo hi')")
    ]


def test_core_shell_is_cancelled_with_its_step(run):
    started = time.monotonic()
    result = run(policy({"id": "sh", "type": "core.shell", "params": {"argv": ["sleep", "10"]}, "timeout_s": 0.2}))
    assert time.monotonic() - started < 3
    assert result.steps[0].error == "timed out after 0.2 s"
