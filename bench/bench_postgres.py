"""PostgreSQL against SQLite, one host against three (not timed tests): run with
``.venv/bin/python bench/bench_postgres.py``.

Every ``engine`` here is a whole subprocess, as a user starts it, the way ``bench/bench_cli.py``
runs it (its helpers are imported): logs on (``logs/engine.log`` in the state directory, and the
info lines on stderr, which goes to a file), ``ENGINE_STATE_DIR`` a temporary directory, no other
``ENGINE_*`` or ``PYTHON*`` variables than the ones named below, byte-code cached as after an
install.

PostgreSQL: without ``--pg-url``, a throwaway server of Debian's ``postgresql`` package started
by ``tests/pg.py`` (``initdb`` in a temporary folder, a random port on 127.0.0.1, removed at the
end) **with durability off**: ``fsync=off``, ``synchronous_commit=off``, ``full_page_writes=off``.
Its commits never wait for the disk, so its figures flatter PostgreSQL against SQLite, which runs
as the engine opens it (WAL, ``synchronous=NORMAL``: no fsync per commit either, but a WAL file
on the local disk). The server runs on the same cores as the engine and competes with it for them. With
``--pg-url postgresql+psycopg://USER@HOST:PORT/DB`` the bench uses that server instead: its role
must be allowed to ``CREATE DATABASE``; the databases it makes (``bench_pg_PID_N``) are dropped
at the end.

1. per step:  ``engine run --json`` of the generated 1,000-step ``core.value`` chain of
              ``bench_cli.py`` (each step refs the one before), once with the default SQLite
              state (``STATE_DIR/engine.db``) and once with
              ``ENGINE_DB_URL=postgresql+psycopg://...``, in turns (SQLite first in even repeats,
              PostgreSQL first in odd ones). Each database is made once, empty, and migrated by a
              warm-up 1-step run; every repeat then adds its runs to the same database. As in
              ``bench_cli.py``: the run's own recorded duration (``finished_at - started_at`` of
              the ``--json`` output) minus the median of the same database's 1-step runs (one
              after each long run), divided by 999. The ratio PostgreSQL / SQLite is per repeat.
              Beside it, the same difference of CPU time, over 999: of the ``engine`` process
              (``getrusage`` of the finished children; this includes what the process does
              outside the recorded duration, such as validating the 1,000 steps) and of the
              PostgreSQL server (``/proc``, its backends included; the throwaway server only).
2. serve:     ``engine serve FOLDER`` with ``--policies`` (20) policies, each a ``--steps`` (3)
              step ``core.value`` chain due every ``--interval-s`` (1) second on the faked clock
              ``ENGINE_TEST_CLOCK=2030-01-01T00:00:00+00:00@LAUNCH_TIME x --rate`` (10: a slot of
              each policy every 0.1 s of real time, 12,000 slots a minute in all: far more than
              is run, so the figure is what the processes manage, not what the clock offers).
              ``ENGINE_CONFIG`` names an ``engine.toml`` with ``[quotas] runs_per_hour = 0``
              and ``emails_per_day = 0`` (no quota; the default stops at 60 runs an hour).
              Configurations: 1 process on PostgreSQL, 3 processes on PostgreSQL (``--hosts``),
              and, for reference, 1 process on SQLite (``--no-sqlite-serve`` leaves it out);
              each ``--cycles`` (2) times, the configurations in turns (the order reversed every
              other cycle), each time on a new, empty database. Each process has its own
              ``ENGINE_HOST_ID`` and local ``ENGINE_STATE_DIR``; the processes of a configuration
              share one database and one ``ENGINE_ARTIFACTS_DIR``. Once every process logged
              ``schedule.serve``, and ``--warmup-s`` (3) more seconds, the ``runs`` and
              ``schedule_slots`` tables are counted every ``--slice-s`` (5) seconds for
              ``--window-s`` (30) seconds: runs ``SUCCESS`` per real minute (per slice, over all
              cycles: median, min, max; and over each whole window), the slots recorded
              ``SKIPPED`` by reason (``overlap``: due while a run of the policy was still going,
              on this host or another), the claims lost to another process (``schedule.skipped``
              ``claimed elsewhere`` log lines: not recorded in the database), each host's share,
              and the CPU time of the serve processes and of the PostgreSQL server (``/proc``;
              the throwaway server only) against the machine's busy time (``/proc/stat``). Under
              the default ``catchup: latest``, a policy whose run outlasted several slots runs
              only the newest of them next: the slots passed over in between are not recorded,
              so ran + skipped is less than what came due.

Checks (the script exits 1 if any fails): every run ``SUCCESS``, no slot run twice (one run per
policy and ``scheduled_for``), no ``"level":"error"`` log line, each serve process exits 0 on
SIGTERM. Medians, min and max; ``--json`` prints the figures as one JSON object instead of the
tables; ``--only per-step`` (or ``serve``) measures just that part. Uses the standard library, the
project's own dependencies (psycopg) and, without ``--pg-url``, Debian's ``postgresql`` package;
``time.perf_counter`` is the clock.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests/pg.py: the throwaway server

from bench_cli import Cli, chain_policy, machine, recorded_duration_s, row, stats, user_env  # noqa: E402

PARTS = ("per-step", "serve")
CLOCK_START = "2030-01-01T00:00:00+00:00"
NO_QUOTAS = "[quotas]\nruns_per_hour = 0\nemails_per_day = 0\n"


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# -- PostgreSQL: a throwaway server, or the one of --pg-url ---------------------------------------


class Postgres:
    """Makes empty databases on the throwaway server of ``tests/pg.py`` or on ``--pg-url``'s."""

    def __init__(self, url: str | None) -> None:
        self.server: Any = None
        self.made: list[str] = []
        if url is None:
            from tests import pg

            try:
                self.server = pg.start()
            except pg.Unavailable as exc:
                sys.exit(f"no throwaway PostgreSQL server ({exc}); give one with --pg-url")
            self.admin_url = self.server.url("postgres")
        else:
            self.admin_url = url
        with psycopg.connect(libpq(self.admin_url)) as conn:
            found = conn.execute("SHOW server_version").fetchone()
        self.version = str(found[0]) if found else "?"

    @property
    def throwaway(self) -> bool:
        return self.server is not None

    def new_database(self) -> str:
        """An empty database (the first engine process to start makes its tables)."""
        if self.server is not None:
            return str(self.server.create_database(migrated=False))
        name = f"bench_pg_{os.getpid()}_{len(self.made) + 1}"
        with psycopg.connect(libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return urllib.parse.urlsplit(self.admin_url)._replace(path=f"/{name}").geturl()

    def postmaster_pid(self) -> int | None:
        """The throwaway server's main process (its backends are its children)."""
        if self.server is None:
            return None
        try:
            return int((Path(self.server.data) / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            return
        with psycopg.connect(libpq(self.admin_url), autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- 1. per step: the same chain on SQLite and on PostgreSQL ----------------------------------------


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children (the ``engine`` commands)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def per_step(clis: dict[str, Cli], chain: Path, one: Path, repeats: int, pg_cpu: Any) -> dict[str, Any]:
    """Each database's cost per step, taken in turns so that both see the same moments; beside it
    the CPU time per step of the ``engine`` process and (``pg_cpu``: a callable, or None) of the
    PostgreSQL server, each the 1,000-step run's minus the median 1-step run's, over 999."""
    names = list(clis)
    series = ("chain_s", "one_s", "wall", "chain_cpu", "one_cpu", "chain_pg", "one_pg")
    m: dict[str, dict[str, list[float]]] = {name: {k: [] for k in series} for name in names}

    def measure(name: str, policy: Path, prefix: str) -> None:
        cpu, pg = children_cpu_s(), pg_cpu() if pg_cpu else 0.0
        recorded, process_wall = recorded_duration_s(clis[name], policy)
        m[name][f"{prefix}_s"].append(recorded)
        m[name][f"{prefix}_cpu"].append(children_cpu_s() - cpu)
        m[name][f"{prefix}_pg"].append((pg_cpu() if pg_cpu else 0.0) - pg)
        if prefix == "chain":
            m[name]["wall"].append(process_wall)

    for cli in clis.values():
        recorded_duration_s(cli, one)  # warm-up: creates the tables, fills the file and byte-code caches
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            measure(name, chain, "chain")
            measure(name, one, "one")
    result: dict[str, Any] = {}
    per_step_ms: dict[str, list[float]] = {}

    def per_step_of(name: str, long: str, short: str) -> list[float]:
        # the 1-step run's median, not its own pair: one slow 1-step run would skew a whole repeat
        base = statistics.median(m[name][short])
        return [(x - base) / 999 * 1000 for x in m[name][long]]

    for name in names:
        per_step_ms[name] = per_step_of(name, "chain_s", "one_s")
        result[name] = {
            "per_step_ms": stats(per_step_ms[name]),
            "engine_cpu_per_step_ms": stats(per_step_of(name, "chain_cpu", "one_cpu")),
            "run_1000_recorded_s": stats(m[name]["chain_s"]),
            "run_1_recorded_s": stats(m[name]["one_s"]),
            "run_1000_process_wall_s": stats(m[name]["wall"]),
        }
        if name == "postgresql" and pg_cpu:
            result[name]["postgres_cpu_per_step_ms"] = stats(per_step_of(name, "chain_pg", "one_pg"))
    pairs = zip(per_step_ms["postgresql"], per_step_ms["sqlite"], strict=True)
    result["ratio_postgresql_to_sqlite"] = stats([p / s for p, s in pairs])
    return result


# -- 2. serve: scheduled runs per minute ----------------------------------------------------------


def interval_policy(policy_id: str, interval_s: int, steps: int) -> dict[str, Any]:
    doc = chain_policy(steps)
    doc["id"] = policy_id
    doc["schedule"] = {"interval_seconds": interval_s}
    return doc


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (``[1]`` is the parent pid); []
    when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def server_cpu_s(postmaster: int) -> tuple[float, int]:
    """CPU seconds of a PostgreSQL server so far: the postmaster's own, the children it waited for
    (backends that ended) and its live children (backends, background processes); and how many
    of the children are client backends (``postgres: USER DB HOST(PORT) ...``) or ended and not
    yet waited for."""
    own = _stat(postmaster)
    if not own:
        return 0.0, 0
    total = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
    backends = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields and int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
                try:
                    title = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    title = ""
                # a backend, or a child ending (its command line is gone before it is a zombie)
                backends += not title or fields[0] == "Z" or bool(re.search(r"\(\d+\)|\[local\]", title))
    return total / os.sysconf("SC_CLK_TCK"), backends


def settled_server_cpu_s(postmaster: int) -> float:
    """:func:`server_cpu_s` once no client backend is left and two readings 20 ms apart agree (up
    to 2 s): the backend of an ``engine`` command that just ended may still be ending, and one
    that the postmaster waits for between the two parts of a reading is counted in neither."""
    deadline = time.perf_counter() + 2.0
    last = None
    while True:
        cpu, backends = server_cpu_s(postmaster)
        if (backends == 0 and cpu == last) or time.perf_counter() > deadline:
            return cpu
        last = cpu if backends == 0 else None
        time.sleep(0.02)


def machine_busy_s() -> float:
    """Busy CPU seconds of the machine so far, all cores (``/proc/stat``: user to steal, less idle
    and iowait)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class StateDb:
    """Counts in the state database of one configuration (PostgreSQL or SQLite), over one
    connection kept open (on PostgreSQL a new one would start and end a backend every time)."""

    def __init__(self, url: str | None, sqlite_path: Path | None) -> None:
        self.url = url
        self.sqlite_path = sqlite_path
        self.conn: Any = None

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.conn is None:
            if self.url is not None:
                self.conn = psycopg.connect(libpq(self.url), autocommit=True)
            else:
                assert self.sqlite_path is not None
                self.conn = sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None)
        return [tuple(r) for r in self.conn.execute(query).fetchall()]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def counts(self) -> dict[str, Any]:
        runs = self.rows("SELECT status, count(*) FROM runs WHERE trigger = 'schedule' GROUP BY status")
        skipped = self.rows(
            "SELECT coalesce(reason, ''), count(*) FROM schedule_slots WHERE status = 'SKIPPED' GROUP BY reason"
        )
        hosts = self.rows("SELECT host, count(*) FROM runs WHERE status = 'SUCCESS' GROUP BY host")
        return {"runs": dict(runs), "skipped": dict(skipped), "hosts": dict(hosts)}


def log_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").replace(" ", "") if path.exists() else ""


def serve_throughput(
    engine: str,
    env: dict[str, str],
    base: Path,
    label: str,
    processes: int,
    db_url: str | None,
    folder: Path,
    config: Path,
    args: argparse.Namespace,
    postmaster: int | None,
) -> dict[str, Any]:
    """Start ``processes`` ``engine serve`` on one database; count what they run in the window."""
    home = base / label
    home.mkdir()
    shared = home / "shared-artifacts"
    clock = f"{CLOCK_START}@{time.time():.3f}x{args.rate:g}"
    db = StateDb(db_url, None if db_url else home / "host-1" / "engine.db")
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    outs = []
    exit_codes: list[int | None] = []
    try:
        started = time.perf_counter()
        for i in range(1, processes + 1):
            host = f"host-{i}"
            penv = {
                **env,
                "ENGINE_STATE_DIR": str(home / host),
                "ENGINE_ARTIFACTS_DIR": str(shared),
                "ENGINE_HOST_ID": host,
                "ENGINE_TEST_CLOCK": clock,
                "ENGINE_CONFIG": str(config),
            }
            if db_url:
                penv["ENGINE_DB_URL"] = db_url
            log = home / f"{host}.stderr.log"
            out = log.open("wb")
            outs.append(out)
            logs.append(log)
            procs.append(subprocess.Popen([engine, "serve", str(folder)], env=penv, cwd=home, stdout=out, stderr=out))
        deadline = time.perf_counter() + 90
        while not all('"event":"schedule.serve"' in log_text(log) for log in logs):
            for proc, log in zip(procs, logs, strict=True):
                if proc.poll() is not None:
                    sys.exit(f"engine serve exited with {proc.returncode} at start; see {log}")
            if time.perf_counter() > deadline:
                sys.exit(f"engine serve not up after 90 s; see {logs}")
            time.sleep(0.05)
        up_s = time.perf_counter() - started
        time.sleep(args.warmup_s)

        def sample() -> dict[str, Any]:
            at = time.perf_counter()
            counts = db.counts()
            return {
                "at": at,
                **counts,
                "serve_cpu_s": sum(proc_cpu_s(p.pid) for p in procs),
                "pg_cpu_s": server_cpu_s(postmaster)[0] if postmaster and db_url else None,
                "busy_s": machine_busy_s(),
                "log_bytes": [log.stat().st_size for log in logs],
            }

        samples = [sample()]
        slices = max(1, round(args.window_s / args.slice_s))
        for k in range(1, slices + 1):
            time.sleep(max(0.0, samples[0]["at"] + k * args.slice_s - time.perf_counter()))
            samples.append(sample())
        loadavg = list(os.getloadavg())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                exit_codes.append(proc.wait(timeout=60))
            except subprocess.TimeoutExpired:
                proc.kill()
                exit_codes.append(None)
        for out in outs:
            out.close()
    try:
        return summarise(samples, db, logs, exit_codes, processes, up_s, loadavg, args)
    finally:
        db.close()


def summarise(
    samples: list[dict[str, Any]],
    db: StateDb,
    logs: list[Path],
    exit_codes: list[int | None],
    processes: int,
    up_s: float,
    loadavg: list[float],
    args: argparse.Namespace,
) -> dict[str, Any]:
    first, last = samples[0], samples[-1]
    elapsed = last["at"] - first["at"]

    def success(s: dict[str, Any]) -> int:
        return int(s["runs"].get("SUCCESS", 0))

    per_slice = [
        (success(b) - success(a)) * 60 / (b["at"] - a["at"]) for a, b in zip(samples, samples[1:], strict=False)
    ]
    ran = success(last) - success(first)
    skipped = Counter(last["skipped"])
    skipped.subtract(Counter(first["skipped"]))
    hosts = Counter(last["hosts"])
    hosts.subtract(Counter(first["hosts"]))
    busy = last["busy_s"] - first["busy_s"]
    serve_cpu = last["serve_cpu_s"] - first["serve_cpu_s"]
    pg_cpu = last["pg_cpu_s"] - first["pg_cpu_s"] if first["pg_cpu_s"] is not None else None
    due = args.policies * elapsed * args.rate / args.interval_s
    events: Counter[str] = Counter()  # what the processes logged in the window
    for log, start, end in zip(logs, first["log_bytes"], last["log_bytes"], strict=True):
        with log.open("rb") as f:
            f.seek(start)
            for line in f.read(end - start).decode("utf-8", errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    name = str(event.get("event"))
                    events[f"{name}: {event['reason']}" if "reason" in event else name] += 1

    # checks over everything the configuration ran, start-up included
    failures = []
    not_success = {k: v for k, v in db.counts()["runs"].items() if k != "SUCCESS"}
    if not_success:
        failures.append(f"runs not SUCCESS: {not_success}")
    twice = db.rows(
        "SELECT policy_id, scheduled_for, count(*) FROM runs WHERE trigger = 'schedule'"
        " GROUP BY policy_id, scheduled_for HAVING count(*) > 1"
    )
    if twice:
        failures.append(f"slots run more than once: {twice[:5]}")
    errors = sum(log_text(log).count('"level":"error"') for log in logs)
    if errors:
        failures.append(f"{errors} error log lines in {[str(p) for p in logs]}")
    if any(code != 0 for code in exit_codes):
        failures.append(f"serve exit codes on SIGTERM: {exit_codes}")
    return {
        "processes": processes,
        "up_s": up_s,
        "window_s": elapsed,
        "runs_per_min_slices": per_slice,
        "runs_per_min_window": ran * 60 / elapsed,
        "runs_in_window": ran,
        "slots_due_in_window": due,
        "skipped_in_window": {k: v for k, v in skipped.items() if v},
        "runs_by_host": dict(sorted((k, v) for k, v in hosts.items() if v)),
        "log_events_in_window": dict(events.most_common()),
        "serve_cpu_s": serve_cpu,
        "postgres_cpu_s": pg_cpu,
        "machine_busy_s": busy,
        "loadavg_end": loadavg,
        "failures": failures,
    }


def combine(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's cycles: the slices' spread, and totals over every window."""
    elapsed = sum(c["window_s"] for c in cycles)
    ran = sum(c["runs_in_window"] for c in cycles)

    def total(key: str) -> Counter[str]:
        counter: Counter[str] = Counter()
        for c in cycles:
            counter.update(c[key])
        return counter

    pg_cpu = None if cycles[0]["postgres_cpu_s"] is None else sum(c["postgres_cpu_s"] for c in cycles)
    serve_cpu = sum(c["serve_cpu_s"] for c in cycles)
    return {
        "processes": cycles[0]["processes"],
        "cycles": len(cycles),
        "window_s": elapsed,
        "runs_per_min": stats([x for c in cycles for x in c["runs_per_min_slices"]]),
        "runs_per_min_by_cycle": [c["runs_per_min_window"] for c in cycles],
        "runs_per_min_all_windows": ran * 60 / elapsed,
        "runs_in_windows": ran,
        "slots_due_in_windows": sum(c["slots_due_in_window"] for c in cycles),
        "skipped_in_windows": dict(total("skipped_in_window").most_common()),
        "runs_by_host": dict(sorted(total("runs_by_host").items())),
        "log_events_in_windows": dict(total("log_events_in_window").most_common()),
        "serve_cpu_cores": serve_cpu / elapsed,
        "serve_cpu_ms_per_run": serve_cpu / ran * 1000 if ran else None,
        "postgres_cpu_cores": pg_cpu / elapsed if pg_cpu is not None else None,
        "postgres_cpu_ms_per_run": pg_cpu / ran * 1000 if pg_cpu is not None and ran else None,
        "machine_busy_cores": sum(c["machine_busy_s"] for c in cycles) / elapsed,
        "up_s": [c["up_s"] for c in cycles],
        "loadavg_end": [c["loadavg_end"][0] for c in cycles],
        "failures": [f for c in cycles for f in c["failures"]],
        "by_cycle": cycles,
    }


# -- report ---------------------------------------------------------------------------------------


def source() -> dict[str, Any]:
    """The commit measured, and the engine files changed in the working tree beside it."""
    root = Path(__file__).resolve().parents[1]

    def git(*a: str) -> str:
        done = subprocess.run(["git", *a], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "engine", "steps").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_engine_files": changed}


def print_report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"machine: {m['nproc']} x {m['cpu']}, Python {m['python']}, {m['platform']}")
    print(f"PostgreSQL {res['postgresql']['version']} ({res['postgresql']['server']})")
    src = res["source"]
    dirty = len(src["uncommitted_engine_files"])
    print(f"source: {src['commit']}" + (f" + {dirty} uncommitted engine/steps files" if dirty else ""))
    print(f"date: {m['date']}   load average before: {' '.join(f'{x:.2f}' for x in m['loadavg_before'])}")
    print(f"       after: {' '.join(f'{x:.2f}' for x in res['loadavg_after'])}")
    if "per_step" in res:
        ps = res["per_step"]
        repeats = ps["sqlite"]["per_step_ms"]["n"]
        print(f"\n1. per step through the CLI, SQLite and PostgreSQL in turns ({repeats} repeats)")
        for name in ("sqlite", "postgresql"):
            print(row(f"{name}: engine run, per step", ps[name]["per_step_ms"], "ms"))
        print(row("ratio PostgreSQL / SQLite (paired)", ps["ratio_postgresql_to_sqlite"], "x"))
        for name in ("sqlite", "postgresql"):
            print(row(f"{name}: engine process CPU, per step", ps[name]["engine_cpu_per_step_ms"], "ms"))
        if "postgres_cpu_per_step_ms" in ps["postgresql"]:
            print(row("postgresql: server CPU, per step", ps["postgresql"]["postgres_cpu_per_step_ms"], "ms"))
        for name in ("sqlite", "postgresql"):
            print(row(f"{name}: 1,000-step run, recorded", ps[name]["run_1000_recorded_s"], "s"))
            print(row(f"{name}: 1-step run, recorded", ps[name]["run_1_recorded_s"], "s"))
            print(row(f"{name}: 1,000-step run, process wall", ps[name]["run_1000_process_wall_s"], "s"))
    if "serve" in res:
        print_serve(res["serve"], res["machine"]["nproc"])


def print_serve(sv: dict[str, Any], cores: int) -> None:
    s = sv["settings"]
    print(
        f"\n2. engine serve: {s['policies']} policies of {s['steps']} core.value steps, every {s['interval_s']} s"
        f" on a clock {s['rate']:g}x real time;\n   runs SUCCESS per real minute in {s['slice_s']:g} s slices,"
        f" {s['cycles']} windows of {s['window_s']:g} s each"
    )
    for label, r in sv["configurations"].items():
        ups = ", ".join(f"{x:.1f}" for x in r["up_s"])
        loads = ", ".join(f"{x:.2f}" for x in r["loadavg_end"])
        print(f"  {label}: up in {ups} s; load average at each window's end {loads}")
        print("  " + row("runs per minute (slices)", r["runs_per_min"], "/min"))
        by_cycle = ", ".join(f"{x:.0f}" for x in r["runs_per_min_by_cycle"])
        print(
            f"    all windows: {r['runs_per_min_all_windows']:.0f} runs/min (each window: {by_cycle});"
            f" {r['runs_in_windows']} runs, {r['slots_due_in_windows']:.0f} slots came due"
        )
        skipped = ", ".join(f"{k or '(none)'} {v}" for k, v in r["skipped_in_windows"].items()) or "none"
        lost = r["log_events_in_windows"].get("schedule.skipped: claimed elsewhere", 0)
        print(f"    slots recorded SKIPPED: {skipped}; claims lost to another process: {lost}")
        print(f"    runs by host: {r['runs_by_host']}")
        pg_part = (
            f", PostgreSQL {r['postgres_cpu_cores']:.2f} cores ({r['postgres_cpu_ms_per_run']:.1f} ms/run)"
            if r["postgres_cpu_cores"] is not None and r["postgres_cpu_ms_per_run"] is not None
            else ""
        )
        per_run = f" ({r['serve_cpu_ms_per_run']:.1f} ms/run)" if r["serve_cpu_ms_per_run"] else ""
        print(
            f"    CPU: serve processes {r['serve_cpu_cores']:.2f} cores{per_run}{pg_part};"
            f" machine busy {r['machine_busy_cores']:.2f} of {cores} cores"
        )
        for failure in r["failures"]:
            print(f"    CHECK FAILED: {failure}")
    one, three = sv["configurations"].get("postgresql x1"), sv["configurations"].get("postgresql x3")
    if one and three:
        ratio = three["runs_per_min"]["median"] / one["runs_per_min"]["median"]
        print(f"  3 processes / 1 process (slice medians): {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pg-url", help="a PostgreSQL server to use (its role may CREATE DATABASE); default: a throwaway one"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of the 1,000-step chain on each database")
    parser.add_argument("--policies", type=int, default=20, help="scheduled policies served")
    parser.add_argument("--steps", type=int, default=3, help="core.value steps in each scheduled policy")
    parser.add_argument("--interval-s", type=int, default=1, help="interval_seconds of each policy (faked clock)")
    parser.add_argument("--rate", type=float, default=10.0, help="faked seconds per real second")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="after every process is up, before counting")
    parser.add_argument("--window-s", type=float, default=30.0, help="the counted window, real seconds")
    parser.add_argument("--slice-s", type=float, default=5.0, help="the window's slices (the per-minute spread)")
    parser.add_argument("--cycles", type=int, default=2, help="windows of each serve configuration, in turns")
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 3], help="serve processes on PostgreSQL")
    parser.add_argument(
        "--sqlite-serve", action=argparse.BooleanOptionalAction, default=True, help="1 process on SQLite, for reference"
    )
    parser.add_argument("--engine", default=str(Path(sys.executable).parent / "engine"), help="the engine command")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="measure only this part (repeatable; default: both)"
    )
    args = parser.parse_args()
    parts = args.only or PARTS

    results: dict[str, Any] = {
        "machine": machine(),
        "source": source(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    postgres = Postgres(args.pg_url)
    failed = False
    try:
        results["postgresql"] = {
            "version": postgres.version,
            "server": "throwaway, fsync=off synchronous_commit=off full_page_writes=off"
            if postgres.throwaway
            else "--pg-url",
        }
        with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
            base = Path(tmp)
            env = user_env(base / "pycache")
            log = base / "stderr.log"
            if "per-step" in parts:
                chain, one = base / "chain_1000.json", base / "one_step.json"
                chain.write_text(json.dumps(chain_policy(1000)))
                one.write_text(json.dumps(chain_policy(1)))
                clis = {
                    "sqlite": Cli(args.engine, env, base / "state-sqlite", log),
                    "postgresql": Cli(
                        args.engine, {**env, "ENGINE_DB_URL": postgres.new_database()}, base / "state-pg", log
                    ),
                }
                postmaster = postgres.postmaster_pid()
                pg_cpu = (lambda: settled_server_cpu_s(postmaster)) if postmaster else None
                results["per_step"] = per_step(clis, chain, one, args.repeats, pg_cpu)
            if "serve" in parts:
                folder, config = base / "policies", base / "engine.toml"
                folder.mkdir()
                for i in range(args.policies):
                    doc = interval_policy(f"bench-serve-{i:02d}", args.interval_s, args.steps)
                    (folder / f"{doc['id']}.json").write_text(json.dumps(doc))
                config.write_text(NO_QUOTAS)
                labels: list[tuple[str, int, bool]] = [(f"postgresql x{n}", n, True) for n in args.hosts]
                if args.sqlite_serve:
                    labels.append(("sqlite x1", 1, False))
                cycles: dict[str, list[dict[str, Any]]] = {label: [] for label, _n, _pg in labels}
                for cycle in range(args.cycles):  # in turns, the order reversed every other cycle
                    for label, n, on_pg in labels if cycle % 2 == 0 else labels[::-1]:
                        url = postgres.new_database() if on_pg else None
                        directory = f"{label.replace(' ', '-')}-{cycle + 1}"
                        cycles[label].append(
                            serve_throughput(
                                args.engine,
                                env,
                                base,
                                directory,
                                n,
                                url,
                                folder,
                                config,
                                args,
                                postgres.postmaster_pid(),
                            )
                        )
                configurations = {label: combine(found) for label, found in cycles.items()}
                failed = any(c["failures"] for c in configurations.values())
                results["serve"] = {
                    "settings": {
                        "policies": args.policies,
                        "steps": args.steps,
                        "interval_s": args.interval_s,
                        "rate": args.rate,
                        "warmup_s": args.warmup_s,
                        "window_s": args.window_s,
                        "slice_s": args.slice_s,
                        "cycles": args.cycles,
                    },
                    "configurations": configurations,
                }
    finally:
        postgres.close()
    results["loadavg_after"] = list(os.getloadavg())
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(results)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
