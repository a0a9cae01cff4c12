"""Core engine benchmarks (not timed tests): run with ``.venv/bin/python bench/bench_core.py``.

1. chain:      a 1,000-step ``core.value`` chain with SQLite state; engine overhead per step
               (target: under 0.5 ms).
2. validate:   validation of a generated 10,000-step policy (target: under 1 s).
3. fan-out:    50 independent steps each awaiting 0.5 s with max_concurrency 50; wall time
               against the ideal 0.5 s (target: within 1.2x).

Each is repeated ``--repeat`` times in this process; the median, min and max are printed
(and written as JSON with ``--json FILE``). Python's own ``time.perf_counter`` is the clock.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.api import run_policy  # noqa: E402
from engine.plugins import load_plugins  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.validate import validate_document  # noqa: E402


def chain_policy(n: int) -> dict[str, Any]:
    steps = [{"id": "s0", "type": "core.value", "params": {"value": 0}}]
    for i in range(1, n):
        steps.append({"id": f"s{i}", "type": "core.value", "params": {"value": {"ref": f"ctx.s{i - 1}"}}})
    return {"schema_version": 1, "id": "bench-chain", "steps": steps}


def wide_policy(n: int) -> dict[str, Any]:
    """A realistic 10,000-step policy: layers of 100 steps, refs and templates across layers."""
    steps = []
    for i in range(n):
        step: dict[str, Any] = {"id": f"s{i}", "type": "core.value", "params": {"value": i}}
        if i >= 100:
            step["params"] = {"value": {"prev": {"ref": f"ctx.s{i - 100}"}, "n": i}}
            step["depends_on"] = [f"s{i - 99}"] if i % 100 != 99 else []
        if i % 10 == 0:
            step["skip_if"] = {"ref": "ctx.params.skip", "op": "eq", "value": True}
        steps.append(step)
    return {
        "schema_version": 1,
        "id": "bench-wide",
        "params": {"skip": {"type": "boolean", "default": False}},
        "steps": steps,
    }


def fanout_policy(n: int, seconds: float) -> dict[str, Any]:
    steps = [{"id": f"s{i}", "type": "core.value", "params": {"value": i, "delay_s": seconds}} for i in range(n)]
    return {"schema_version": 1, "id": "bench-fanout", "max_concurrency": n, "steps": steps}


def run_once(doc: dict[str, Any]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "state")
        valid = validate_document(doc)
        start = time.perf_counter()
        result = asyncio.run(run_policy(valid, store=store))
        elapsed = time.perf_counter() - start
        store.close()
        return elapsed, result.status


def measure(repeat: int, fn: Callable[[], float]) -> dict[str, float]:
    values = [fn() for _ in range(repeat)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    load_plugins()

    chain = chain_policy(1000)

    def chain_ms_per_step() -> float:
        elapsed, status = run_once(chain)
        assert status == "SUCCESS", status
        return elapsed / 1000 * 1000

    wide = wide_policy(10_000)
    wide_text = json.dumps(wide)

    def validate_s() -> float:
        start = time.perf_counter()
        validate_document(json.loads(wide_text))
        return time.perf_counter() - start

    fanout = fanout_policy(50, 0.5)

    def fanout_ratio() -> float:
        elapsed, status = run_once(fanout)
        assert status == "SUCCESS", status
        return elapsed / 0.5

    results = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "chain_1000_ms_per_step": measure(args.repeat, chain_ms_per_step),
        "validate_10000_s": measure(args.repeat, validate_s),
        "fanout_50x0.5s_ratio": measure(args.repeat, fanout_ratio),
    }
    targets = {"chain_1000_ms_per_step": 0.5, "validate_10000_s": 1.0, "fanout_50x0.5s_ratio": 1.2}
    print(f"machine: {results['machine']}")
    for name, target in targets.items():
        r = results[name]
        verdict = "ok" if r["median"] <= target else "OVER TARGET"
        print(
            f"{name:<26} median {r['median']:.4f}  min {r['min']:.4f}  max {r['max']:.4f}  "
            f"(target <= {target}) {verdict}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
