"""A secret sent by fetch.http is stored nowhere, in no encoding: the database, its WAL, the log,
``engine show --json`` and ``engine export`` (a real run of the CLI against the local server)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from tests.conftest import policy

KEY = "k3y/with+b64=="
TOKEN = 'tök"en 42'


def forms(value: str) -> set[str]:
    return {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        base64.b64encode(value.encode()).decode(),
    }


def leaks(data: bytes) -> list[str]:
    return sorted(form for secret in (KEY, TOKEN) for form in forms(secret) if form.encode() in data)


def test_a_secret_query_value_is_stored_nowhere(cli, server, write_policy, state_dir, tmp_path):
    path = write_policy(
        policy(
            {
                "id": "f",
                "type": "fetch.http",
                "params": {
                    "url": f"{server.url}/echo",
                    "query": {"key": {"secret": "API_KEY"}, "token": {"secret": "API_TOKEN"}, "n": 1},
                    "headers": {"X-Key": {"secret": "API_KEY"}},
                },
            },
            allowed_hosts=["127.0.0.1"],
        )
    )
    env = {"API_KEY": KEY, "API_TOKEN": TOKEN}
    ran = cli("run", str(path), "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    (seen,) = server.requests("/echo")
    assert seen.query == {"key": KEY, "token": TOKEN, "n": "1"}  # the server got the real values

    shown = cli("show", run_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    exported = cli("export", run_id, "--out", str(tmp_path / "export"), env=env)
    assert exported.returncode == 0, exported.stderr
    (steps_file,) = (tmp_path / "export").rglob("steps.jsonl")
    (step,) = [json.loads(line) for line in steps_file.read_text().splitlines()]
    assert step["output"]["url"] == f"{server.url}/echo?key=***&token=***&n=1"

    files = [p for p in [*state_dir.rglob("*"), *(tmp_path / "export").rglob("*")] if p.is_file()]
    names = {p.name for p in files}
    assert {"engine.db", "engine.log", "summary.json", "steps.jsonl"} <= names
    found = {str(p.relative_to(tmp_path)): leaks(p.read_bytes()) for p in files}
    found["stdout of run, show, export"] = leaks((ran.stdout + shown.stdout + exported.stdout).encode())
    found["stderr"] = leaks((ran.stderr + shown.stderr + exported.stderr).encode())
    assert {where: forms for where, forms in found.items() if forms} == {}


def test_the_output_url_masks_only_secret_values(run, store, server):
    import os

    os.environ["API_KEY"] = KEY
    try:
        result = run(
            policy(
                {
                    "id": "f",
                    "type": "fetch.http",
                    "params": {"url": f"{server.url}/json", "query": {"key": {"secret": "API_KEY"}, "q": "a b/c"}},
                },
                allowed_hosts=["127.0.0.1"],
            )
        )
    finally:
        del os.environ["API_KEY"]
    (row,) = store.get_steps(result.run_id)
    assert json.loads(row["output_json"])["url"] == f"{server.url}/json?key=***&q=a+b%2Fc"
