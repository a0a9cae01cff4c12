"""Fixtures of the stage tests: the real HTTP server on 127.0.0.1 (tests/httpserver.py)."""

from tests.httpserver import http_server, server  # noqa: F401  (fixtures)
