"""A real HTTP server on 127.0.0.1 for the fetch tests: a stdlib ThreadingHTTPServer in a thread.

Routes (each request is recorded with its arrival time and headers):

- ``/json``, ``/csv``, ``/text``, ``/bytes``: fixed bodies of each kind
- ``/etag``: ``ETag: "v1"``, and 304 for ``If-None-Match: "v1"``
- ``/modified``: ``Last-Modified``, and 304 for an ``If-Modified-Since`` not older
- ``/status/N``: status N with a short body
- ``/flaky/NAME?fail=K&status=S``: status S for the first K requests of NAME, then JSON
- ``/limited/NAME?fail=K&after=SEC``: 429 with ``Retry-After: SEC`` K times, then JSON
- ``/slow?s=SEC``: answers after SEC seconds
- ``/trickle?n=N&every=SEC``: a text body of N bytes, sent one byte every SEC seconds
- ``/pages?page=P&total=T``: a page of records with a ``Link: <...>; rel="next"`` header
- ``/arraypages?page=P&total=T``: the same, with each body a bare JSON array
- ``/jsonpages?page=P&total=T``: records with ``{"next": URL}`` in the body
- ``/cursor?cursor=C``: records with ``{"meta": {"next": C+1}}`` (none after the last)
- ``/records?since=N``: the records whose ``id`` is above N (incremental loading)
- ``/redirect?to=URL``: a 302 to URL
- ``/echo``: the request's method, query, headers and body as JSON
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

RECORDS = [{"id": i, "name": f"item-{i}", "amount": i * 1.5} for i in range(1, 13)]
MODIFIED = 1_700_000_000.0  # Last-Modified of /modified


@dataclass
class Seen:
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class HttpServer:
    host: str
    port: int
    seen: list[Seen] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def requests(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == path or s.path.startswith(path.rstrip("/") + "/")]

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.counters.clear()


def _handler(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once: no delayed-ACK stalls

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with server.lock:
                server.seen.append(Seen(time.monotonic(), self.command, parts.path, query, dict(self.headers)))
            route = parts.path.strip("/").split("/")
            handler = getattr(self, f"route_{route[0]}", None)
            if handler is None:
                self.reply(404, b"no such route", "text/plain")
                return
            handler(route[1:], query, body)

        def reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def json(self, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
            self.reply(status, json.dumps(value).encode(), "application/json", headers)

        def count(self, name: str) -> int:
            with server.lock:
                server.counters[name] += 1
                return server.counters[name]

        # -- routes ------------------------------------------------------------------------

        def route_json(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            self.json({"hello": "world", "items": RECORDS[:3]})

        def route_csv(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            self.reply(200, b"region,amount\nemea,10.5\napac,20\n", "text/csv; charset=utf-8")

        def route_text(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            self.reply(200, "plain text, caf\u00e9".encode(), "text/plain; charset=utf-8")

        def route_bytes(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            self.reply(200, bytes(range(256)), "application/octet-stream")

        def route_etag(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            if self.headers.get("If-None-Match") == '"v1"':
                self.reply(304, b"", "application/json", {"ETag": '"v1"'})
            else:
                self.json({"version": 1}, headers={"ETag": '"v1"'})

        def route_modified(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            since = self.headers.get("If-Modified-Since")
            if since and parsedate_to_datetime(since).timestamp() >= MODIFIED:
                self.reply(304, b"", "application/json")
            else:
                self.json({"modified": True}, headers={"Last-Modified": formatdate(MODIFIED, usegmt=True)})

        def route_status(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            code = int(rest[0])
            self.reply(code, f"status {code}: something went wrong".encode(), "text/plain")

        def route_flaky(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            n = self.count(f"flaky/{rest[0]}")
            if n <= int(query.get("fail", "1")):
                self.reply(int(query.get("status", "500")), b"temporarily broken", "text/plain")
            else:
                self.json({"ok": True, "after": n - 1})

        def route_limited(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            n = self.count(f"limited/{rest[0]}")
            if n <= int(query.get("fail", "1")):
                self.reply(429, b"slow down", "text/plain", {"Retry-After": query.get("after", "1")})
            else:
                self.json({"ok": True})

        def route_slow(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            time.sleep(float(query.get("s", "1")))
            self.json({"slow": True})

        def route_trickle(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            size, every = int(query.get("n", "20")), float(query.get("every", "0.4"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                for _ in range(size):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(every)
            except OSError:  # the client gave up: that is the point of the test
                self.close_connection = True

        def _page(self, query: dict[str, str]) -> tuple[int, int, list[dict[str, Any]]]:
            page, total = int(query.get("page", "1")), int(query.get("total", "3"))
            size = int(query.get("size", "2"))
            return page, total, RECORDS[(page - 1) * size : page * size]

        def route_pages(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            page, total, items = self._page(query)
            headers = {}
            if page < total:
                link = f"/pages?page={page + 1}&total={total}&size={query.get('size', '2')}"
                headers["Link"] = f'<{link}>; rel="next", </pages?page=1>; rel="first"'
            self.json({"items": items, "page": page}, headers=headers)

        def route_arraypages(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            page, total, items = self._page(query)
            headers = {"Link": f'</arraypages?page={page + 1}&total={total}>; rel="next"'} if page < total else {}
            self.json(items, headers=headers)

        def route_jsonpages(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            page, total, items = self._page(query)
            following = f"{server.url}/jsonpages?page={page + 1}&total={total}" if page < total else None
            self.json({"items": items, "links": {"next": following}})

        def route_cursor(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            position = int(query.get("cursor", "0"))
            items = RECORDS[position : position + 4]
            following = position + 4 if position + 4 < len(RECORDS) else None
            self.json({"data": items, "meta": {"next": following}})

        def route_records(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            since = int(query.get("since", "0"))
            upto = int(query.get("upto", str(len(RECORDS))))
            self.json({"records": [r for r in RECORDS if since < r["id"] <= upto]})

        def route_redirect(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            self.reply(302, b"", "text/plain", {"Location": query["to"]})

        def route_echo(self, rest: list[str], query: dict[str, str], body: bytes) -> None:
            self.json(
                {
                    "method": self.command,
                    "query": query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode() or None,
                }
            )

    return Handler


@pytest.fixture(scope="session")
def http_server() -> Iterator[HttpServer]:
    state = HttpServer("127.0.0.1", 0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(http_server: HttpServer) -> HttpServer:
    """The session's server with its request log and counters cleared for this test."""
    http_server.reset()
    return http_server
