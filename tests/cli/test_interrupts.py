"""Ctrl-C and SIGTERM on the real ``engine run``: the run ends CANCELLED within seconds, whatever
its steps do; a second Ctrl-C exits at once (130) with no traceback; no child process outlives it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import _base_env, _wait_for_state
from tests.conftest import ROOT, policy


def start(path: Path, state_dir: Path, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """``engine run PATH --json`` (or ``engine ARGS... --json``) in the background, test steps loaded."""
    env = {"ENGINE_STATE_DIR": str(state_dir), "ENGINE_PLUGINS": "tests.stepkit", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "engine", *(args or ("run",)), str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_base_env(), **env},
        cwd=cwd,
    )


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[str, str, float]:
    """Send ``sig``; return stdout, stderr and how long the process took to exit."""
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the process did not exit within 15 s of {sig.name}: {err}") from None
    return out, err, time.monotonic() - sent


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] != b"Z"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_step_busy_in_its_thread_does_not_keep_the_process_alive(write_policy, state_dir, tmp_path, sig):
    path = write_policy(policy({"id": "busy", "type": "test.sync_sleep", "params": {"seconds": 60}}))
    proc = start(path, state_dir, tmp_path)
    _wait_for_state(state_dir, "busy", "RUNNING")
    out, err, took = stop(proc, sig)
    assert took < 5, err
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["status"] == "CANCELLED"
    assert [(s["id"], s["status"], s["error"]) for s in data["steps"]] == [
        ("busy", "FAILED", f"cancelled by {sig.name}")
    ]


def test_a_step_that_ignores_cancellation_is_abandoned_and_the_run_still_ends(write_policy, state_dir, tmp_path):
    path = write_policy(policy({"id": "stubborn", "type": "test.stubborn", "params": {"linger": 60}}))
    proc = start(path, state_dir, tmp_path)
    _wait_for_state(state_dir, "stubborn", "RUNNING")
    out, err, took = stop(proc, signal.SIGINT)
    assert took < 5, err
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["status"] == "CANCELLED"
    assert data["steps"][0]["status"] == "FAILED"
    assert data["steps"][0]["error"] == "cancelled by SIGINT"


def test_a_second_ctrl_c_exits_at_once_with_130_and_no_traceback(write_policy, state_dir, tmp_path):
    path = write_policy(policy({"id": "stubborn", "type": "test.stubborn", "params": {"linger": 60}}))
    proc = start(path, state_dir, tmp_path)
    _wait_for_state(state_dir, "stubborn", "RUNNING")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    out, err, took = stop(proc, signal.SIGINT)
    assert took < 1.5, err
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "SIGINT again: exiting now" in err


def test_no_child_process_outlives_a_cancelled_run(write_policy, state_dir, tmp_path):
    pid_file = tmp_path / "child.pid"
    path = write_policy(policy({"id": "spawn", "type": "test.child", "params": {"pid_file": str(pid_file)}}))
    proc = start(path, state_dir, tmp_path)
    _wait_for_state(state_dir, "spawn", "RUNNING")
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert pid_alive(child)
    out, err, took = stop(proc, signal.SIGINT)
    assert took < 5, err
    assert json.loads(out)["status"] == "CANCELLED"
    time.sleep(0.2)
    try:
        assert not pid_alive(child), "the step's child process is still running"
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def test_ctrl_c_while_the_flagship_draws_its_charts_ends_within_5_s_and_leaves_no_browser(state_dir, tmp_path):
    """The issue's reproduction: SIGINT while render.pdf has Kaleido's Chromium drawing charts.

    Kaleido draws the charts of ``engine: "weasyprint"`` (several seconds: SIGINT lands inside);
    tests/steps/test_render_chromium.py does the same for the Chromium engine."""
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "policies" / "examples", examples)
    flagship = examples / "sales_report.json"
    doc = json.loads(flagship.read_text(encoding="utf-8"))
    (pdf_step,) = [s for s in doc["steps"] if s["id"] == "pdf"]
    pdf_step["params"]["engine"] = "weasyprint"
    flagship.write_text(json.dumps(doc), encoding="utf-8")
    proc = start(flagship, state_dir, tmp_path, "run", "--dry-run")
    _wait_for_state(state_dir, "pdf", "RUNNING", timeout=60)
    deadline = time.monotonic() + 20
    browsers: list[int] = []
    while time.monotonic() < deadline and not browsers:  # wait until Kaleido's browser runs
        browsers = [p for p in descendants(proc.pid) if b"chrom" in Path(f"/proc/{p}/cmdline").read_bytes()]
        time.sleep(0.1)
    assert browsers, "render.pdf never started a browser"
    time.sleep(1.0)  # into the drawing
    out, err, took = stop(proc, signal.SIGINT)
    assert took < 5, err
    assert proc.returncode == 1
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["status"] == "CANCELLED"
    pdf = next(s for s in data["steps"] if s["id"] == "pdf")
    assert (pdf["status"], pdf["error"]) == ("FAILED", "cancelled by SIGINT")
    time.sleep(0.3)
    assert [p for p in browsers if pid_alive(p)] == []


def test_engine_due_does_not_wait_for_a_busy_thread_either(state_dir, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    doc = policy(
        {"id": "busy", "type": "test.sync_sleep", "params": {"seconds": 60}}, schedule={"interval_seconds": 3600}
    )
    (folder / "busy.json").write_text(json.dumps(doc), encoding="utf-8")
    proc = start(folder, state_dir, tmp_path, "due")
    _wait_for_state(state_dir, "busy", "RUNNING")
    out, err, took = stop(proc, signal.SIGINT)
    assert took < 5, err
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert [r["status"] for r in json.loads(out)["runs"]] == ["CANCELLED"]
