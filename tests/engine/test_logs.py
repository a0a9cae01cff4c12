"""engine/logs.py: one JSON rendering per event, written to engine.log and stderr, levels per destination."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import structlog

from engine import logs, redact

ROOT = Path(__file__).resolve().parents[2]
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


@pytest.fixture
def state_dir(tmp_path: Path):
    yield tmp_path / "state"
    logs.close()
    redact.clear()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def log_file(state_dir: Path) -> Path:
    return state_dir / "logs" / "engine.log"


def test_each_event_is_one_json_line_with_the_documented_fields(state_dir, capsys):
    logs.configure(state_dir, console=False)
    log = logs.get_logger().bind(run_id="r1", policy_id="p")
    log.bind(step_id="a").info("step.succeeded", duration_s=0.5, attempts=1)
    (event,) = lines(log_file(state_dir))
    stamp = event.pop("timestamp")
    assert STAMP.match(stamp), stamp
    assert list(event.items()) == [
        ("run_id", "r1"),
        ("policy_id", "p"),
        ("step_id", "a"),
        ("duration_s", 0.5),
        ("attempts", 1),
        ("event", "step.succeeded"),
        ("level", "info"),
    ]
    # the separators grep and the docs rely on: '"event": "step.succeeded"'
    assert '"event": "step.succeeded", "level": "info"' in log_file(state_dir).read_text()


def test_off_a_terminal_stderr_gets_the_same_lines_as_the_file(state_dir, capsys):
    logs.configure(state_dir, console=False)
    log = logs.get_logger().bind(run_id="r1")
    log.info("run.started")
    log.warning("step.retry", error="boom")
    log.error("step.failed", error="boom")
    assert capsys.readouterr().err == log_file(state_dir).read_text()
    assert [e["level"] for e in lines(log_file(state_dir))] == ["info", "warning", "error"]


def test_levels_are_filtered_per_destination(state_dir, capsys):
    logs.configure(state_dir, console=False, console_level=30)
    log = logs.get_logger()
    log.debug("not.anywhere")
    log.info("file.only")
    log.warning("both")
    assert [e["event"] for e in lines(log_file(state_dir))] == ["file.only", "both"]
    assert [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()] == ["both"]


def test_a_console_level_below_info_shows_debug_on_stderr_only(state_dir, capsys):
    logs.configure(state_dir, console=False, console_level=10)
    logs.get_logger().debug("detail")
    assert log_file(state_dir).read_text() == ""
    assert json.loads(capsys.readouterr().err)["event"] == "detail"


def test_events_below_the_level_are_never_rendered(state_dir, monkeypatch):
    logs.configure(state_dir, console=False)

    def fail(_event):
        raise AssertionError("rendered")

    monkeypatch.setattr(logs, "_encode_json", fail)
    logs.get_logger().bind(run_id="r1").debug("cheap", big=list(range(1000)))


def test_on_a_terminal_stderr_is_readable_and_the_file_still_json(state_dir, capsys):
    logs.configure(state_dir, console=True)
    logs.get_logger().bind(run_id="r1").info("run.started", attempt=1)
    err = capsys.readouterr().err
    assert not err.startswith("{")
    assert "run.started" in err and "attempt" in err and "r1" in err
    assert lines(log_file(state_dir))[0]["event"] == "run.started"


def test_secrets_are_redacted_in_every_field_and_destination(state_dir, capsys):
    redact.register("hunter2-secret")
    logs.configure(state_dir, console=False)
    logs.get_logger().bind(token="hunter2-secret").info(
        "step.failed", error="401 for hunter2-secret", nested={"deep": ["x hunter2-secret y"]}
    )
    written = log_file(state_dir).read_text() + capsys.readouterr().err
    assert "hunter2" not in written
    (event,) = lines(log_file(state_dir))
    assert event["token"] == "***" and event["error"] == "401 for ***" and event["nested"] == {"deep": ["x *** y"]}


def test_contextvars_are_merged(state_dir):
    logs.configure(state_dir, console=False)
    structlog.contextvars.bind_contextvars(request_id="req-7")
    try:
        logs.get_logger().info("with.context")
    finally:
        structlog.contextvars.clear_contextvars()
    logs.get_logger().info("without")
    assert [e.get("request_id") for e in lines(log_file(state_dir))] == ["req-7", None]


def test_exceptions_are_written_as_text(state_dir):
    logs.configure(state_dir, console=False)
    try:
        raise ValueError("bad value")
    except ValueError:
        logs.get_logger().exception("step.crashed")
    (event,) = lines(log_file(state_dir))
    assert event["level"] == "error"
    assert event["exception"].startswith("Traceback") and event["exception"].endswith("ValueError: bad value")


def test_nothing_is_written_before_configure_or_after_close(state_dir, capsys):
    early = logs.get_logger()  # made before configure: still follows it (loggers are not cached)
    early.error("before")
    logs.configure(state_dir, console=False)
    early.info("during")
    logs.close()
    early.error("after")
    logs.get_logger().critical("after, new logger")
    assert [e["event"] for e in lines(log_file(state_dir))] == ["during"]
    assert [json.loads(line)["event"] for line in capsys.readouterr().err.splitlines()] == ["during"]


def test_configure_again_appends_to_the_same_file(state_dir):
    logs.configure(state_dir, console=False)
    logs.get_logger().info("first")
    logs.configure(state_dir, console=False)
    logs.get_logger().info("second")
    assert [e["event"] for e in lines(log_file(state_dir))] == ["first", "second"]


def test_objects_json_cannot_hold_are_written_as_their_repr(state_dir):
    logs.configure(state_dir, console=False)
    logs.get_logger().info("odd", path=Path("/x/y"), pair={1, 2} - {2})
    (event,) = lines(log_file(state_dir))
    assert event["path"] == repr(Path("/x/y")) and event["pair"] == "{1}"


def test_threads_write_whole_lines(state_dir):
    logs.configure(state_dir, console=False, console_level=30)
    log = logs.get_logger()

    def work(n: int) -> None:
        for i in range(200):
            log.info("tick", thread=n, i=i, pad="x" * 500)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = lines(log_file(state_dir))
    assert sorted((e["thread"], e["i"]) for e in events) == [(n, i) for n in range(4) for i in range(200)]


class _BrokenPipe:
    def write(self, _text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def isatty(self) -> bool:
        return False


def test_a_closed_stderr_does_not_stop_logging_to_the_file(state_dir, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _BrokenPipe())
    logs.configure(state_dir)
    logs.get_logger().warning("still.logged")
    logs.get_logger().warning("and.this")
    assert [e["event"] for e in lines(log_file(state_dir))] == ["still.logged", "and.this"]


def test_a_process_that_leaves_through_os_exit_loses_no_line(tmp_path):
    script = (
        "import os, sys; from pathlib import Path; from engine import logs\n"
        f"logs.configure(Path({str(tmp_path)!r}), console=False)\n"
        "log = logs.get_logger()\n"
        "for i in range(100): log.info('line', i=i)\n"
        "os._exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert [e["i"] for e in lines(tmp_path / "logs" / "engine.log")] == list(range(100))
    assert len(proc.stderr.splitlines()) == 100


def test_importing_the_module_does_not_import_structlog():
    code = "import sys, engine.logs; print('structlog' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
