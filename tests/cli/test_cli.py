"""The real ``engine`` command in a subprocess: exit codes, --json shapes, run/resume/show."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, policy

VALUE = {"type": "core.value"}


def step(sid: str, type_: str = "core.value", **fields):
    return {"id": sid, "type": type_, **fields}


def last_json(result: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(result.stdout)


# -- validate ---------------------------------------------------------------------------------


def test_validate_valid_policy_exits_0(cli, write_policy):
    path = write_policy(policy(step("a", params={"value": 1})))
    result = cli("validate", str(path))
    assert result.returncode == 0
    assert result.stdout.strip() == f"{path}: valid (1 steps, 0 on_failure)"


def test_validate_reports_every_problem_with_its_pointer_and_exits_2(cli, write_policy):
    path = write_policy(
        policy(
            step("a", "core.valu"),
            step("b", params={"value": {"ref": "ctx.nope"}}, depends_on=["a", "zz"]),
            titel="x",
        )
    )
    result = cli("validate", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"{path}: 4 problems"
    assert lines[1:] == [
        "  /steps/0/type (line 7, column 7): unknown step type 'core.valu' (did you mean 'core.value'?)",
        "  /steps/1/depends_on/1 (line 19, column 9): depends on unknown step 'zz'",
        "  /steps/1/params/value/ref (line 14, column 11): ref to unknown step 'nope'",
        "  /titel (line 23, column 3): unknown field 'titel' (did you mean 'title'?)",
    ]


def test_validate_json_output_shape(cli, write_policy):
    path = write_policy('{"schema_version": 1,\n  "id": "x",\n  "steps": [,]}')
    result = cli("validate", "--json", str(path))
    assert result.returncode == 2
    assert last_json(result) == {
        "valid": False,
        "policy": str(path),
        "problems": [
            {"pointer": "", "message": "invalid JSON: Expecting value", "hint": None, "line": 3, "column": 13}
        ],
    }


def test_validate_cycle_is_printed_as_a_path(cli, write_policy):
    path = write_policy(
        policy(
            step("a", depends_on=["c"]),
            step("b", depends_on=["a"]),
            step("c", params={"value": {"ref": "ctx.b"}}),
        )
    )
    result = cli("validate", "--json", str(path))
    problems = last_json(result)["problems"]
    assert [p["message"] for p in problems] == ["dependency cycle: a -> b -> c -> a"]
    assert problems[0]["pointer"] == "/steps/0"


def test_missing_policy_file_is_a_clear_error(cli, tmp_path):
    result = cli("validate", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert "cannot read the policy file: No such file or directory" in result.stderr


def test_validate_a_folder_reports_a_shared_id_for_every_file(cli, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    for name in ("a.json", "b.json"):
        (folder / name).write_text(json.dumps(policy(step("x", params={"value": 1}), id="same")), encoding="utf-8")
    (folder / "c.json").write_text(json.dumps(policy(step("x", params={"value": 1}), id="other")), encoding="utf-8")
    result = cli("validate", str(folder))
    assert result.returncode == 2
    problem = (
        f"/id: policy id 'same' is used by 2 files: {folder}/a.json, {folder}/b.json; none of them runs until "
        "only one has it (give each policy its own id, or remove the copies you do not want)"
    )
    assert " ".join(result.stderr.split()).count(problem) == 2
    assert f"{folder}/c.json: valid (1 steps, 0 on_failure)" in result.stdout
    data = last_json(cli("validate", str(folder), "--json"))
    assert data["valid"] is False
    assert [(p["policy"].rsplit("/", 1)[1], p["valid"], p.get("files")) for p in data["policies"]] == [
        ("a.json", False, [f"{folder}/a.json", f"{folder}/b.json"]),
        ("b.json", False, [f"{folder}/a.json", f"{folder}/b.json"]),
        ("c.json", True, None),
    ]
    (folder / "b.json").unlink()
    assert cli("validate", str(folder)).returncode == 0


# -- run: exit codes and --json ---------------------------------------------------------------


def test_run_json_has_the_documented_shape(cli, write_policy):
    path = write_policy(policy(step("a", params={"value": 1}), step("b", params={"value": {"ref": "ctx.a"}})))
    result = cli("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    data = last_json(result)
    assert data["status"] == "SUCCESS"
    assert data["policy_id"] == "test"
    assert data["attempt"] == 1
    assert data["dry_run"] is False
    assert data["preview_dir"] is None
    assert [s["id"] for s in data["steps"]] == ["a", "b"]
    assert set(data["steps"][0]) >= {"id", "status", "attempts", "duration_s", "error", "skip_reason"}
    assert data["steps"][1] | {"duration_s": None} == {
        "id": "b",
        "status": "SUCCESS",
        "attempts": 1,
        "duration_s": None,
        "error": None,
        "skip_reason": None,
        "type": "core.value",
        "phase": "main",
        "run_attempt": 1,
        "kept": False,
    }
    assert data["policy_path"] == str(path.resolve())
    assert data["policy_file_changed"] is False
    assert data["resumes"] == []


def test_failed_run_exits_1(cli, write_policy):
    path = write_policy(policy(step("a", "test.fail", params={"message": "nope"})))
    result = cli("run", str(path), "--json")
    assert result.returncode == 1
    data = last_json(result)
    assert data["status"] == "FAILED"
    assert data["error"] == "step 'a' failed: nope"
    assert data["steps"][0]["error"] == "nope"


def test_partial_run_exits_3(cli, write_policy):
    path = write_policy(policy(step("a", "test.fail", on_error="log_and_continue"), step("b", params={"value": 1})))
    result = cli("run", str(path), "--json")
    assert result.returncode == 3
    assert last_json(result)["status"] == "PARTIAL"


def test_invalid_policy_on_run_exits_2_and_records_nothing(cli, write_policy, state_dir):
    path = write_policy(policy(step("a", "core.nope")))
    result = cli("run", str(path))
    assert result.returncode == 2
    assert "/steps/0/type (line 7, column 7): unknown step type 'core.nope'" in result.stderr
    assert not (state_dir / "engine.db").exists()


def test_params_are_coerced_to_their_declared_types(cli, write_policy, state_dir):
    doc = policy(
        step(
            "a",
            params={
                "value": {
                    "n": {"ref": "ctx.params.n"},
                    "flag": {"ref": "ctx.params.flag"},
                    "tags": {"ref": "ctx.params.tags"},
                    "name": {"ref": "ctx.params.name"},
                }
            },
        ),
        params={
            "n": {"type": "integer"},
            "flag": {"type": "boolean", "default": False},
            "tags": {"type": "array", "default": []},
            "name": {"type": "string", "default": "x"},
        },
    )
    result = cli(
        "run", str(write_policy(doc)), "--param", "n=42", "--param", "flag=true", "--param", 'tags=["a","b"]', "--json"
    )
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(state_dir / "engine.db") as con:
        (output,) = con.execute("select output_json from step_runs where step_id='a'").fetchone()
    assert json.loads(output) == {"n": 42, "flag": True, "tags": ["a", "b"], "name": "x"}


def test_param_output_is_visible_in_show(cli, write_policy, state_dir):
    doc = policy(step("a", params={"value": {"ref": "ctx.params.n"}}), params={"n": {"type": "integer"}})
    result = cli("run", str(write_policy(doc)), "--param", "n=42", "--json")
    assert result.returncode == 0, result.stderr
    run_id = last_json(result)["run_id"]
    with sqlite3.connect(state_dir / "engine.db") as con:
        (output,) = con.execute(
            "select output_json from step_runs where run_id=? and step_id='a'", (run_id,)
        ).fetchone()
        (params,) = con.execute("select params_json from runs where id=?", (run_id,)).fetchone()
    assert json.loads(output) == 42
    assert json.loads(params) == {"n": 42}


def test_bad_params_exit_2(cli, write_policy):
    doc = policy(step("a", params={"value": 1}), params={"n": {"type": "integer", "default": 1}})
    path = write_policy(doc)
    bad_type = cli("run", str(path), "--param", "n=abc")
    assert bad_type.returncode == 2
    assert "/params/n: --param n='abc' is not a valid integer (e.g. --param n=42)" in bad_type.stderr
    undeclared = cli("run", str(path), "--param", "m=1")
    assert undeclared.returncode == 2
    assert "/params/m: undeclared parameter 'm' (declared: n)" in undeclared.stderr
    malformed = cli("run", str(path), "--param", "n")
    assert malformed.returncode == 2
    assert "--param 'n': expected NAME=VALUE" in malformed.stderr


def test_missing_required_param_exits_2(cli, write_policy):
    path = write_policy(policy(step("a", params={"value": 1}), params={"region": {"type": "string"}}))
    result = cli("run", str(path), "--json")
    assert result.returncode == 2
    assert last_json(result)["problems"] == [
        {"pointer": "/params/region", "message": "parameter 'region' is required", "hint": "pass --param region=VALUE"}
    ]


# -- dry run ------------------------------------------------------------------------------------


def test_dry_run_previews_side_effects_and_runs_the_rest(cli, write_policy, tmp_path):
    target = tmp_path / "effect.txt"
    doc = policy(
        step("a", params={"value": "hello"}),
        step("write", "test.effect", params={"path": str(target), "line": {"ref": "ctx.a"}}),
        step("after", params={"value": {"ref": "ctx.write.would_write"}}),
    )
    result = cli("run", "--dry-run", str(write_policy(doc)), "--json")
    assert result.returncode == 0, result.stderr
    data = last_json(result)
    assert data["dry_run"] is True
    assert [s["status"] for s in data["steps"]] == ["SUCCESS", "SUCCESS", "SUCCESS"]
    assert not target.exists()
    preview = Path(data["preview_dir"]) / "write.json"
    assert json.loads(preview.read_text()) == {"would_write": str(target), "line": "hello"}


# -- resume -----------------------------------------------------------------------------------


def test_fail_fix_resume_keeps_what_succeeded(cli, write_policy, tmp_path):
    effects = tmp_path / "effects.txt"
    counter = tmp_path / "counter"
    doc = policy(
        step("send", "test.effect", params={"path": str(effects), "line": "sent"}),
        step("load", "test.flaky", params={"counter_file": str(counter), "fail_times": 1}),
        step("report", params={"value": {"ref": "ctx.load.calls"}}),
    )
    path = write_policy(doc)
    first = cli("run", str(path), "--json")
    assert first.returncode == 1
    run_id = last_json(first)["run_id"]
    assert [s["status"] for s in last_json(first)["steps"]] == ["SUCCESS", "FAILED", "PENDING"]

    second = cli("resume", run_id, "--json")
    assert second.returncode == 0, second.stderr
    data = last_json(second)
    assert data["run_id"] == run_id
    assert data["attempt"] == 2
    assert [s["status"] for s in data["steps"]] == ["SUCCESS", "SUCCESS", "SUCCESS"]
    assert effects.read_text() == "sent\n"  # the side effect did not run again

    again = cli("resume", run_id)
    assert again.returncode == 2
    assert f"run {run_id} already succeeded: nothing to resume" in again.stderr


def test_resume_with_a_fixed_policy_file(cli, write_policy):
    broken = policy(
        step("a", params={"value": 1}), step("b", "test.fail"), step("c", params={"value": {"ref": "ctx.b"}})
    )
    path = write_policy(broken)
    first = cli("run", str(path), "--json")
    run_id = last_json(first)["run_id"]
    fixed = policy(
        step("a", params={"value": 1}), step("b", params={"value": 2}), step("c", params={"value": {"ref": "ctx.b"}})
    )
    fixed_path = write_policy(fixed, "fixed.json")
    result = cli("resume", run_id, "--policy", str(fixed_path), "--json")
    assert result.returncode == 0, result.stderr
    assert [(s["id"], s["status"]) for s in last_json(result)["steps"]] == [
        ("a", "SUCCESS"),
        ("b", "SUCCESS"),
        ("c", "SUCCESS"),
    ]


def test_unknown_run_id_exits_2(cli):
    result = cli("show", "nope")
    assert result.returncode == 2
    assert "no run 'nope'" in result.stderr


def test_ctrl_c_cancels_the_run_which_can_be_resumed(cli, write_policy, state_dir, tmp_path):
    doc = policy(
        step("a", params={"value": 1}),
        step("slow", "test.sleep", params={"seconds": 30}, depends_on=["a"]),
        step("after", params={"value": 2}, depends_on=["slow"]),
    )
    path = write_policy(doc)
    env = {"ENGINE_STATE_DIR": str(state_dir), "ENGINE_PLUGINS": "tests.stepkit", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_base_env(), **env},
        cwd=tmp_path,
    )
    _wait_for_state(state_dir, "slow", "RUNNING")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    data = json.loads(out)
    assert data["status"] == "CANCELLED"
    assert [(s["id"], s["status"]) for s in data["steps"]] == [
        ("a", "SUCCESS"),
        ("slow", "FAILED"),
        ("after", "PENDING"),
    ]
    assert data["steps"][1]["error"] == "cancelled by SIGINT"


def test_a_killed_run_is_marked_interrupted_and_resumable(cli, write_policy, state_dir, tmp_path):
    doc = policy(step("a", params={"value": 1}), step("slow", "test.sleep", params={"seconds": 30}, depends_on=["a"]))
    path = write_policy(doc)
    env = {"ENGINE_STATE_DIR": str(state_dir), "ENGINE_PLUGINS": "tests.stepkit", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**_base_env(), **env},
        cwd=tmp_path,
    )
    _wait_for_state(state_dir, "slow", "RUNNING")
    proc.kill()
    proc.wait()
    listed = cli("runs", "--json")
    (run,) = last_json(listed)["runs"]
    assert run["status"] == "FAILED"
    assert run["error"] == "interrupted: the engine process stopped"
    shown = last_json(cli("show", run["run_id"], "--json"))
    assert [(s["id"], s["status"]) for s in shown["steps"]] == [("a", "SUCCESS"), ("slow", "FAILED")]
    fixed = write_policy(policy(step("a", params={"value": 1}), step("slow", "test.sleep", depends_on=["a"])), "f.json")
    resumed = cli("resume", run["run_id"], "--policy", str(fixed), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert last_json(resumed)["status"] == "SUCCESS"


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}


def _wait_for_state(state_dir: Path, step_id: str, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state_dir / "engine.db").exists():
            try:
                with sqlite3.connect(state_dir / "engine.db") as con:
                    row = con.execute("select status from step_runs where step_id=?", (step_id,)).fetchone()
                if row and row[0] == status:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"step {step_id} never reached {status}")


# -- runs, show, plan, steps, schema ------------------------------------------------------------


def test_runs_filters_by_policy_status_and_limit(cli, write_policy):
    ok = write_policy(policy(step("a", params={"value": 1}), id="good"), "good.json")
    bad = write_policy(policy(step("a", "test.fail"), id="bad"), "bad.json")
    for path in (ok, ok, bad):
        cli("run", str(path))
    all_runs = last_json(cli("runs", "--json"))["runs"]
    assert [r["policy_id"] for r in all_runs] == ["bad", "good", "good"]
    assert [r["status"] for r in last_json(cli("runs", "--json", "--policy", "good"))["runs"]] == ["SUCCESS"] * 2
    assert [r["policy_id"] for r in last_json(cli("runs", "--json", "--status", "failed"))["runs"]] == ["bad"]
    assert len(last_json(cli("runs", "--json", "--limit", "1"))["runs"]) == 1
    table = cli("runs")
    assert table.returncode == 0
    assert all_runs[0]["run_id"] in table.stdout


def test_show_mermaid_colours_steps_by_state(cli, write_policy):
    doc = policy(
        step("a", params={"value": 1}),
        step("b", "test.fail", on_error="log_and_continue"),
        step("c", params={"value": 1}, depends_on=["b"]),
    )
    run_id = last_json(cli("run", str(write_policy(doc)), "--json"))["run_id"]
    result = cli("show", run_id, "--format", "mermaid")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert "    b --> c" in lines
    assert "    class a success" in lines
    assert "    class b failed" in lines
    assert "    class c skipped" in lines
    assert any(line.startswith("    classDef failed fill:#ffcdd2") for line in lines)


def test_show_text_lists_steps(cli, write_policy):
    run_id = last_json(cli("run", str(write_policy(policy(step("alpha", params={"value": 1})))), "--json"))["run_id"]
    result = cli("show", run_id)
    assert result.returncode == 0
    assert f"run {run_id}  policy test  status SUCCESS  attempt 1  trigger manual" in result.stdout
    assert "alpha" in result.stdout


def test_plan_json_layers_and_actions(cli, write_policy, tmp_path):
    doc = policy(
        step("a", params={"value": 1}),
        step("b", params={"value": 1}),
        step("c", params={"value": {"ref": "ctx.a"}}, depends_on=["b"]),
        step("fx", "test.effect", params={"path": str(tmp_path / "x")}, depends_on=["c"]),
        step("maybe", params={"value": 1}, skip_if={"ref": "ctx.params.quiet", "op": "eq", "value": True}),
        step("after_maybe", params={"value": {"ref": "ctx.maybe"}}),
        params={"quiet": {"type": "boolean", "default": True}},
    )
    result = cli("plan", str(write_policy(doc)), "--format", "json", "--dry-run")
    assert result.returncode == 0, result.stderr
    data = last_json(result)
    assert data["layers"] == [["a", "b", "maybe"], ["c", "after_maybe"], ["fx"]]
    assert {s["id"]: s["action"] for s in data["steps"]} == {
        "a": "run",
        "b": "run",
        "maybe": "skip",
        "c": "run",
        "after_maybe": "skip",
        "fx": "preview",
    }
    not_quiet = last_json(cli("plan", str(write_policy(doc)), "--format", "json", "--param", "quiet=false"))
    assert {s["id"]: s["action"] for s in not_quiet["steps"]}["maybe"] == "run"
    assert {s["id"]: s["action"] for s in not_quiet["steps"]}["fx"] == "run"


def test_plan_text_mermaid_and_dot(cli, write_policy):
    from engine.governance import approval_hash

    path = write_policy(policy(step("a", params={"value": 1}), step("b", params={"value": {"ref": "ctx.a"}})))
    text = cli("plan", str(path))
    assert text.stdout.splitlines() == [
        "policy test: 2 steps in 2 layers (max_concurrency 4)",
        "layer 1",
        "  a  core.value  run",
        "layer 2",
        "  b  core.value  run  after a",
        f"approval hash {approval_hash(json.loads(path.read_text()))} (not approved)",
    ]
    mermaid = cli("plan", str(path), "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart TD\n") and "    a --> b\n" in mermaid
    dot = cli("plan", str(path), "--format", "dot").stdout
    assert dot.startswith('digraph "test" {') and '    "a" -> "b";' in dot


def test_steps_lists_types_and_manifest(cli):
    listing = cli("steps")
    assert "core.value (alias: value)" in listing.stdout
    assert "core.shell (alias: shell) [side effects]" in listing.stdout
    manifest = {s["type"]: s for s in last_json(cli("steps", "--json"))["steps"]}
    assert manifest["core.shell"]["side_effects"] is True
    assert manifest["core.shell"]["params_schema"]["required"] == ["argv"]
    assert set(manifest["core.shell"]["output_schema"]["properties"]) == {
        "exit_code",
        "stdout",
        "stderr",
        "json",
        "truncated",
    }
    assert manifest["core.assert"]["params_schema"]["properties"]["condition"]["$ref"] == "#/$defs/Condition"
    assert "Condition" in manifest["core.assert"]["params_schema"]["$defs"]


def test_committed_schema_is_up_to_date(cli):
    result = cli("schema", env={"ENGINE_PLUGINS": ""})
    committed = (ROOT / "policies" / "policy.schema.json").read_text()
    assert json.loads(result.stdout) == json.loads(committed), "regenerate: engine schema > policies/policy.schema.json"


def test_bad_plugin_module_exits_2(cli):
    result = cli("--plugin", "no_such_module_xyz", "steps")
    assert result.returncode == 2
    assert "cannot import step plugin module 'no_such_module_xyz' (from --plugin)" in result.stderr


def test_logs_are_json_lines_with_run_and_step_ids(cli, write_policy, state_dir):
    result = cli("run", str(write_policy(policy(step("a", params={"value": 1})))), "--json")
    run_id = last_json(result)["run_id"]
    events = [json.loads(line) for line in (state_dir / "logs" / "engine.log").read_text().splitlines()]
    started = [e for e in events if e["event"] == "step.started"]
    assert started and started[0]["run_id"] == run_id and started[0]["step_id"] == "a"
    # off a terminal, stderr carries the same JSON lines
    assert any(json.loads(line).get("event") == "run.finished" for line in result.stderr.splitlines())


def test_secret_never_reaches_db_logs_or_output(cli, write_policy, state_dir):
    secret = "hunter2-very-secret"
    doc = policy(
        step("a", "test.echo", params={"text": {"secret": "MY_TOKEN"}}),
        step("b", "test.echo", params={"text": {"template": "fail:{{ a.text }}"}}),
    )
    result = cli("run", str(write_policy(doc)), "--json", env={"MY_TOKEN": secret})
    assert result.returncode == 1
    assert secret not in result.stdout + result.stderr
    assert "fail:***" in result.stdout
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_determinism_same_start_order_across_hash_seeds(cli, write_policy, state_dir):
    names = [f"s{i}" for i in (7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 4, 6)]
    steps = [step(name, "test.sleep", params={"value": name}) for name in names]
    steps += [step("join", params={"value": [{"ref": f"ctx.{name}"} for name in names]})]
    path = write_policy(policy(*steps, max_concurrency=1))
    seen = []
    for seed in ("1", "2"):
        plan = cli("plan", str(path), "--format", "json", env={"PYTHONHASHSEED": seed}).stdout
        run_id = last_json(cli("run", str(path), "--json", env={"PYTHONHASHSEED": seed}))["run_id"]
        with sqlite3.connect(state_dir / "engine.db") as con:
            order = [
                r[0] for r in con.execute("select step_id from step_attempts where run_id=? order by id", (run_id,))
            ]
        seen.append((plan, order))
    assert seen[0] == seen[1]
    assert seen[0][1] == [*names, "join"]  # ready steps start in policy order
