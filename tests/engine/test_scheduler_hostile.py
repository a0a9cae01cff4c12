"""``engine serve`` survives hostile policies and data: one bad policy never freezes or crashes
the daemon, and a good policy beside it keeps its schedule (issue 12)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.engine.test_scheduler import folder, query, scheduled, serve, state, stop, wait_for, write  # noqa: F401


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_serve_keeps_a_good_schedule_beside_hostile_policies(serve, state, folder, tmp_path):  # noqa: F811
    every_second = {"interval_seconds": 1}
    write(folder, scheduled("good", every_second, {"id": "tick", "type": "core.value", "params": {"value": 1}}))
    # data nested 600 deep: the step fails with a clear error, the run fails normally, the alert runs
    deep_file = tmp_path / "deep.json"
    deep_file.write_text(nested(600), encoding="utf-8")
    write(
        folder,
        scheduled(
            "deep-data",
            {"interval_seconds": 3600},
            {"id": "read", "type": "fetch.file", "params": {"path": str(deep_file), "as": "json"}},
            on_failure=[{"id": "alert", "type": "core.value", "params": {"value": "alert"}}],
        ),
    )
    # a number too big to compute: each run fails at once, judged before the power is computed
    write(
        folder,
        scheduled(
            "huge-power",
            {"interval_seconds": 3600},
            {"id": "v", "type": "core.value", "params": {"value": {"template": "{{ 9 ** (9 ** 9) }}"}}},
        ),
    )
    # a policy nested 10,000 deep: a validation problem, not a crash of the daemon
    (folder / "deep-policy.json").write_text(
        '{"schema_version": 1, "id": "deep-policy", "schedule": {"interval_seconds": 1}, "steps": [{"id": "a", '
        '"type": "core.value", "params": {"value": ' + nested(10_000) + "}}]}",
        encoding="utf-8",
    )
    proc = serve()

    def settled() -> bool:
        good = query(state, "select count(*) from runs where policy_id = 'good' and status = 'SUCCESS'")[0][0]
        deep = query(state, "select status from runs where policy_id = 'deep-data'")
        power = query(state, "select status from runs where policy_id = 'huge-power'")
        return good >= 3 and deep == [("FAILED",)] and power == [("FAILED",)]

    wait_for(settled, timeout=60)
    assert proc.poll() is None, "the daemon died"
    (error,) = query(state, "select error from step_runs where step_id = 'read'")[0:1]
    assert "nested deeper than" in error[0]
    assert query(state, "select status from step_runs where step_id = 'alert'") == [("SUCCESS",)]
    ((power_error,),) = query(state, "select error from step_runs where step_id = 'v'")
    assert "would be an integer of more than 1000 digits" in power_error
    assert query(state, "select count(*) from runs where policy_id = 'deep-policy'") == [(0,)]
    started = time.monotonic()
    assert stop(proc) == 0
    assert time.monotonic() - started < 10
    log = (tmp_path / "serve-0.log").read_text(encoding="utf-8")
    assert "Traceback" not in log
    invalid = [json.loads(line) for line in log.splitlines() if line.startswith("{") and "schedule.invalid" in line]
    assert [Path(e["path"]).name for e in invalid] == ["deep-policy.json"]
