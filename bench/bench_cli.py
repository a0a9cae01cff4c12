"""The command-line path (not timed tests): run with ``.venv/bin/python bench/bench_cli.py``.

Everything here runs ``engine`` as a whole subprocess, as a user does: logs on (``logs/engine.log``
in the state directory, and info lines on stderr, which goes to a file because it is not a
terminal), ``ENGINE_STATE_DIR`` set to a temporary directory, no other ``ENGINE_*`` or ``PYTHON*``
variables, and byte-code cached as after an install (``PYTHONPYCACHEPREFIX``: see ``user_env``).

1. per step:  ``engine run --json`` of a generated 1,000-step ``core.value`` chain (each step refs
              the one before). The run's own recorded duration (``finished_at - started_at`` in the
              ``--json`` output: recording the run, every step's state transitions, finishing the
              run; not the start-up, not validation) minus the median of a 1-step run's (one after
              each long run), divided by 999 (target: under 0.25 ms). Beside it, the floor measured in this
              process: bare asyncio scheduling of 1,000 chained tasks plus the SQLite writes a step
              really makes (``engine/store.py`` ``set_step_state``: RUNNING in one commit, then the
              final state and its attempt row in a second), and the ratio CLI / floor.
2. start-up:  whole-process wall time of ``engine --help``, ``engine validate ONE_STEP.json`` and
              ``engine run ONE_STEP.json`` (targets 0.3 s, 0.35 s, 0.5 s), after one warm-up each.
3. imports:   ``python -X importtime -c "import engine.cli"``: the total, the top-level imports
              by cumulative time, and the packages where the time goes (self time summed over
              each top-level package name, wherever it was imported from).

Medians, min and max; ``--json`` prints the figures as one JSON object instead of the tables;
``--only per-step`` (or ``startup``, ``imports``; repeatable) measures just that part.
Only the standard library is used; ``time.perf_counter`` is the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS = {"per_step_ms": 0.25, "help_s": 0.3, "validate_s": 0.35, "run_s": 0.5}
PARTS = ("per-step", "startup", "imports")


def chain_policy(n: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "core.value", "params": {"value": 0}}]
    for i in range(1, n):
        steps.append({"id": f"s{i}", "type": "core.value", "params": {"value": {"ref": f"ctx.s{i - 1}"}}})
    return {"schema_version": 1, "id": f"bench-cli-chain-{n}", "steps": steps}


def stats(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# -- the engine as a subprocess -----------------------------------------------------------------


def user_env(pycache: Path) -> dict[str, str]:
    """The environment of a user's shell: no ``ENGINE_*`` and no ``PYTHON*`` settings, and byte-code
    cached as after ``pip install`` (in a folder of the benchmark's own, so the tree is not written
    to, and so ``PYTHONDONTWRITEBYTECODE`` in a CI shell does not make every start compile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "PYTHON"))}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


class Cli:
    """Runs ``engine`` with a clean environment and a state directory of its own."""

    def __init__(self, engine: str, env: dict[str, str], state_dir: Path, log_file: Path) -> None:
        self.engine = engine
        self.log_file = log_file
        self.env = {**env, "ENGINE_STATE_DIR": str(state_dir)}

    def __call__(self, *args: str) -> tuple[float, str]:
        """Run one command; return its wall time in seconds and its stdout."""
        with self.log_file.open("ab") as err:
            start = time.perf_counter()
            proc = subprocess.run([self.engine, *args], env=self.env, stdout=subprocess.PIPE, stderr=err)
            elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"engine {' '.join(args)} exited with {proc.returncode}; see {self.log_file}")
        return elapsed, proc.stdout.decode()


def recorded_duration_s(cli: Cli, policy: Path) -> tuple[float, float]:
    """``engine run --json``: the run's recorded duration and the process's wall time."""
    wall, out = cli("run", "--json", str(policy))
    run = json.loads(out)
    if run["status"] != "SUCCESS":
        sys.exit(f"{policy.name}: the run ended {run['status']}: {run['error']}")
    started = dt.datetime.fromisoformat(run["started_at"])
    finished = dt.datetime.fromisoformat(run["finished_at"])
    return (finished - started).total_seconds(), wall


