"""``engine server`` as a user starts it: a real process on 127.0.0.1, a token from
``engine token create``, and SIGTERM/SIGINT stop it with exit code 0 after its runs finish."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT
from tests.server.conftest import hello


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine(*args, env, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], env=env, capture_output=True, text=True, timeout=60, **kwargs
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_engine_server_serves_and_stops_on_a_signal_with_exit_0(tmp_path, sig):
    env = {**os.environ, "ENGINE_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    made = engine("token", "create", "--name", "ci", "--role", "admin", "--workspace", "default", "--json", env=env)
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "server", "--port", str(port), "--no-scheduler", "--grace-s", "10"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "engine server did not answer /health"
            time.sleep(0.1)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        doc = {**hello("slowish"), "steps": [{"id": "wait", "type": "core.shell", "params": {"argv": ["sleep", "1"]}}]}
        created = client.post("/policies", content=json.dumps(doc))
        if created.status_code == 422:  # core.shell not allowed by this configuration: a plain step then
            doc = hello("slowish")
            created = client.post("/policies", content=json.dumps(doc))
        assert created.status_code == 201, created.text
        digest = created.json()["approval_hash"]
        assert client.post("/policies/slowish/approvals", json={"hash": digest}).status_code == 201
        run_id = client.post("/policies/slowish/runs").json()["run_id"]
        client.close()
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert token not in stderr  # tokens are never logged
    shown = engine("show", run_id, "--json", env=env)
    assert json.loads(shown.stdout)["status"] == "SUCCESS"  # the run finished within the grace period
