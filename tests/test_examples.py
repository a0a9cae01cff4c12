"""Every example policy runs, through the real CLI, on a copy of policies/examples/."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.json"))


@pytest.fixture
def examples(tmp_path):
    target = tmp_path / "examples"
    shutil.copytree(ROOT / "policies" / "examples", target, ignore=shutil.ignore_patterns("out"))
    return target


@pytest.fixture
def data_server(examples):
    """policies/examples/data served over HTTP on 127.0.0.1, as the README tells users to do."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(examples / "data")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def example_args(examples, name, request):
    """The run's arguments: an example that reads an API (a base_url param) gets the data server."""
    declared = json.loads((examples / name).read_text()).get("params", {})
    if "base_url" in declared:
        return ["--param", f"base_url={request.getfixturevalue('data_server')}"]
    return []


@pytest.mark.parametrize("name", [p.name for p in EXAMPLES])
def test_example_runs(cli, examples, name, request):
    result = cli("run", str(examples / name), "--json", *example_args(examples, name, request))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "SUCCESS"


def test_api_orders_fetches_every_page_then_revalidates(cli, examples, state_dir, data_server):
    statuses = []
    for _ in range(2):
        out = cli("run", str(examples / "api_orders.json"), "--json", "--param", f"base_url={data_server}")
        run_id = json.loads(out.stdout)["run_id"]
        import sqlite3

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
    import sqlite3

    for expected in ({"inserted": 60, "updated": 0, "unchanged": 0}, {"inserted": 0, "updated": 0, "unchanged": 60}):
        run_id = json.loads(cli("run", str(examples / "orders_pipeline.json"), "--json").stdout)["run_id"]
        with sqlite3.connect(state_dir / "engine.db") as con:
            (text,) = con.execute(
                "select output_json from step_runs where run_id = ? and step_id = 'summary'", (run_id,)
            ).fetchone()
        summary = json.loads(text)
        assert (summary["valid"], summary["quarantined"], summary["regions"]) == (60, 2, 3)
        assert summary["stored"] == expected