def per_step(cli: Cli, chain: Path, one: Path, floor_dir: Path, repeats: int) -> dict[str, Any]:
    """The CLI's cost per step and the floor, taken in turns so that both see the same moments."""
    floor_ms, chain_s, one_s, chain_wall = [], [], [], []
    recorded_duration_s(cli, one)  # warm-up: creates the database, fills the file and byte-code caches
    for _ in range(repeats):
        long, wall = recorded_duration_s(cli, chain)
        one_s.append(recorded_duration_s(cli, one)[0])
        floor_ms.append(floor_ms_per_step(floor_dir))
        chain_s.append(long)
        chain_wall.append(wall)
    # the 1-step run's median, not its own pair: one slow 1-step run would skew a whole repeat
    one_step = statistics.median(one_s)
    per_step_ms = [(long - one_step) / 999 * 1000 for long in chain_s]
    return {
        "per_step_ms": stats(per_step_ms),
        "floor_ms_per_step": stats(floor_ms),
        "ratio_cli_to_floor": stats([c / f for c, f in zip(per_step_ms, floor_ms, strict=True)]),
        "run_1000_recorded_s": stats(chain_s),
        "run_1_recorded_s": stats(one_s),
        "run_1000_process_wall_s": stats(chain_wall),
    }


def startup(cli: Cli, one: Path, repeats: int) -> dict[str, Any]:
    commands = {"help_s": ("--help",), "validate_s": ("validate", str(one)), "run_s": ("run", str(one))}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for args in commands.values():
        cli(*args)  # warm-up
    for _ in range(repeats):  # interleaved, so a busy moment does not land on one command only
        for name, args in commands.items():
            times[name].append(cli(*args)[0])
    return {name: stats(values) for name, values in times.items()}


# -- the floor: asyncio and SQLite alone ----------------------------------------------------------


async def _floor_chain(conn: sqlite3.Connection, n: int) -> None:
    async def step(i: int, value: int) -> int:
        conn.execute("UPDATE steps SET status = 'RUNNING', started_at = ? WHERE id = ?", (time.time(), i))
        conn.commit()
        result = value + 1  # the step's work: nothing, like core.value
        conn.execute("INSERT INTO attempts (step_id, status, finished_at) VALUES (?, 'SUCCESS', ?)", (i, time.time()))
        conn.execute("UPDATE steps SET status = 'SUCCESS', finished_at = ? WHERE id = ?", (time.time(), i))
        conn.commit()
        return result

    value = 0
    for i in range(n):  # each task starts when the one before is done, as in a chain
        value = await asyncio.create_task(step(i, value))


def floor_ms_per_step(directory: Path, n: int = 1000) -> float:
    """One asyncio task per step and the step's two commits, on the engine's pragmas; nothing else."""
    path = directory / f"floor-{time.monotonic_ns()}.db"
    conn = sqlite3.connect(path)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=10000"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE steps (id INTEGER PRIMARY KEY, status TEXT, started_at REAL, finished_at REAL)")
    conn.execute("CREATE TABLE attempts (id INTEGER PRIMARY KEY, step_id INTEGER, status TEXT, finished_at REAL)")
    conn.executemany("INSERT INTO steps (id, status) VALUES (?, 'PENDING')", [(i,) for i in range(n)])
    conn.commit()
    start = time.perf_counter()
    asyncio.run(_floor_chain(conn, n))
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / n * 1000


# -- import time ----------------------------------------------------------------------------------


