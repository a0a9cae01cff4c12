"""Render benchmark: a report with 3 metric cards, 4 charts and a 500-row table to HTML and PDF.

Run with ``.venv/bin/python bench/bench_render.py --repeat 5``. Each repeat is a fresh Python
process with a fresh state directory, so "cold" is a real first render: imports, Kaleido's browser
start, four charts, the HTML page and the WeasyPrint layout. The same process then runs the same
policy again: "warm" is that second run, where both render steps are cache hits. Times are
``time.perf_counter``; peak memory is ``resource.getrusage`` (max RSS of this process, and of the
browser processes it started and waited for). Targets: cold under 10 s, warm under 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"cold_s": 10.0, "warm_s": 0.2}


def make_rows(n: int = 500) -> list[dict[str, Any]]:
    import random

    rng = random.Random(7)
    regions = ["EMEA", "Americas", "APAC", "LATAM"]
    return [
        {
            "order_id": i,
            "day": f"2026-11-{1 + i % 30:02d}",
            "region": regions[i % 4],
            "amount": round(rng.uniform(20, 2000), 2),
            "qty": rng.randint(1, 9),
        }
        for i in range(1, n + 1)
    ]


def make_policy() -> dict[str, Any]:
    rows = make_rows()
    frame = {"ref": "ctx.orders.data"}
    return {
        "schema_version": 1,
        "id": "bench-render",
        "steps": [
            {"id": "src", "type": "core.value", "params": {"value": rows}},
            {"id": "orders", "type": "transform.frame", "params": {"input": {"ref": "ctx.src"}}},
            {
                "id": "daily",
                "type": "transform.frame",
                "params": {
                    "input": frame,
                    "ops": [
                        {
                            "op": "group_by",
                            "keys": ["day", "region"],
                            "aggregate": {"amount": {"column": "amount", "fn": "sum"}},
                        },
                        {"op": "sort", "by": ["day"]},
                    ],
                },
            },
            {
                "id": "regions",
                "type": "transform.frame",
                "params": {
                    "input": frame,
                    "ops": [
                        {
                            "op": "group_by",
                            "keys": ["region"],
                            "aggregate": {"amount": {"column": "amount", "fn": "sum"}},
                        }
                    ],
                },
            },
            {
                "id": "build",
                "type": "report.build",
                "params": {
                    "report_id": "bench",
                    "title": "Benchmark report",
                    "subtitle": "3 cards, 4 charts, 500 rows",
                    "sections": [
                        {
                            "type": "metric_card",
                            "label": "Revenue",
                            "format": "currency",
                            "value": {"data": frame, "column": "amount", "agg": "sum"},
                            "compare_to": 500000,
                        },
                        {
                            "type": "metric_card",
                            "label": "Orders",
                            "value": {"data": frame, "column": "order_id", "agg": "count"},
                            "compare_to": 480,
                        },
                        {
                            "type": "metric_card",
                            "label": "Average order",
                            "format": "currency",
                            "value": {"data": frame, "column": "amount", "agg": "mean"},
                        },
                        {
                            "type": "chart",
                            "kind": "line",
                            "title": "Daily revenue",
                            "data": {"ref": "ctx.daily.data"},
                            "x": "day",
                            "y": "amount",
                            "series": "region",
                        },
                        {
                            "type": "chart",
                            "kind": "stacked_bar",
                            "title": "By region and day",
                            "data": {"ref": "ctx.daily.data"},
                            "x": "day",
                            "y": "amount",
                            "series": "region",
                        },
                        {
                            "type": "chart",
                            "kind": "pie",
                            "title": "Region mix",
                            "data": {"ref": "ctx.regions.data"},
                            "x": "region",
                            "y": "amount",
                        },
                        {
                            "type": "chart",
                            "kind": "scatter",
                            "title": "Amount against quantity",
                            "data": frame,
                            "x": "qty",
                            "y": "amount",
                            "series": "region",
                        },
                        {
                            "type": "data_table",
                            "title": "All orders",
                            "data": frame,
                            "columns": [
                                {"name": "order_id", "label": "Order", "format": "text"},
                                {"name": "day", "label": "Day", "format": "date"},
                                "region",
                                {"name": "qty", "label": "Qty"},
                                {"name": "amount", "label": "Amount", "format": "currency"},
                            ],
                        },
                    ],
                },
            },
            {"id": "html", "type": "render.html", "params": {"report": {"ref": "ctx.build"}}},
            {"id": "pdf", "type": "render.pdf", "params": {"report": {"ref": "ctx.build"}}},
        ],
    }


def child(state_dir: Path) -> dict[str, Any]:
    """One cold and one warm run in this (fresh) process."""
    import asyncio
    import resource

    started = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    from engine.api import run_policy
    from engine.plugins import load_plugins
    from engine.store import Store
    from engine.validate import validate_document

    load_plugins()
    import kaleido  # noqa: F401
    import plotly  # noqa: F401
    import weasyprint  # noqa: F401

    imported = time.perf_counter()
    policy = validate_document(make_policy())
    store = Store(state_dir)
    figures: dict[str, Any] = {"imports_s": imported - started}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        result = asyncio.run(run_policy(policy, store=store))
        wall = time.perf_counter() - t0
        assert result.status == "SUCCESS", [s.error for s in result.steps]
        steps = {s.id: s.duration_s for s in result.steps}
        outputs = {r["step_id"]: json.loads(r["output_json"]) for r in store.get_steps(result.run_id)}
        statuses = [outputs["html"]["cache_status"], outputs["pdf"]["cache_status"]]
        assert statuses == (["miss", "miss"] if label == "cold" else ["hit", "hit"]), statuses
        figures[f"{label}_run_s"] = wall
        figures[f"{label}_build_s"] = steps["build"]
        figures[f"{label}_html_s"] = steps["html"]
        figures[f"{label}_pdf_s"] = steps["pdf"]
        if label == "cold":
            figures["pages"] = outputs["pdf"]["pages"]
    store.close()
    figures["cold_s"] = figures["imports_s"] + figures["cold_run_s"]
    # the two render steps run side by side: the render time is the slower of them
    figures["warm_s"] = max(figures["warm_html_s"], figures["warm_pdf_s"])
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["browser_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes to run (default 5)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    runs = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(Path(tmp) / "state")],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                sys.exit(out.stderr)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(
                f"run {i + 1}: cold {runs[-1]['cold_s']:.2f} s, warm {runs[-1]['warm_s'] * 1000:.0f} ms",
                file=sys.stderr,
            )
    keys = [k for k in runs[0] if k != "pages"]
    summary = {
        k: {
            "median": statistics.median(r[k] for r in runs),
            "min": min(r[k] for r in runs),
            "max": max(r[k] for r in runs),
        }
        for k in keys
    }
    print(f"{'figure':<22} {'median':>9} {'min':>9} {'max':>9}  target")
    for k in keys:
        s = summary[k]
        target = f"< {TARGETS[k]}" if k in TARGETS else ""
        print(f"{k:<22} {s['median']:>9.3f} {s['min']:>9.3f} {s['max']:>9.3f}  {target}")
    print(f"pages: {runs[0]['pages']}, runs: {len(runs)}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
