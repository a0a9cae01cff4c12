"""``engine server`` under load (not timed tests): run with ``.venv/bin/python bench/bench_server.py``.

The server runs as a whole subprocess, as a user starts it: ``engine server --port PORT
--no-scheduler``, logs on (``logs/engine.log`` in the state directory, and its lines on stderr,
which goes to a file), ``ENGINE_STATE_DIR`` a temporary directory, no other ``ENGINE_*`` or
``PYTHON*`` variables, byte-code cached as after an install. Before it starts, ``--runs`` recorded
runs (10,000) are written straight into the default workspace's ``runs`` table (10 policy ids,
every end state, three triggers), and an admin token is made with ``engine token create --json``.
A 3-step ``core.value`` chain is then created and approved through the API.

1. reads:     ``--rounds`` rounds (5) of ``--concurrency`` (200) simultaneous
              ``GET /api/v1/runs?limit=50``, sent at once with ``asyncio.gather``, each user with
              its own ``httpx.AsyncClient`` (a keep-alive connection; one client shared by 200
              connections costs 10-16 ms of CPU a request in httpx's pool: ``--shared-client``):
              the latency of each request (p50, p95, max over all rounds) and requests per second
              (all requests / the rounds' summed wall time). Target: **p95 < 50 ms on a 2-core
              machine**. Beside it, for where the time goes: the same rounds against
              ``GET /api/v1/health`` (no token, no database: the HTTP stack's floor), one request
              at a time (no queueing), smaller bursts (``--sweep``: 5 to 100 at once), the CPU
              time per request of the server (``/proc/PID/stat``) and of this client, and, after
              the server stopped, the same read in this process: the service function
              ``engine.service.runs.list_runs``, the token lookup every request makes, and the
              whole FastAPI application without uvicorn and sockets (``httpx.ASGITransport``).
              Pagination: the first page's ``next_cursor`` is followed once (50 older runs, none
              repeated).
2. triggers:  ``--triggers`` (20) simultaneous ``POST /api/v1/policies/{id}/runs``: the latency of
              each (p50, p95, max), then the time until all of them finished (polling
              ``GET /api/v1/runs?policy=...`` every 50 ms; and as recorded: the last
              ``finished_at`` minus the moment the first request was sent).

Checks (the script exits 1 if any fails): every response 200/201/202 as documented, no response
body and no server log line saying ``database is locked``, no ``error`` log line, every triggered
run listed exactly once and ``SUCCESS``, no other run of the policy, pagination consistent, and
the server exits 0 on SIGTERM. Medians over the rounds where it applies; ``--json`` prints the
figures as one JSON object instead of the tables. Uses the project's own dependencies (httpx)
and the standard library; ``time.perf_counter`` is the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TARGETS = {"read_p95_ms": 50.0}
DEFAULT_RUNS_PER_HOUR = 60  # [quotas] runs_per_hour of a token, engine/governance/quotas.py
LOCKED = "database is locked"
SEED_STATUSES = ("SUCCESS", "SUCCESS", "SUCCESS", "FAILED", "PARTIAL", "SUCCESS", "CANCELLED")
SEED_TRIGGERS = ("manual", "schedule", "schedule", "api")


def chain_policy(policy_id: str, n: int = 3) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "core.value", "params": {"value": 0}}]
    for i in range(1, n):
        steps.append({"id": f"s{i}", "type": "core.value", "params": {"value": {"ref": f"ctx.s{i - 1}"}}})
    return {"schema_version": 1, "id": policy_id, "title": "bench_server chain", "steps": steps}


def percentiles(values: list[float]) -> dict[str, Any]:
    """p50, p95 (nearest rank), max and mean of a list of seconds, in milliseconds."""
    ordered = sorted(values)
    rank95 = max(0, -(-95 * len(ordered) // 100) - 1)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[rank95] * 1000,
        "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
        "n": len(ordered),
    }


def stats(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# -- the state: recorded runs written straight into SQLite ------------------------------------------


def seed_runs(state_dir: Path, n: int, policies: int = 10) -> float:
    """``n`` finished runs over ``policies`` policy ids, newest 1 minute ago, one every 37 s before.

    The engine creates its tables (every migration) first; the rows go in with one executemany."""
    from engine.store import Store, runs

    start = time.perf_counter()
    store = Store(state_dir)
    newest = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    host, pid = socket.gethostname(), os.getpid()
    rows = []
    for i in range(n):
        policy_id = f"bench-seed-{i % policies}"
        status = SEED_STATUSES[i % len(SEED_STATUSES)]
        started = newest - dt.timedelta(seconds=37 * i)
        rows.append(
            {
                "id": f"{started:%Y%m%dT%H%M%S}-{i:06x}",
                "policy_id": policy_id,
                "policy_hash": f"{i % policies:064x}",
                "policy_json": json.dumps(chain_policy(policy_id)),
                "policy_path": None,
                "params_json": "{}",
                "status": status,
                "dry_run": i % 50 == 0,
                "trigger": SEED_TRIGGERS[i % len(SEED_TRIGGERS)],
                "attempt": 1 + (i % 97 == 0),
                "started_at": started.isoformat(timespec="microseconds"),
                "finished_at": (started + dt.timedelta(seconds=1.5)).isoformat(timespec="microseconds"),
                "error": "seeded: step s1 failed" if status != "SUCCESS" else None,
                "pid": pid,
                "host": host,
                "preview_dir": None,
                "scheduled_for": None,
                "actor": "bench-seed",
            }
        )
    with store.engine.begin() as conn:
        conn.execute(runs.insert(), rows)
    store.close()
    return time.perf_counter() - start


# -- the engine as a subprocess -----------------------------------------------------------------


def user_env(pycache: Path, state_dir: Path) -> dict[str, str]:
    """A user's shell (no ``ENGINE_*``, no ``PYTHON*``), byte-code cached as after an install."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "PYTHON"))}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["ENGINE_STATE_DIR"] = str(state_dir)
    return env


