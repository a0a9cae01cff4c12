"""Fetch benchmark: fetch.http throughput against a local HTTP server, without and with the cache.

Run with ``.venv/bin/python bench/bench_fetch.py``. A ThreadingHTTPServer on 127.0.0.1 serves
JSON pages of 50 records with a ``Link: rel=next`` header. Each case runs a real policy through
``engine.api.run_policy`` (state in a temporary folder): ``STEPS`` concurrent fetch.http steps,
each following ``PAGES`` pages, with a rate limit far above what is reached (so the engine, not the
bucket, is measured). Cases:

- ``no cache``: every page is a request;
- ``cache miss``: every page is a request and is stored (``cache_ttl_s`` set, empty cache);
- ``cache hit``: the same policy again: no request at all;
- ``revalidated``: ``cache_ttl_s: 0`` with ETags: every page is a request answered 304.

Prints the median wall time per case and pages per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.api import run_policy  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.plugins import load_plugins  # noqa: E402
from engine.store import Store  # noqa: E402

RECORDS = [{"id": i, "name": f"item-{i}", "amount": round(i * 1.37, 2)} for i in range(50)]


class Pages(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = 0
    disable_nagle_algorithm = True  # headers and body go out at once: no delayed-ACK stalls

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        Pages.requests += 1
        query = parse_qs(urlsplit(self.path).query)
        page, total = int(query["page"][0]), int(query["total"][0])
        etag = f'"p{page}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"items": RECORDS, "page": page}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        if page < total:
            self.send_header("Link", f'</pages?page={page + 1}&total={total}&s={query["s"][0]}>; rel="next"')
        self.end_headers()
        self.wfile.write(body)


def policy(url: str, steps: int, pages: int, cache_ttl_s: float | None) -> dict[str, Any]:
    extra = {} if cache_ttl_s is None else {"cache_ttl_s": cache_ttl_s}
    return {
        "schema_version": 1,
        "id": "bench-fetch",
        "allowed_hosts": ["127.0.0.1"],
        "rate_limits": {"127.0.0.1": {"max_rate": 100_000, "time_period_s": 1, "max_concurrency": 8}},
        "max_concurrency": steps,
        "steps": [
            {
                "id": f"f{i}",
                "type": "fetch.http",
                "params": {
                    "url": f"{url}/pages?page=1&total={pages}&s={i}",
                    "paginate": {"next_link": "header", "max_pages": pages},
                    "records_path": "items",
                    **extra,
                },
            }
            for i in range(steps)
        ],
    }


def timed_run(store: Store, doc: dict[str, Any], folder: Path) -> float:
    path = folder / "bench.json"
    path.write_text(json.dumps(doc))
    started = time.perf_counter()
    result = asyncio.run(run_policy(path, store=store, config=EngineConfig({}, environ={})))
    elapsed = time.perf_counter() - started
    if result.status != "SUCCESS":
        raise SystemExit(f"run failed: {[s.error for s in result.steps if s.error]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load_plugins()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    total = args.steps * args.pages
    cases: dict[str, list[float]] = {"no cache": [], "cache miss": [], "cache hit": [], "revalidated": []}
    requests: dict[str, int] = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            store = Store(folder / "state")
            for name, ttl in (("no cache", None), ("cache miss", 3600.0), ("cache hit", 3600.0)):
                before = Pages.requests
                cases[name].append(timed_run(store, policy(url, args.steps, args.pages, ttl), folder))
                requests[name] = Pages.requests - before
            before = Pages.requests
            cases["revalidated"].append(timed_run(store, policy(url, args.steps, args.pages, 0), folder))
            requests["revalidated"] = Pages.requests - before
            store.close()
    httpd.shutdown()
    print(f"{args.steps} steps x {args.pages} pages = {total} pages per run, {args.repeat} runs, medians")
    for name, times in cases.items():
        median = statistics.median(times)
        print(
            f"{name:12} {median:7.3f} s  {total / median:8.0f} pages/s  "
            f"({requests[name]} requests; min {min(times):.3f} s, max {max(times):.3f} s)"
        )


if __name__ == "__main__":
    main()
