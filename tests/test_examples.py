"""Every example policy runs, through the real CLI, on a copy of policies/examples/."""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pypdf import PdfReader

from tests.conftest import ROOT
from tests.smtpserver import *  # noqa: F403  (the SMTP server fixtures)

EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.json"))


@pytest.fixture
def examples(tmp_path):
    target = tmp_path / "examples"
    shutil.copytree(ROOT / "policies" / "examples", target, ignore=shutil.ignore_patterns("out"))
    return target


@pytest.fixture
def data_server(examples):
    """policies/examples/data served over HTTP on 127.0.0.1, as the README tells users to do."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(examples / "data")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def example_args(examples, name, request):
    """The run's arguments and environment: an example that reads an API (a base_url param) gets
    the data server; one that sends email gets a real SMTP server through ENGINE_SMTP_*."""
    doc = json.loads((examples / name).read_text())
    args, env = [], {}
    if "base_url" in doc.get("params", {}):
        args = ["--param", f"base_url={request.getfixturevalue('data_server')}"]
    if any(s["type"] == "send.email" for s in [*doc["steps"], *doc.get("on_failure", [])]):
        smtp = request.getfixturevalue("smtp_server")
        env = {"ENGINE_SMTP_HOST": smtp.host, "ENGINE_SMTP_PORT": str(smtp.port), "ENGINE_SMTP_SECURITY": "none"}
    return args, env


@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_example_runs(cli, examples, name, request):
    args, env = example_args(examples, name, request)
    result = cli("run", str(examples / name), "--json", *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "SUCCESS"


def test_the_flagship_emails_its_pdf_once_per_slot_and_archives_it(cli, examples, smtp_server, state_dir):
    """sales_report.json end to end: a real SMTP server gets the HTML body and the PDF; the PDF
    is archived; a second run for the same schedule slot sends nothing (idempotent)."""

    env = {"ENGINE_SMTP_HOST": smtp_server.host, "ENGINE_SMTP_PORT": str(smtp_server.port)}
    slot = "2026-12-01T06:00:00+00:00"
    api = (
        "import asyncio, sys; from engine.api import run_policy; from engine.plugins import load_plugins; "
        "from engine.store import Store; load_plugins(); "
        "r = asyncio.run(run_policy(sys.argv[1], store=Store.open(), trigger='schedule', scheduled_for=sys.argv[2])); "
        "print(r.status)"
    )

    def scheduled_run():
        full = {**os.environ, **env, "ENGINE_STATE_DIR": str(state_dir), "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", api, str(examples / "sales_report.json"), slot],
            capture_output=True,
            text=True,
            env=full,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert scheduled_run() == "SUCCESS"
    (received,) = smtp_server.handler.messages
    message = received.message
    assert message["Subject"] == "Monthly sales review 2026-11 (report version 1)"
    assert sorted(received.rcpt_tos) == ["cfo-office@example.com", "finance-team@example.com"]
    body = message.get_body(("html",)).get_content()
    assert "Monthly sales review: 2026-11" in body and "$1,110,626" in body and "+9.1%" in body
    assert "Monthly sales review" in message.get_body(("plain",)).get_content()
    (pdf,) = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert pdf.get_filename() == "sales-review-2026-11.pdf"
    reader = PdfReader(io.BytesIO(pdf.get_content()))
    assert "$1,110,626" in reader.pages[0].extract_text()
    archived = list((examples / "out" / "archive" / "2026-11").glob("*/sales-review.pdf"))
    assert len(archived) == 1 and archived[0].read_bytes() == pdf.get_content()

    assert scheduled_run() == "SUCCESS"  # the same slot again, e.g. a double fire
    assert len(smtp_server.handler.messages) == 1
    with sqlite3.connect(state_dir / "engine.db") as con:
        statuses = [r[0] for r in con.execute("select status from deliveries where channel = 'email' order by id")]
    assert statuses == ["sent", "sent", "duplicate", "duplicate"]


def test_the_flagship_alerts_by_email_when_it_fails(cli, examples, smtp_server):
    (examples / "data" / "sales.csv").write_text("Month,Region\n2026-11,EMEA\n")  # columns missing
    env = {"ENGINE_SMTP_HOST": smtp_server.host, "ENGINE_SMTP_PORT": str(smtp_server.port)}
    result = cli("run", str(examples / "sales_report.json"), "--json", env=env)
    assert result.returncode == 1
    (alert,) = smtp_server.handler.messages
    assert alert.rcpt_tos == ["data-oncall@example.com"]
    assert alert.message["Subject"].startswith("FAILED: sales review 2026-11 (run ")
    assert "Failed steps: lines" in alert.message.get_body(("html",)).get_content()


def test_api_orders_fetches_every_page_then_revalidates(cli, examples, state_dir, data_server):
    statuses = []
    for _ in range(2):
        out = cli("run", str(examples / "api_orders.json"), "--json", "--param", f"base_url={data_server}")
        run_id = json.loads(out.stdout)["run_id"]

        with sqlite3.connect(state_dir / "engine.db") as con:
            (text,) = con.execute(
                "select output_json from step_runs where run_id = ? and step_id = 'summary'", (run_id,)
            ).fetchone()
        statuses.append(json.loads(text))
    assert statuses == [
        {"pages": 3, "cache": "miss", "regions": 3},
        {"pages": 3, "cache": "revalidated", "regions": 3},
    ]


def test_orders_pipeline_quarantines_and_merges_idempotently(cli, examples, state_dir):

    for expected in ({"inserted": 60, "updated": 0, "unchanged": 0}, {"inserted": 0, "updated": 0, "unchanged": 60}):
        run_id = json.loads(cli("run", str(examples / "orders_pipeline.json"), "--json").stdout)["run_id"]
        with sqlite3.connect(state_dir / "engine.db") as con:
            (text,) = con.execute(
                "select output_json from step_runs where run_id = ? and step_id = 'summary'", (run_id,)
            ).fetchone()
        summary = json.loads(text)
        assert (summary["valid"], summary["quarantined"], summary["regions"]) == (60, 2, 3)
        assert summary["stored"] == expected