def create_token(engine: str, env: dict[str, str], name: str, role: str, cwd: Path) -> str:
    proc = subprocess.run(
        [engine, "token", "create", "--name", name, "--role", role, "--workspace", "default", "--json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"engine token create exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
    return str(json.loads(proc.stdout)["token"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """``engine server`` as a subprocess, its stdout and stderr in a file."""

    def __init__(self, engine: str, env: dict[str, str], port: int, log: Path) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(  # in the temporary directory: no ./engine.toml of the caller's
            [engine, "server", "--port", str(port), "--no-scheduler"],
            env=env,
            cwd=log.parent,
            stdout=self._out,
            stderr=self._out,
        )

    def wait_healthy(self, timeout_s: float = 60.0) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if self.proc.poll() is not None:
                sys.exit(f"engine server exited with {self.proc.returncode} at start; see {self.log}")
            try:
                if httpx.get(f"{self.base_url}/api/v1/health", timeout=1.0).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        sys.exit(f"engine server did not answer /api/v1/health within {timeout_s:g} s; see {self.log}")

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid)

    def stop(self, timeout_s: float = 60.0) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None if it had to be killed) and how long it took to exit."""
        start = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self._out.close()
        return code, time.perf_counter() - start


# -- the load -----------------------------------------------------------------------------------


class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failures.append(what)
        return ok


async def timed(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> tuple[float, httpx.Response | str]:
    """One request's latency and its response (or the exception's text when none came)."""
    start = time.perf_counter()
    try:
        response: httpx.Response | str = await client.request(method, url, **kw)
    except httpx.HTTPError as exc:
        response = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - start, response


def check_response(checks: Checks, label: str, response: httpx.Response | str, status: int) -> bool:
    if isinstance(response, str):
        return checks.expect(False, f"{label}: no response ({response})")
    if LOCKED in response.text:
        checks.expect(False, f"{label}: {response.status_code} body says {LOCKED!r}")
        return False
    return checks.expect(response.status_code == status, f"{label}: {response.status_code} {response.text[:300]}")


async def rounds_of(
    users: list[httpx.AsyncClient], server: Server, url: str, rounds: int, checks: Checks
) -> dict[str, Any]:
    """``rounds`` bursts of one GET per user, all sent at once: every latency, and requests per second."""
    latencies: list[float] = []
    walls: list[float] = []
    cpu_before, client_before = server.cpu(), time.process_time()
    bad = 0
    for _ in range(rounds):
        start = time.perf_counter()
        results = await asyncio.gather(*(timed(user, "GET", url) for user in users))
        walls.append(time.perf_counter() - start)
        for latency, response in results:
            latencies.append(latency)
            if isinstance(response, str) or response.status_code != 200 or LOCKED in response.text:
                bad += 1
                if bad <= 3:  # the first few, not 1,000 copies of the same failure
                    check_response(checks, f"GET {url}", response, 200)
    cpu_after, client_after = server.cpu(), time.process_time()
    checks.expect(bad == 0, f"GET {url}: {bad} of {len(latencies)} requests failed")
    out = {
        "latency": percentiles(latencies),
        "requests_per_s": len(latencies) / sum(walls),
        "round_wall_s": stats(walls),
        "failed": bad,
        "client_cpu_ms_per_request": (client_after - client_before) / len(latencies) * 1000,
    }
    if cpu_before is not None and cpu_after is not None:
        out["server_cpu_ms_per_request"] = (cpu_after - cpu_before) / len(latencies) * 1000
    return out


async def one_at_a_time(client: httpx.AsyncClient, url: str, n: int, checks: Checks) -> dict[str, Any]:
    latencies = []
    for _ in range(n):
        latency, response = await timed(client, "GET", url)
        check_response(checks, f"GET {url} (one at a time)", response, 200)
        latencies.append(latency)
    return percentiles(latencies)


async def pagination(client: httpx.AsyncClient, checks: Checks, runs_total: int) -> dict[str, Any]:
    """The first page, then its ``next_cursor`` once: 50 older runs, none repeated."""
    _, first = await timed(client, "GET", "/api/v1/runs", params={"limit": 50})
    if not check_response(checks, "GET /api/v1/runs (page 1)", first, 200):
        return {"ok": False}
    page1 = first.json()
    cursor = page1.get("next_cursor")
    if not checks.expect(bool(cursor), "page 1 has no next_cursor"):
        return {"ok": False}
    _, second = await timed(client, "GET", "/api/v1/runs", params={"limit": 50, "cursor": cursor})
    if not check_response(checks, "GET /api/v1/runs (page 2)", second, 200):
        return {"ok": False}
    page2 = second.json()
    ids1 = [r["run_id"] for r in page1["runs"]]
    ids2 = [r["run_id"] for r in page2["runs"]]
    key = [(r["started_at"], r["run_id"]) for r in page1["runs"] + page2["runs"]]
    ok = all(
        [
            checks.expect(len(ids1) == 50 and len(ids2) == 50, f"pages of {len(ids1)} and {len(ids2)} runs, not 50"),
            checks.expect(not set(ids1) & set(ids2), "page 2 repeats runs of page 1"),
            checks.expect(key == sorted(key, reverse=True), "pages 1 and 2 are not newest first"),
            checks.expect(
                runs_total <= 100 or bool(page2.get("next_cursor")), "page 2 has no next_cursor, more runs remain"
            ),
        ]
    )
    return {"ok": ok, "page1_newest": ids1[0], "page2_newest": ids2[0] if ids2 else None}


async def create_policy(client: httpx.AsyncClient, policy_id: str, checks: Checks) -> bool:
    _, created = await timed(client, "POST", "/api/v1/policies", json=chain_policy(policy_id))
    if not check_response(checks, "POST /api/v1/policies", created, 201):
        return False
    approval_hash = created.json()["approval_hash"]
    _, approved = await timed(client, "POST", f"/api/v1/policies/{policy_id}/approvals", json={"hash": approval_hash})
    return check_response(checks, f"POST /api/v1/policies/{policy_id}/approvals", approved, 201)


async def trigger_runs(client: httpx.AsyncClient, policy_id: str, n: int, checks: Checks) -> dict[str, Any]:
    """``n`` simultaneous runs of the policy, then poll until every one has finished."""
    url = f"/api/v1/policies/{policy_id}/runs"
    sent_at = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    results = await asyncio.gather(*(timed(client, "POST", url, json={"params": {}}) for _ in range(n)))
    run_ids = []
    for _, response in results:
        if check_response(checks, f"POST {url}", response, 202):
            run_ids.append(response.json()["run_id"])
    latencies = [latency for latency, _ in results]
    checks.expect(len(set(run_ids)) == len(run_ids), "the same run_id was given to two triggers")

    finished: dict[str, dict[str, Any]] = {}
    polls = 0
    while time.perf_counter() - start < 120:
        polls += 1
        _, listed = await timed(client, "GET", "/api/v1/runs", params={"policy": policy_id, "limit": 500})
        if isinstance(listed, httpx.Response) and listed.status_code == 200:
            rows = listed.json()["runs"]
            finished = {r["run_id"]: r for r in rows if r["status"] != "RUNNING"}
            if all(run_id in finished for run_id in run_ids):
                break
        else:
            check_response(checks, "GET /api/v1/runs?policy=... (polling)", listed, 200)
        await asyncio.sleep(0.05)
    all_done_s = time.perf_counter() - start

    # the final count: every triggered run exactly once, SUCCESS, and nothing else
    _, listed = await timed(client, "GET", "/api/v1/runs", params={"policy": policy_id, "limit": 500})
    rows = listed.json()["runs"] if check_response(checks, "GET /api/v1/runs?policy=...", listed, 200) else []
    seen = [r["run_id"] for r in rows]
    for run_id in run_ids:
        checks.expect(seen.count(run_id) == 1, f"run {run_id} listed {seen.count(run_id)} times, not once")
    statuses = [r["status"] for r in rows if r["run_id"] in run_ids]
    checks.expect(statuses.count("SUCCESS") == n, f"{statuses.count('SUCCESS')} of {n} triggered runs SUCCESS")
    checks.expect(len(rows) == len(run_ids), f"{len(rows)} runs of {policy_id} listed, {len(run_ids)} triggered")
    if run_ids:
        _, shown = await timed(client, "GET", f"/api/v1/runs/{run_ids[0]}")
        if check_response(checks, "GET /api/v1/runs/{id}", shown, 200):
            checks.expect(shown.json().get("status") == "SUCCESS", f"GET /api/v1/runs/{run_ids[0]}: not SUCCESS")
    recorded = [dt.datetime.fromisoformat(r["finished_at"]) for r in rows if r["finished_at"]]
    return {
        "latency": percentiles(latencies),
        "accepted": len(run_ids),
        "all_finished_polled_s": all_done_s,
        "all_finished_recorded_s": (max(recorded) - sent_at).total_seconds() if recorded else None,
        "polls": polls,
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
    }


async def load(server: Server, token: str, args: argparse.Namespace, checks: Checks) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    main = httpx.AsyncClient(
        base_url=server.base_url,
        headers=headers,
        timeout=120,
        limits=httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency),
    )

    # one client (one keep-alive connection) per simultaneous user: a single AsyncClient with 200
    # connections spends 10 to 16 ms of CPU per request in its connection pool (httpcore 1.0 walks
    # every connection for every request), and on 2 cores the benchmark would measure itself
    def user() -> httpx.AsyncClient:
        return main if args.shared_client else httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=120)

    users = [user() for _ in range(args.concurrency)]
    try:
        policy_id = "bench-server-chain"
        if not await create_policy(main, policy_id, checks):
            return {}
        read = "/api/v1/runs?limit=50"
        await asyncio.gather(*(timed(user, "GET", read) for user in users))  # warm-up: connect every user
        out: dict[str, Any] = {"sequential": await one_at_a_time(main, read, args.sequential, checks)}
        out["reads"] = await rounds_of(users, server, read, args.rounds, checks)
        out["health"] = await rounds_of(users, server, "/api/v1/health", args.rounds, checks)
        out["health_sequential"] = await one_at_a_time(main, "/api/v1/health", args.sequential, checks)
        out["sweep"] = {  # at least 100 requests a size
            n: await rounds_of(users[:n], server, read, max(args.rounds, 100 // n), checks)
            for n in args.sweep
            if n <= len(users)
        }
        out["pagination"] = await pagination(main, checks, args.runs)
        out["triggers"] = await trigger_runs(main, policy_id, args.triggers, checks)
        return out
    finally:
        for client in {id(c): c for c in [main, *users]}.values():
            await client.aclose()


# -- the same read in this process (after the server stopped) ------------------------------------------


def in_process(state_dir: Path, token: str, repeats: int) -> dict[str, Any]:
    """The read's parts without the server: the service function, the token lookup, the whole app."""
    from engine.config import EngineConfig
    from engine.governance import tokens
    from engine.server.app import create_app
    from engine.server.context import ServerContext
    from engine.service import Caller, runs

    os.environ["ENGINE_STATE_DIR"] = str(state_dir)
    context = ServerContext(root=state_dir, config=EngineConfig.load())
    ws = context.workspace("default")
    caller = Caller(actor="bench-admin", role="admin", workspace="default")

    def clock(fn: Any) -> list[float]:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times

    service = clock(lambda: runs.list_runs(ws, caller, limit=50))
    auth = clock(lambda: tokens.authenticate(context.tokens_store.engine, token))
    page = runs.list_runs(ws, caller, limit=50)
    encode = clock(lambda: json.dumps(page).encode())

    async def through_app() -> list[float]:
        transport = httpx.ASGITransport(app=create_app(context, scheduler=False))
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://app", headers=headers) as client:
            await client.get("/api/v1/runs?limit=50")
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                response = await client.get("/api/v1/runs?limit=50")
                times.append(time.perf_counter() - start)
                response.raise_for_status()
            return times

    app = asyncio.run(through_app())
    context.close()
    return {
        "service_list_runs": percentiles(service),
        "token_lookup": percentiles(auth),
        "json_encode_page": percentiles(encode),
        "asgi_app_no_sockets": percentiles(app),
    }


# -- logs -------------------------------------------------------------------------------------------


def scan_logs(paths: list[Path], checks: Checks) -> dict[str, Any]:
    locked, errors, lines = 0, [], 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            lines += 1
            if LOCKED in line:
                locked += 1
            if '"level":"error"' in line.replace(" ", "") or '"level": "error"' in line:
                errors.append(line[:300])
    checks.expect(locked == 0, f"{locked} server log lines say {LOCKED!r}")
    checks.expect(not errors, f"{len(errors)} error log lines, the first: {errors[0] if errors else ''}")
    return {"lines": lines, "locked_lines": locked, "error_lines": len(errors)}


# -- report ---------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_before": list(os.getloadavg()),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def lat_row(name: str, p: dict[str, Any], target: float | None = None) -> str:
    text = f"  {name:<46} p50 {p['p50_ms']:8.2f} ms  p95 {p['p95_ms']:8.2f} ms  max {p['max_ms']:8.2f} ms  (n {p['n']})"
    if target is not None:
        verdict = "met" if p["p95_ms"] < target else "OVER TARGET"
        text += f"   target p95 < {target:g} ms on 2 cores: {verdict}"
    return text


def print_report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"machine: {m['nproc']} x {m['cpu']}, Python {m['python']}, {m['platform']}")
    print(f"date: {m['date']}   load average before: {' '.join(f'{x:.2f}' for x in m['loadavg_before'])}")
    print(f"       after: {' '.join(f'{x:.2f}' for x in res['loadavg_after'])}")
    print(
        f"state: {res['runs']:,} seeded runs in {res['seed_s']:.2f} s; server healthy "
        f"{res['startup_s']:.2f} s after its start"
    )
    load = res.get("load", {})
    if "reads" in load:
        r, h = load["reads"], load["health"]
        conc, rounds = res["concurrency"], res["rounds"]
        print(f"\n1. reads: {rounds} rounds of {conc} simultaneous requests")
        print(lat_row("GET /api/v1/runs?limit=50", r["latency"], TARGETS["read_p95_ms"]))
        print(
            f"  {'':<46} {r['requests_per_s']:8.0f} requests/s; a round {r['round_wall_s']['median'] * 1000:.0f} ms"
            f" median; CPU a request: server {r.get('server_cpu_ms_per_request', float('nan')):.2f} ms,"
            f" client {r['client_cpu_ms_per_request']:.2f} ms"
        )
        print(lat_row("GET /api/v1/health (no token, no database)", h["latency"]))
        print(
            f"  {'':<46} {h['requests_per_s']:8.0f} requests/s; a round {h['round_wall_s']['median'] * 1000:.0f} ms"
            f" median; CPU a request: server {h.get('server_cpu_ms_per_request', float('nan')):.2f} ms,"
            f" client {h['client_cpu_ms_per_request']:.2f} ms"
        )
        cpu = r.get("server_cpu_ms_per_request")
        if cpu:
            print(
                f"  {'':<46} a burst of {conc} at {cpu:.2f} ms of server CPU each (one process, about one core):"
                f" the last answered after ~{conc * cpu:.0f} ms; p95 < {TARGETS['read_p95_ms']:g} ms for {conc}"
                f" needs <= {TARGETS['read_p95_ms'] / conc:.2f} ms each"
            )
        print(lat_row("GET /api/v1/runs?limit=50, one at a time", load["sequential"]))
        print(lat_row("GET /api/v1/health, one at a time", load["health_sequential"]))
        if load["sweep"]:
            print(f"   smaller bursts of GET /api/v1/runs?limit=50 (at least {rounds} rounds and 100 requests each)")
            for n, sw in load["sweep"].items():
                print(lat_row(f"{n} at once ({sw['requests_per_s']:.0f} requests/s)", sw["latency"]))
            within = [n for n, sw in load["sweep"].items() if sw["latency"]["p95_ms"] < TARGETS["read_p95_ms"]]
            print(f"  largest burst with p95 < {TARGETS['read_p95_ms']:g} ms: {max(within) if within else 'none'}")
        print(f"  pagination (next_cursor followed once): {'ok' if load['pagination'].get('ok') else 'FAILED'}")
    if "in_process" in res:
        ip = res["in_process"]
        print("\n   the same read in this process, after the server stopped (one at a time)")
        print(lat_row("engine.service.runs.list_runs(limit=50)", ip["service_list_runs"]))
        print(lat_row("token lookup (tokens.authenticate)", ip["token_lookup"]))
        print(lat_row("json.dumps of the page", ip["json_encode_page"]))
        print(lat_row("whole FastAPI app, no uvicorn (ASGITransport)", ip["asgi_app_no_sockets"]))
    if "triggers" in load:
        t = load["triggers"]
        print(f"\n2. triggers: {res['triggers']} simultaneous POST /api/v1/policies/{{id}}/runs")
        print(lat_row("POST .../runs (202)", t["latency"]))
        recorded = t["all_finished_recorded_s"]
        print(
            f"  all {t['accepted']} finished after {t['all_finished_polled_s']:.2f} s (polled, {t['polls']} polls); "
            f"recorded: {recorded:.2f} s" + f"   statuses {t['statuses']}"
            if recorded is not None
            else f"  {t['accepted']} accepted; none recorded as finished"
        )
    s = res["shutdown"]
    print(f"\nSIGTERM: exit code {s['exit_code']} after {s['seconds']:.2f} s; logs: {res['logs']}")
    if res["failures"]:
        print(f"\nFAILED ({len(res['failures'])}):")
        for failure in res["failures"]:
            print(f"  - {failure}")
    else:
        print("\nchecks: all passed (statuses, no 'database is locked', every run once and SUCCESS, exit 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10000, help="recorded runs seeded before the server starts")
    parser.add_argument("--concurrency", type=int, default=200, help="simultaneous GET /api/v1/runs a round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of simultaneous reads")
    parser.add_argument(
        "--triggers", type=int, default=20, help="simultaneous POST .../runs (over 60: the quota is raised to match)"
    )
    parser.add_argument("--sequential", type=int, default=50, help="requests one at a time (the unqueued latency)")
    parser.add_argument("--in-process", type=int, default=200, help="repeats of the in-process timings (0: skip)")
    parser.add_argument(
        "--sweep",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[5, 10, 20, 50, 100],
        help="smaller bursts of reads, comma-separated ('' to skip; default 5,10,20,50,100)",
    )
    parser.add_argument(
        "--shared-client", action="store_true", help="one AsyncClient for all users (measures httpx's pool)"
    )
    parser.add_argument("--engine", default=str(Path(sys.executable).parent / "engine"), help="the engine command")
    parser.add_argument("--keep", action="store_true", help="keep the state directory and print where it is")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    if args.runs < 101:
        parser.error("--runs: at least 101, so that the first two pages are full")

    checks = Checks()
    results: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        **{k: getattr(args, k) for k in ("runs", "concurrency", "rounds", "triggers")},
    }
    tmp = tempfile.mkdtemp(prefix="bench-server-")
    base = Path(tmp)
    state = base / "state"
    env = user_env(base / "pycache", state)
    if args.triggers > DEFAULT_RUNS_PER_HOUR:  # else the quota refuses the runs over it (429)
        env["ENGINE_QUOTAS_RUNS_PER_HOUR"] = str(args.triggers)
    results["seed_s"] = seed_runs(state, args.runs)
    token = create_token(args.engine, env, "bench-admin", "admin", base)
    server = Server(args.engine, env, free_port(), base / "server.log")
    try:
        results["startup_s"] = server.wait_healthy()
        results["load"] = asyncio.run(load(server, token, args, checks))
    finally:
        code, seconds = server.stop()
    results["shutdown"] = {"exit_code": code, "seconds": seconds}
    checks.expect(code == 0, f"engine server exited with {code} on SIGTERM, not 0")
    results["logs"] = scan_logs([base / "server.log", state / "logs" / "engine.log"], checks)
    if args.in_process:
        results["in_process"] = in_process(state, token, args.in_process)
    results["loadavg_after"] = list(os.getloadavg())
    results["failures"] = checks.failures
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(results)
    if args.keep:
        print(f"state kept in {base}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    sys.exit(1 if checks.failures else 0)


if __name__ == "__main__":
    main()
