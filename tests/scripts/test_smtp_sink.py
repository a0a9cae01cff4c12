"""scripts/smtp_sink.py: a real process on a free port; send.email delivers to it; SIGTERM stops it."""

from __future__ import annotations

import email
import email.policy
import signal
import subprocess
import sys
import time
from pathlib import Path

import tests.sendkit  # noqa: F401  (test.report: a real PDF and an HTML page as artifacts)
from tests.conftest import ROOT, policy
from tests.sendkit import pdf_bytes


def wait_for(path: Path, proc: subprocess.Popen[str], limit_s: float = 20) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_the_sink_saves_each_message_and_its_attachments(run, tmp_path, monkeypatch):
    out, port_file = tmp_path / "mail", tmp_path / "sink.port"
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "smtp_sink.py"), "--port", "0", "--port-file", str(port_file)]
        + ["--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(port_file, sink)
        port = int(port_file.read_text())
        monkeypatch.setenv("ENGINE_SMTP_HOST", "127.0.0.1")  # the machine's server, as users set it
        monkeypatch.setenv("ENGINE_SMTP_PORT", str(port))
        send = {
            "from": "reports@example.com",
            "to": ["ann@example.com"],
            "subject": "Daily sales",
            "html": "<p>Hello</p>",
            "attachments": [{"ref": "ctx.report.pdf"}],
            "security": "none",
        }
        result = run(
            policy({"id": "report", "type": "test.report"}, {"id": "mail", "type": "send.email", "params": send})
        )
        assert result.status == "SUCCESS", result.steps[1].error
    finally:
        sink.send_signal(signal.SIGTERM)
        stdout, stderr = sink.communicate(timeout=20)
    assert sink.returncode == 0, stderr
    (eml,) = sorted(out.glob("*.eml"))
    assert eml.name.startswith("0001-")
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert (msg["Subject"], msg["To"]) == ("Daily sales", "ann@example.com")
    assert (out / eml.stem / "report.pdf").read_bytes() == pdf_bytes("Daily sales report")
    lines = stdout.splitlines()
    assert lines[0] == f"smtp sink listening on 127.0.0.1:{port}, saving mail to {out}"
    assert lines[1] == (
        f"received {eml} from reports@example.com to ann@example.com; attachments in {out / eml.stem}: report.pdf"
    )
    assert lines[2] == "smtp sink stopped"