def parse_importtime(text: str) -> list[tuple[int, int, int, str]]:
    """``-X importtime`` lines as (depth, self us, cumulative us, module); depth 0 is top level."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:") :].split("|", 2)
        name = name[1:]  # one space after the bar, then two per level of nesting
        rows.append(((len(name) - len(name.lstrip(" "))) // 2, int(self_us), int(cumulative), name.strip()))
    return rows


def import_profile(python: str, env: dict[str, str], runs: int, top: int) -> dict[str, Any]:
    totals: list[float] = []
    top_level: dict[str, list[float]] = {}
    packages: dict[str, list[float]] = {}
    for run in range(runs + 1):
        proc = subprocess.run(
            [python, "-X", "importtime", "-c", "import engine.cli"], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            sys.exit(f"import engine.cli failed:\n{proc.stderr[-2000:]}")
        if run == 0:
            continue  # a warm-up: the byte-code and file caches
        rows = parse_importtime(proc.stderr)
        totals.append(sum(cum for depth, _s, cum, _n in rows if depth == 0) / 1e6)
        for depth, _s, cum, name in rows:
            if depth == 0:
                top_level.setdefault(name, []).append(cum / 1e6)
        by_package: dict[str, int] = {}
        for _d, self_us, _c, name in rows:
            root = name.split(".")[0]
            by_package[root] = by_package.get(root, 0) + self_us
        for root, self_us in by_package.items():
            packages.setdefault(root, []).append(self_us / 1e6)

    def ranked(table: dict[str, list[float]]) -> list[dict[str, Any]]:
        medians = [{"name": k, "s": statistics.median(v)} for k, v in table.items()]
        return sorted(medians, key=lambda r: -r["s"])[:top]

    return {
        "runs": len(totals),
        "total_s": stats(totals),
        "top_level_cumulative": ranked(top_level),
        "packages_self": ranked(packages),
    }


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


def row(name: str, r: dict[str, Any], unit: str, scale: float = 1.0, target: float | None = None) -> str:
    text = (
        f"  {name:<36} median {r['median'] * scale:7.3f} {unit:<2}  "
        f"min {r['min'] * scale:7.3f}  max {r['max'] * scale:7.3f}"
    )
    if target is not None:
        verdict = "met" if r["median"] * scale <= target else "OVER TARGET"
        text += f"   (target <= {target:g} {unit}: {verdict})"
    return text


def print_report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"machine: {m['nproc']} x {m['cpu']}, Python {m['python']}, {m['platform']}")
    print(f"date: {m['date']}   load average before: {' '.join(f'{x:.2f}' for x in m['loadavg_before'])}")
    print(f"       after: {' '.join(f'{x:.2f}' for x in res['loadavg_after'])}")
    if "per_step" in res:
        print_per_step(res["per_step"])
    if "startup" in res:
        print_startup(res["startup"])
    if "imports" in res:
        print_imports(res["imports"])


def print_per_step(ps: dict[str, Any]) -> None:
    print(f"\n1. per step through the CLI ({ps['per_step_ms']['n']} repeats)")
    ratio = ps["per_step_ms"]["median"] / ps["floor_ms_per_step"]["median"]
    print(
        row("engine run, per step", ps["per_step_ms"], "ms", target=TARGETS["per_step_ms"])
        + f"   {ratio:.1f}x the floor (medians)"
    )
    print(row("floor (asyncio + 2 commits a step)", ps["floor_ms_per_step"], "ms"))
    print(row("ratio CLI / floor (paired)", ps["ratio_cli_to_floor"], "x"))
    print(row("1,000-step run, recorded", ps["run_1000_recorded_s"], "s"))
    print(row("1-step run, recorded", ps["run_1_recorded_s"], "s"))
    print(row("1,000-step run, process wall", ps["run_1000_process_wall_s"], "s"))


def print_startup(st: dict[str, Any]) -> None:
    print(f"\n2. start-up, whole process wall time ({st['help_s']['n']} repeats)")
    print(row("engine --help", st["help_s"], "s", target=TARGETS["help_s"]))
    print(row("engine validate ONE_STEP.json", st["validate_s"], "s", target=TARGETS["validate_s"]))
    print(row("engine run ONE_STEP.json", st["run_s"], "s", target=TARGETS["run_s"]))


def print_imports(imp: dict[str, Any]) -> None:
    print(f"\n3. python -X importtime -c 'import engine.cli' ({imp['runs']} runs, medians)")
    print(row("total (top-level cumulative)", imp["total_s"], "s"))
    print("  top-level imports, cumulative:")
    for r in imp["top_level_cumulative"]:
        print(f"    {r['name']:<40} {r['s']:.3f} s")
    print("  packages, self time summed wherever imported (what the total is made of):")
    for r in imp["packages_self"]:
        print(f"    {r['name']:<40} {r['s']:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of the 1,000-step chain and of the floor")
    parser.add_argument("--startup-repeats", type=int, default=10)
    parser.add_argument("--importtime-runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=10, help="packages listed in the import profile")
    parser.add_argument("--engine", default=str(Path(sys.executable).parent / "engine"), help="the engine command")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="measure only this part (repeatable; default: all three)"
    )
    args = parser.parse_args()
    parts = args.only or PARTS

    results: dict[str, Any] = {"machine": machine(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        base = Path(tmp)
        chain, one = base / "chain_1000.json", base / "one_step.json"
        chain.write_text(json.dumps(chain_policy(1000)))
        one.write_text(json.dumps(chain_policy(1)))
        env = user_env(base / "pycache")
        if "per-step" in parts:
            cli = Cli(args.engine, env, base / "state", base / "stderr.log")
            results["per_step"] = per_step(cli, chain, one, base, args.repeats)
        if "startup" in parts:
            startup_cli = Cli(args.engine, env, base / "state-startup", base / "stderr.log")
            results["startup"] = startup(startup_cli, one, args.startup_repeats)
        if "imports" in parts:
            results["imports"] = import_profile(sys.executable, env, args.importtime_runs, args.top)
        if (base / "stderr.log").exists():
            results["stderr_bytes"] = (base / "stderr.log").stat().st_size
    results["loadavg_after"] = list(os.getloadavg())
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(results)


if __name__ == "__main__":
    main()
