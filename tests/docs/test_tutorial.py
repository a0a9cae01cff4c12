"""docs/tutorial.md stays true: walk it with the real CLI, in a fresh folder, against a real SMTP server.

The tutorial marks each block the test uses with ``<!-- test: NAME -->`` on the line before it.
Blocks of commands and their output start each command with ``$ ``; the test runs those commands
(``.venv/bin/engine`` becomes ``python -m engine``) in a temporary folder laid out as the reader's
(``my-report/`` with the files of docs/tutorial/), with the state directory ``.engine`` there, and
compares their output with the block. What varies between runs is normalised on both sides: run
ids, the folder's absolute path (``/home/you/policy-engine`` in the page), the SMTP port, the
sink's file names, artifact hashes, and fire times (checked against the schedule instead).
The live tables of ``engine run`` only appear on a terminal; their step states are compared with
the run's recorded step states.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pypdf
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "tutorial.md"
FILES = ROOT / "docs" / "tutorial"
READER_ROOT = "/home/you/policy-engine"  # how the page writes the reader's folder

_MARKED = re.compile(r"^<!-- test: ([\w-]+) -->\n```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_RUN_ID = re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}")


def blocks() -> dict[str, str]:
    found = _MARKED.findall(PAGE.read_text(encoding="utf-8"))
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), f"duplicate markers in {PAGE.name}: {names}"
    return dict(found)


def commands(block: str) -> list[str]:
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


def output_of(block: str) -> str:
    """The block's lines after its last command."""
    lines = block.splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("$ "))
    return "\n".join(lines[last + 1 :])


def normalise(text: str) -> str:
    text = _RUN_ID.sub("RUN_ID", text)
    text = re.sub(r"\d{4}-\d{8}T\d{12}", "NNNN-TIME", text)  # the sink's file names
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"[0-9a-f]{2}/[0-9a-f]{64}", "SHA256", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def summary(text: str) -> str:
    """The end of a run's output: from its ``run RUN_ID STATUS`` line on."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if _RUN_ID.match(line.removeprefix("run ")))
    return normalise("\n".join(lines[start:]))


def table_states(block: str) -> list[tuple[str, str]]:
    """(step, state) of the rows of the live table shown in a block."""
    rows = [line.split("│") for line in block.splitlines() if line.startswith("│")]
    return [(r[1].strip(), r[2].strip()) for r in rows]


def one_line(text: str) -> str:
    return " ".join(text.split())


class Reader:
    """The reader's terminal: a folder, the environment, and the engine on the PATH of the page."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        self.env.update({"ENGINE_STATE_DIR": ".engine", "COLUMNS": "1000", "PYTHONPATH": str(ROOT)})

    def argv(self, command: str) -> list[str]:
        argv = shlex.split(command)
        if argv[0] == ".venv/bin/engine":
            return [sys.executable, "-m", "engine", *argv[1:]]
        assert argv[0] == "mv", f"the test does not know how to run {command!r}"
        return argv

    def run(self, command: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(command), capture_output=True, text=True, env=self.env, cwd=self.root, timeout=120
        )
        if code is not None:
            assert result.returncode == code, f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def show(self, text: str) -> str:
        """Output as the page shows it: the temporary folder written as the reader's."""
        return text.replace(str(self.root), READER_ROOT)

    def step_states(self, run_id: str) -> list[tuple[str, str]]:
        with sqlite3.connect(self.root / ".engine" / "engine.db") as db:
            rows = db.execute(
                "select step_id, status from step_runs where run_id = ? and phase = 'main' order by position",
                (run_id,),
            ).fetchall()
        return [(step, status) for step, status in rows]

    def run_block(self, block: str, code: int, run_id: str = "") -> tuple[str, str]:
        """Run the block's commands (the last one with exit ``code``; the page's run id replaced by
        ``run_id``); check its summary and table."""
        *before, last = [_RUN_ID.sub(run_id, c) if run_id else c for c in commands(block)]
        for command in before:
            self.run(command)
        result = self.run(last, code)
        # off a terminal, the log lines and then the summary go to stderr (docs/cli.md)
        # (compared word by word: a long line wraps at the console's width)
        assert one_line(summary(self.show(result.stderr))) == one_line(summary(output_of(block)))
        (run_id,) = {m.group(1) for m in re.finditer(r"^run (\S+) ", result.stderr, re.MULTILINE)}
        assert self.step_states(run_id) == table_states(block)
        return run_id, result.stderr


