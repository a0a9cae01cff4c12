"""Transform benchmark: a 1,000,000-row frame through filter + derive + group_by.

Run with ``.venv/bin/python bench/bench_transform.py``. Prints the time of the ops and the peak
memory they allocated (Python's tracemalloc, which numpy and pandas report to), against the
frame's own in-memory size. Target: peak under 4x the frame's size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.artifacts import ArtifactStore  # noqa: E402
from engine.step import StepContext  # noqa: E402
from steps.transform.frame import TransformFrame  # noqa: E402

OPS = [
    {
        "op": "filter",
        "condition": {
            "all": [
                {"field": "qty", "op": "ge", "value": 2},
                {"field": "region", "op": "in", "value": ["emea", "apac"]},
            ]
        },
    },
    {"op": "derive", "column": "total", "expression": "round(amount * qty, 2)"},
    {
        "op": "group_by",
        "keys": ["region"],
        "aggregate": {"revenue": {"column": "total", "fn": "sum"}, "orders": {"column": "id", "fn": "count"}},
    },
]


def make_frame(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "region": pd.Categorical(rng.choice(["emea", "apac", "amer"], rows)).astype(str),
            "amount": rng.uniform(1, 1000, rows).round(2),
            "qty": rng.integers(1, 6, rows),
        }
    )


def run_once(frame: Any) -> tuple[float, int]:
    step = TransformFrame()
    params = TransformFrame.Params(input=frame, ops=OPS)
    ctx = StepContext(
        run_id="bench",
        step_id="t",
        attempt=1,
        run={},
        params={},
        dry_run=False,
        log=None,
        artifacts=ArtifactStore(Path("/tmp/bench-artifacts")),
    )
    tracemalloc.start()
    start = time.perf_counter()
    out = step.run(params, ctx)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.row_count == 2
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    frame = make_frame(args.rows)
    size = int(frame.memory_usage(deep=True).sum())
    results = [run_once(frame) for _ in range(args.repeat)]
    times = [t for t, _ in results]
    peaks = [p for _, p in results]
    print(f"frame: {args.rows:,} rows, {size / 2**20:.1f} MiB in memory")
    print(f"time   median {statistics.median(times):.3f} s  min {min(times):.3f}  max {max(times):.3f}")
    ratio = statistics.median(peaks) / size
    verdict = "ok" if ratio < 4 else "OVER TARGET"
    print(f"peak   median {statistics.median(peaks) / 2**20:.1f} MiB = {ratio:.2f}x the frame (target < 4x) {verdict}")


if __name__ == "__main__":
    main()