def test_the_tutorial_files_are_the_ones_on_the_page() -> None:
    page = blocks()
    assert page["data"] == (FILES / "weekly_sales.csv").read_text(encoding="utf-8")
    assert page["policy"] == (FILES / "weekly_report.json").read_text(encoding="utf-8")


def test_walk_the_tutorial(tmp_path: Path) -> None:
    page = blocks()
    reader = Reader(tmp_path.resolve())
    folder = reader.root / "my-report"
    folder.mkdir()
    for name in ("weekly_sales.csv", "weekly_report.json"):
        shutil.copy(FILES / name, folder / name)
    policy = folder / "weekly_report.json"

    # 3-4. validate and plan print what the page shows
    for name in ("validate", "plan"):
        (command,) = commands(page[name])
        result = reader.run(command)
        assert normalise(result.stdout) == normalise(output_of(page[name])), name

    # 5. the dry run: its summary, and the previews where the page says
    reader.run_block(page["dry-run"], 0)
    (command,) = commands(page["dry-run-files"])
    previews = sorted(p.relative_to(reader.root).as_posix() for p in (reader.root / ".engine" / "runs").rglob("*.*"))
    assert [normalise(p) for p in previews] == sorted(normalise(output_of(page["dry-run-files"])).splitlines())
    eml = next(p for p in previews if p.endswith("/mail.eml"))
    preview = email.message_from_bytes((reader.root / eml).read_bytes(), policy=email.policy.default)
    assert [part.get_filename() for part in preview.iter_attachments()] == ["weekly-sales.pdf"]
    pdf = next(p for p in previews if p.endswith("/pdf/weekly-sales.pdf"))
    assert (reader.root / pdf).read_bytes().startswith(b"%PDF")
    attached = next(preview.iter_attachments()).get_payload(decode=True)
    assert (reader.root / pdf).read_bytes() == attached

    # 6. the sink, as the page starts it (on a free port), and the real run
    (sink_command,) = commands(page["sink-run"])
    sink_argv = shlex.split(sink_command)
    assert sink_argv[:2] == [".venv/bin/python", "scripts/smtp_sink.py"]
    port_file = tmp_path / "sink.port"
    sink_argv[sink_argv.index("--port") + 1] = "0"
    sink_log = tmp_path / "sink.log"
    with sink_log.open("w") as log:
        sink = subprocess.Popen(
            [sys.executable, str(ROOT / sink_argv[1]), *sink_argv[2:], "--port-file", str(port_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=reader.root,
        )
    try:
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and sink.poll() is None, sink_log.read_text()
            time.sleep(0.05)
        port = port_file.read_text().strip()
        (export,) = [line for line in page["smtp-env"].splitlines() if line.startswith("export ")]
        settings = dict(item.split("=", 1) for item in shlex.split(export)[1:])
        assert settings["ENGINE_SMTP_PORT"] == "2525"
        reader.env.update(settings, ENGINE_SMTP_PORT=port)
        walk_the_sending_part(page, reader, sink_log)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=20)

    # 9. the schedule
    lines = policy.read_text(encoding="utf-8").splitlines()
    edit = page["schedule-edit"].splitlines()
    (added,) = [line for line in edit if '"schedule"' in line]
    title = lines.index(edit[0])
    assert lines[title + 1] == edit[-1], "the page adds the schedule between the title and the steps"
    policy.write_text("\n".join([*lines[: title + 1], added, *lines[title + 1 :]]) + "\n", encoding="utf-8")
    reader.run(commands(page["validate"])[0])
    (command,) = commands(page["schedule"])
    check_schedule(reader.run(command).stdout, output_of(page["schedule"]), json.loads("{" + added.rstrip(",") + "}"))

    # the default catch-up would fire at once: the page's OVERDUE line
    default = json.loads(policy.read_text(encoding="utf-8"))
    del default["schedule"]["catchup"]
    other = reader.root / "default-catchup"
    other.mkdir()
    (other / "weekly_report.json").write_text(json.dumps(default), encoding="utf-8")
    shutil.copy(folder / "weekly_sales.csv", other)
    overdue = reader.run(".venv/bin/engine schedule default-catchup/").stdout.splitlines()[-1]
    assert f"with `{overdue.strip()}`" in PAGE.read_text(encoding="utf-8")

    # 10. engine serve starts, skips last Monday's slot (catchup none) and stops on Ctrl-C
    check_serve(reader, page["serve"])


def walk_the_sending_part(page: dict[str, str], reader: Reader, sink_log: Path) -> None:
    mail = reader.root / "my-report" / "mail"

    def messages() -> list[Path]:
        return sorted(mail.glob("*.eml"))

    def sink_lines() -> list[str]:
        return normalise(reader.show(sink_log.read_text())).splitlines()

    # the real run delivers one message, with the PDF attached
    reader.run_block(page["run"], 0)
    assert len(messages()) == 1
    assert sink_lines() == normalise(output_of(page["sink-run"])).splitlines()
    found = sorted(p.relative_to(reader.root).as_posix() for p in mail.rglob("*") if p.is_file())
    assert [normalise(p) for p in found] == normalise(output_of(page["mail-files"])).splitlines()
    message = email.message_from_bytes(messages()[0].read_bytes(), policy=email.policy.default)
    assert message["Subject"].startswith("Weekly sales report ")
    assert message["To"] == "sales-team@example.com"
    body = message.get_body(("plain",))
    assert body is not None and "Revenue this week: $29,750 from 920 units." in body.get_content()
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "weekly-sales.pdf"
    pdf = pypdf.PdfReader(io.BytesIO(attachment.get_payload(decode=True)))
    text = " ".join(page_.extract_text() for page_ in pdf.pages)
    for words in ("Weekly sales", "$29,750", "920", "By region", "By product", "Gadgets"):
        assert words in text
    assert "Revenue this week: **$29,750** from\n920 units." in PAGE.read_text(encoding="utf-8")

    # 7. the mistake: the lines the page shows, and validate's error text exactly as quoted
    policy = reader.root / "my-report" / "weekly_report.json"
    good = policy.read_text(encoding="utf-8")
    bad = good.replace('"decimals": 0},\n           "value"', '"decimals": "0"},\n           "value"', 1)
    bad = bad.replace('{"name": "units", "label": "Units"', '{"name": "units", "lable": "Units"', 1)
    assert bad.count('"0"') == 1 and bad.count('"lable"') == 1
    bad_lines = [line.strip() for line in bad.splitlines()]
    for line in page["mistake-lines"].splitlines():
        assert line.strip() in bad_lines
    policy.write_text(bad, encoding="utf-8")
    (command,) = commands(page["mistake"])
    result = reader.run(command, 2)
    assert result.stdout == ""
    assert normalise(result.stderr) == normalise(output_of(page["mistake"]))
    policy.write_text(good, encoding="utf-8")

    # 8. a failed run, and its resume: one message in all, and it is for the resumed run
    failed, stderr = reader.run_block(page["fail"], 1)
    assert len(messages()) == 1
    assert "step.failed" in stderr
    resumed_id, _ = reader.run_block(page["resume"], 0, run_id=failed)
    assert resumed_id == failed
    assert [_RUN_ID.search(c) is not None for c in commands(page["resume"])] == [False, True]
    assert len(messages()) == 2
    assert sink_lines()[-1] == normalise(page["sink-resume"])
    with sqlite3.connect(reader.root / ".engine" / "engine.db") as db:
        sent = db.execute("select count(*) from deliveries where run_id = ? and status = 'sent'", (failed,))
        assert sent.fetchone() == (1,)

    # the side note: the policy edited instead; resume warns and hints at --policy
    for command in commands(page["fail"])[:2]:
        reader.run(command, None)
    failed_again = _RUN_ID.findall(reader.run(".venv/bin/engine runs --limit 1 --json").stdout)[0]
    policy.write_text(good.replace('"path": "weekly_sales.csv"', '"path": "sales_week49.csv"'), encoding="utf-8")
    (command,) = commands(page["resume-edited"])
    result = reader.run(_RUN_ID.sub(failed_again, command), 1)
    shown = output_of(page["resume-edited"])
    warning = shown.split("\n2026-")[0]  # the warning, before the log lines
    assert one_line(normalise(warning)) in one_line(normalise(result.stdout + result.stderr))
    assert one_line(summary(reader.show(result.stderr))) == one_line(summary(shown))
    assert len(messages()) == 2
    policy.write_text(good, encoding="utf-8")
    shutil.move(reader.root / "my-report" / "sales_week49.csv", reader.root / "my-report" / "weekly_sales.csv")


def check_schedule(actual: str, shown: str, edit: dict) -> None:
    """The page's engine schedule output, with the fire times checked against the schedule."""
    zone = ZoneInfo(edit["schedule"]["timezone"])
    assert edit["schedule"]["cron"] == "0 7 * * MON"
    pattern = re.compile(r"  next (\S+)  \((\S+) America/New_York\)")
    for text in (actual, shown):
        fires = [pattern.fullmatch(line) for line in text.splitlines() if line.startswith("  next ")]
        assert len(fires) == 5 and all(fires)
        for fire in fires:
            assert fire is not None
            utc, local = dt.datetime.fromisoformat(fire.group(1)), dt.datetime.fromisoformat(fire.group(2))
            assert utc == local and utc.tzinfo == dt.UTC
            here = utc.astimezone(zone)
            assert (here.weekday(), here.hour, here.minute) == (0, 7, 0) and here.utcoffset() == local.utcoffset()
    others = [normalise(line) for line in actual.splitlines() if not line.startswith("  next ")]
    assert others == [normalise(line) for line in shown.splitlines() if not line.startswith("  next ")]


def check_serve(reader: Reader, block: str) -> None:
    """engine serve logs what the page shows, starts no run, and stops with exit 0 on Ctrl-C."""
    (command,) = commands(block)
    shown = [m.group(1) for m in re.finditer(r"\] (schedule\.\w+)", block)]
    serve = subprocess.Popen(
        reader.argv(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=reader.env,
        cwd=reader.root,
    )
    events: list[dict] = []
    try:
        assert serve.stderr is not None
        deadline = time.monotonic() + 60
        while "schedule.skipped" not in [e["event"] for e in events]:
            assert time.monotonic() < deadline, events
            line = serve.stderr.readline()
            assert line, f"engine serve stopped: {events}"
            events.append(json.loads(line))
        time.sleep(1.5)  # a run would start now if the slot were due
    finally:
        serve.send_signal(signal.SIGINT)
        _, rest = serve.communicate(timeout=60)
    events += [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    assert serve.returncode == 0
    assert [e["event"] for e in events] == shown
    skipped = next(e for e in events if e["event"] == "schedule.skipped")
    assert skipped["reason"] == "missed"
    slot = dt.datetime.fromisoformat(skipped["scheduled_for"]).astimezone(ZoneInfo("America/New_York"))
    assert (slot.weekday(), slot.hour) == (0, 7)
    assert "schedule.fire" not in [e["event"] for e in events]
    runs = reader.run(".venv/bin/engine runs --trigger schedule --json").stdout
    assert json.loads(runs)["runs"] == []


@pytest.mark.parametrize("name", ["validate", "plan", "dry-run", "run", "fail", "resume", "schedule", "serve"])
def test_the_page_shows_commands_as_the_readme_does(name: str) -> None:
    assert all(c.startswith((".venv/bin/engine ", "mv ")) for c in commands(blocks()[name]))
