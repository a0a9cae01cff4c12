"""fetch.http against a real HTTP server on 127.0.0.1: allow-lists, limits, retries, cache, pages."""

from __future__ import annotations

import json
import time

import pytest

from engine import EngineConfig, PolicyError
from engine.artifacts import ArtifactStore
from engine.outputs import decode
from engine.validate import validate_document
from steps.fetch.http import retry_after_seconds
from tests import pg
from tests.conftest import policy
from tests.httpserver import RECORDS

FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05}


def fetch(url, sid="f", **params):
    return {"id": sid, "type": "fetch.http", "params": {"url": url, **params}}


def doc(*steps, **top):
    top.setdefault("allowed_hosts", ["127.0.0.1"])
    return policy(*steps, **top)


def output(store, run_id, step="f"):
    (row,) = [r for r in store.get_steps(run_id) if r["step_id"] == step]
    assert row["status"] == "SUCCESS", row["error"]
    return decode(json.loads(row["output_json"]), ArtifactStore(store.state_dir / "artifacts"))


def error_of(result, step="f"):
    return next(s for s in result.steps if s.id == step).error


# -- formats and the envelope -------------------------------------------------------------------


def test_json_is_parsed_and_the_envelope_filled(run, store, server):
    result = run(doc(fetch(f"{server.url}/json")))
    out = output(store, result.run_id)
    assert out["data"] == {"hello": "world", "items": RECORDS[:3]}
    assert out["content_type"] == "application/json"
    assert out["status_code"] == 200
    assert out["url"] == f"{server.url}/json"
    assert out["cache_status"] == "none"
    assert out["pages"] == 1
    assert out["warnings"] == []
    import hashlib

    assert (
        out["content_hash"] == hashlib.sha256(json.dumps({"hello": "world", "items": RECORDS[:3]}).encode()).hexdigest()
    )


def test_csv_becomes_a_dataframe(run, store, server):
    out = output(store, run(doc(fetch(f"{server.url}/csv"))).run_id)
    assert out["data"].to_dict("records") == [{"region": "emea", "amount": 10.5}, {"region": "apac", "amount": 20.0}]
    assert out["content_type"] == "text/csv"


def test_text_and_bytes(run, store, server):
    result = run(doc(fetch(f"{server.url}/text", "t"), fetch(f"{server.url}/bytes", "b")))
    assert output(store, result.run_id, "t")["data"] == "plain text, caf\u00e9"
    ref = output(store, result.run_id, "b")["data"]
    assert ref["media_type"] == "application/octet-stream"
    assert ArtifactStore(store.state_dir / "artifacts").read_bytes(ref["sha256"]) == bytes(range(256))


def test_format_overrides_the_content_type(run, store, server):
    out = output(store, run(doc(fetch(f"{server.url}/json", format="text"))).run_id)
    assert json.loads(out["data"])["hello"] == "world"


def test_records_path_and_as_frame(run, store, server):
    out = output(store, run(doc(fetch(f"{server.url}/json", records_path="items", **{"as": "frame"}))).run_id)
    assert out["data"]["id"].tolist() == [1, 2, 3]


def test_query_headers_and_post_body_are_sent(run, store, server):
    step = fetch(
        f"{server.url}/echo",
        method="POST",
        query={"region": "emea", "n": 3, "all": True},
        headers={"X-Token": {"secret": "API_TOKEN"}},
        json_body={"a": [1, 2]},
    )
    import os

    os.environ["API_TOKEN"] = "tok-123456"
    try:
        out = output(store, run(doc(step)).run_id)
    finally:
        del os.environ["API_TOKEN"]
    echo = out["data"]
    assert echo["method"] == "POST"
    assert echo["query"] == {"region": "emea", "n": "3", "all": "true"}
    assert echo["headers"]["x-token"] == "***"  # the stored output is redacted...
    assert server.requests("/echo")[0].headers["X-Token"] == "tok-123456"  # ...the request was not
    assert echo["headers"]["content-type"] == "application/json"
    assert json.loads(echo["body"]) == {"a": [1, 2]}


# -- the allow-list -----------------------------------------------------------------------------


def problems(document, config=None):
    with pytest.raises(PolicyError) as info:
        validate_document(document, config=config or EngineConfig({}, environ={}))
    return [str(p) for p in info.value.problems]


def test_a_literal_url_off_the_allow_list_fails_validation():
    assert problems(policy(fetch("https://evil.example.com/x"))) == [
        "/steps/0/params/url: host 'evil.example.com' is not on the allow-list (allowed: none) "
        "(add it to the policy's allowed_hosts, or to allowed_hosts under [fetch] in engine.toml)"
    ]


def test_engine_config_and_wildcards_allow_hosts():
    config = EngineConfig({"fetch": {"allowed_hosts": ["*.example.com"]}}, environ={})
    validate_document(policy(fetch("https://api.example.com/x")), config=config)
    assert "host 'example.com' is not on the allow-list" in problems(policy(fetch("https://example.com/")), config)[0]
    env = EngineConfig({}, environ={"ENGINE_FETCH_ALLOWED_HOSTS": "a.test,b.test"})
    validate_document(policy(fetch("https://b.test/x")), config=env)


def test_a_non_http_url_fails_validation():
    assert problems(doc(fetch("file:///etc/passwd"))) == [
        "/steps/0/params/url: 'file:///etc/passwd' is not an http(s) URL (write it as https://host/path)"
    ]


def test_a_templated_url_off_the_list_fails_the_step(run):
    step = fetch({"template": "http://{{ params.host }}/x"})
    result = run(doc(step, params={"host": {"type": "string", "default": "localhost"}}))
    assert result.status == "FAILED"
    assert error_of(result) == (
        "host 'localhost' is not on the allow-list (allowed: 127.0.0.1): "
        "add it to the policy's allowed_hosts, or to allowed_hosts under [fetch] in engine.toml"
    )


def test_a_redirect_off_the_list_is_refused(run, server):
    result = run(doc(fetch(f"{server.url}/redirect?to=http://localhost:{server.port}/json")))
    assert "host 'localhost' is not on the allow-list" in error_of(result)
    assert server.requests("/json") == []


def test_rate_limits_section_is_validated():
    assert problems(doc(fetch("http://127.0.0.1/x"), rate_limits={"127.0.0.1": {"max_rate": 0}})) == [
        "/rate_limits/127.0.0.1/max_rate: must be greater than 0 (got 0)"
    ]


# -- errors and retries -------------------------------------------------------------------------


def test_a_4xx_fails_at_once_with_status_and_body(run, server):
    result = run(doc(fetch(f"{server.url}/status/404", retries=FAST)))
    assert error_of(result) == f"HTTP 404 Not Found from {server.url}/status/404: status 404: something went wrong"
    assert len(server.requests("/status/404")) == 1


def test_5xx_is_retried_then_succeeds(run, store, server):
    result = run(doc(fetch(f"{server.url}/flaky/a?fail=2&status=503", retries=FAST)))
    assert output(store, result.run_id)["data"] == {"ok": True, "after": 2}
    assert len(server.requests("/flaky/a")) == 3


def test_5xx_fails_after_the_last_attempt(run, server):
    result = run(doc(fetch(f"{server.url}/flaky/b?fail=9", retries={**FAST, "max_attempts": 3})))
    assert error_of(result) == f"HTTP 500 from {server.url}/flaky/b after 3 attempts: temporarily broken"
    assert len(server.requests("/flaky/b")) == 3


def test_429_waits_for_retry_after(run, store, server):
    result = run(doc(fetch(f"{server.url}/limited/a?fail=1&after=1", retries=FAST)))
    assert output(store, result.run_id)["data"] == {"ok": True}
    first, second = server.requests("/limited/a")
    assert second.at - first.at >= 0.95  # the server asked for 1 s; the backoff alone would be 0.01 s


def test_a_retry_after_beyond_the_limit_fails(run, server):
    result = run(doc(fetch(f"{server.url}/limited/b?fail=1&after=120", retries=FAST)))
    assert error_of(result) == (
        f"HTTP 429 from {server.url}/limited/b: the server asks to retry after 120 s, "
        "more than retries.max_retry_after_s (60 s)"
    )


def test_retry_after_as_an_http_date():
    import datetime as dt

    now = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("Tue, 01 Dec 2026 12:00:30 GMT", now) == 30
    assert retry_after_seconds("7", now) == 7
    assert retry_after_seconds("soon", now) is None


def test_a_slow_response_times_out_and_is_retried(run, server):
    step = fetch(f"{server.url}/slow?s=1", timeout_s=0.2, retries={**FAST, "max_attempts": 2})
    result = run(doc(step))
    assert error_of(result) == f"timed out after 0.2 s fetching {server.url}/slow (2 attempts)"
    assert len(server.requests("/slow")) == 2


def test_timeout_s_bounds_the_whole_request_not_each_read(run, store, server):
    # one byte every 0.3 s for 20 bytes: every read is quick, the whole takes 6 s
    step = fetch(f"{server.url}/trickle?n=20&every=0.3", timeout_s=1, retries={**FAST, "max_attempts": 2})
    started = time.monotonic()
    result = run(doc(step))
    elapsed = time.monotonic() - started
    assert error_of(result) == f"timed out after 1 s fetching {server.url}/trickle (2 attempts)"
    assert len(server.requests("/trickle")) == 2  # retried, as other timeouts are
    assert elapsed < 4, elapsed
    (row,) = store.get_steps(result.run_id)
    assert row["status"] == "FAILED"


def test_connection_refused_is_reported(run):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(doc(fetch(f"http://127.0.0.1:{port}/x", retries={**FAST, "max_attempts": 2})))
    assert error_of(result).startswith(f"cannot reach http://127.0.0.1:{port}/x after 2 attempts: ConnectError")


def test_a_header_that_is_not_ascii_fails_without_showing_its_value(run, server, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "tök-3n")
    result = run(doc(fetch(f"{server.url}/echo", headers={"X-Token": {"secret": "API_TOKEN"}})))
    assert error_of(result) == (
        "header 'X-Token' is not ASCII text, as HTTP headers must be: encode its value "
        "(percent-encode or base64 it, as the server expects)"
    )
    assert server.requests("/echo") == []


def test_max_bytes_bounds_the_body(run, server):
    result = run(doc(fetch(f"{server.url}/bytes", max_bytes=100)))
    assert error_of(result) == f"the response from {server.url}/bytes is larger than max_bytes (100)"


# -- rate limits --------------------------------------------------------------------------------


def test_a_5_per_second_limit_holds_under_4_concurrent_steps(run, server):
    """4 steps x 4 pages = 16 requests through one shared 5 req/s bucket."""
    steps = [fetch(f"{server.url}/pages?total=4&size=1", f"f{i}", paginate={"next_link": "header"}) for i in range(4)]
    limits = {"127.0.0.1": {"max_rate": 5, "time_period_s": 1, "max_concurrency": 4}}
    result = run(doc(*steps, rate_limits=limits, max_concurrency=4))
    assert result.status == "SUCCESS"
    times = sorted(s.at for s in server.requests("/pages"))
    assert len(times) == 16
    # a leaky bucket of 5 per second lets the first 5 through at once, then one every 0.2 s
    # (arrival times are taken by the server thread: on a loaded 2-core machine they bunch up by
    # a few per cent, hence 0.9 rather than the exact 2.2 s)
    span = times[-1] - times[0]
    assert span >= (16 - 5) / 5 * 0.9, span
    for i, start in enumerate(times):  # never more than the burst plus the leak in any second
        assert sum(1 for t in times[i:] if t - start < 1.0) <= 10
    rate_after_burst = (16 - 5) / span
    assert rate_after_burst <= 5 * 1.1, rate_after_burst


def test_the_concurrency_cap_is_shared(run, server):
    steps = [fetch(f"{server.url}/slow?s=0.3", f"f{i}") for i in range(4)]
    limits = {"*": {"max_rate": 100, "max_concurrency": 1}}
    started = time.monotonic()
    assert run(doc(*steps, rate_limits=limits)).status == "SUCCESS"
    times = sorted(s.at for s in server.requests("/slow"))
    assert all(b - a >= 0.28 for a, b in zip(times, times[1:], strict=False))  # one at a time
    assert time.monotonic() - started >= 1.2


# -- cache --------------------------------------------------------------------------------------


def test_within_ttl_a_cached_fetch_makes_no_request(run, store, server):
    step = fetch(f"{server.url}/json", cache_ttl_s=3600)
    first = output(store, run(doc(step)).run_id)
    second = output(store, run(doc(step)).run_id)
    assert (first["cache_status"], second["cache_status"]) == ("miss", "hit")
    assert second["data"] == first["data"]
    assert second["content_hash"] == first["content_hash"]
    assert len(server.requests("/json")) == 1


@pytest.mark.parametrize(("path", "header"), [("/etag", "If-None-Match"), ("/modified", "If-Modified-Since")])
def test_after_ttl_a_304_revalidates(run, store, server, path, header):
    step = fetch(f"{server.url}{path}", cache_ttl_s=0)
    first = output(store, run(doc(step)).run_id)
    second = output(store, run(doc(step)).run_id)
    assert (first["cache_status"], second["cache_status"]) == ("miss", "revalidated")
    assert second["data"] == first["data"]
    seen = server.requests(path)
    assert len(seen) == 2
    assert header not in seen[0].headers and header in seen[1].headers


def test_after_ttl_without_validators_it_is_a_miss(run, store, server):
    step = fetch(f"{server.url}/json", cache_ttl_s=0)
    run(doc(step))
    assert output(store, run(doc(step)).run_id)["cache_status"] == "miss"
    assert len(server.requests("/json")) == 2


def test_the_cache_key_covers_query_and_headers(run, store, server):
    run(doc(fetch(f"{server.url}/json", cache_ttl_s=3600, query={"a": 1})))
    other = output(store, run(doc(fetch(f"{server.url}/json", cache_ttl_s=3600, query={"a": 2}))).run_id)
    header = output(
        store, run(doc(fetch(f"{server.url}/json", cache_ttl_s=3600, query={"a": 1}, headers={"Accept": "x/y"}))).run_id
    )
    assert (other["cache_status"], header["cache_status"]) == ("miss", "miss")
    assert len(server.requests("/json")) == 3


def test_the_cache_table_keeps_no_query_string_or_header_value(run, store, state_dir, server):
    run(doc(fetch(f"{server.url}/json?key=sekret-query", cache_ttl_s=60, headers={"Authorization": "Bearer sekret-h"})))
    rows = pg.sql(state_dir, "select * from fetch_cache")
    assert len(rows) == 1
    assert "sekret" not in repr(rows)


# -- pagination ---------------------------------------------------------------------------------


def test_pages_by_link_header(run, store, server):
    step = fetch(f"{server.url}/pages?total=3&size=2", paginate={"next_link": "header"}, records_path="items")
    out = output(store, run(doc(step)).run_id)
    assert [r["id"] for r in out["data"]] == [1, 2, 3, 4, 5, 6]
    assert out["pages"] == 3


def test_pages_that_are_json_arrays_are_joined(run, store, server):
    out = output(store, run(doc(fetch(f"{server.url}/arraypages?total=3", paginate={"next_link": "header"}))).run_id)
    assert [r["id"] for r in out["data"]] == [1, 2, 3, 4, 5, 6]


def test_pages_by_json_next_link(run, store, server):
    step = fetch(f"{server.url}/jsonpages?total=2", paginate={"next_link": "$.links.next"}, records_path="items")
    out = output(store, run(doc(step)).run_id)
    assert [r["id"] for r in out["data"]] == [1, 2, 3, 4]
    assert out["pages"] == 2


def test_pages_by_cursor(run, store, server):
    step = fetch(
        f"{server.url}/cursor",
        query={"limit": 4},
        paginate={"cursor": "meta.next", "cursor_param": "cursor"},
        records_path="data",
    )
    out = output(store, run(doc(step)).run_id)
    assert [r["id"] for r in out["data"]] == list(range(1, 13))
    assert [s.query for s in server.requests("/cursor")] == [
        {"limit": "4"},
        {"limit": "4", "cursor": "4"},
        {"limit": "4", "cursor": "8"},
    ]


def test_max_pages_bounds_pagination_with_a_warning(run, store, server):
    step = fetch(f"{server.url}/pages?total=9", paginate={"next_link": "header", "max_pages": 2}, records_path="items")
    out = output(store, run(doc(step)).run_id)
    assert out["pages"] == 2
    assert out["warnings"] == ["stopped after max_pages (2); more pages were offered"]


def test_paginate_needs_one_mode():
    assert problems(doc(fetch("http://127.0.0.1/x", paginate={"max_pages": 2}))) == [
        "/steps/0/params/paginate: set exactly one of next_link or cursor"
    ]


# -- incremental loading ------------------------------------------------------------------------


def incremental(server, upto, gate_ok=True):
    step = fetch(
        f"{server.url}/records",
        query={"upto": upto},
        records_path="records",
        incremental={"cursor_field": "id", "initial_value": 0, "query_param": "since"},
    )
    gate = {"id": "gate", "type": "core.value" if gate_ok else "test.fail", "params": {}, "depends_on": ["f"]}
    return doc(step, gate)


def committed_cursor(state_dir):
    rows = pg.sql(state_dir, "select value_json from pipeline_state where step_id = 'f' and key = 'cursor'")
    return [json.loads(r[0]) for r in rows]


def test_incremental_fetches_only_new_records(run, store, state_dir, server):
    first = output(store, run(incremental(server, 5)).run_id)
    assert [r["id"] for r in first["data"]] == [1, 2, 3, 4, 5]
    assert (first["cursor"], first["next_cursor"]) == (0, 5)
    second = output(store, run(incremental(server, 8)).run_id)
    assert [r["id"] for r in second["data"]] == [6, 7, 8]
    assert committed_cursor(state_dir) == [8]
    assert [s.query["since"] for s in server.requests("/records")] == ["0", "5"]


def test_a_failed_run_does_not_advance_the_http_cursor(run, store, state_dir, server):
    run(incremental(server, 5))
    failed = run(incremental(server, 9, gate_ok=False))
    assert failed.status == "FAILED"
    assert committed_cursor(state_dir) == [5]
    again = output(store, run(incremental(server, 9)).run_id)
    assert [r["id"] for r in again["data"]] == [6, 7, 8, 9]  # nothing lost


def test_incremental_cursor_in_the_url(run, store, server):
    step = fetch(
        f"{server.url}/records?since={{cursor}}",
        records_path="records",
        incremental={"cursor_field": "id", "initial_value": 10},
    )
    out = output(store, run(doc(step)).run_id)
    assert [r["id"] for r in out["data"]] == [11, 12]


def test_incremental_needs_a_place_for_the_cursor(run, server):
    step = fetch(
        f"{server.url}/records", records_path="records", incremental={"cursor_field": "id", "initial_value": 0}
    )
    assert error_of(run(doc(step))) == (
        "incremental needs a place for the cursor: set incremental.query_param, put {cursor} in the url, "
        'or set a query value to {"ref": "ctx.f.cursor"}'
    )


def self_ref_incremental(server, upto, gate_ok=True):
    """The cursor read as ctx.<step>.cursor in the step's own query (the issue's wording)."""
    step = fetch(
        f"{server.url}/records",
        query={"upto": upto, "since": {"ref": "ctx.f.cursor"}},
        records_path="records",
        incremental={"cursor_field": "id", "initial_value": 2},
    )
    gate = {"id": "gate", "type": "core.value" if gate_ok else "test.fail", "params": {}, "depends_on": ["f"]}
    return doc(step, gate)


def test_a_step_reads_its_own_cursor_as_ctx_step_cursor(run, store, state_dir, server):
    first = output(store, run(self_ref_incremental(server, 5)).run_id)
    assert [r["id"] for r in first["data"]] == [3, 4, 5]  # since the initial_value, 2
    assert run(self_ref_incremental(server, 9, gate_ok=False)).status == "FAILED"
    assert committed_cursor(state_dir) == [5]  # the failed run did not move it
    again = output(store, run(self_ref_incremental(server, 9)).run_id)
    assert [r["id"] for r in again["data"]] == [6, 7, 8, 9]
    assert [s.query["since"] for s in server.requests("/records")] == ["2", "5", "5"]


def test_own_cursor_in_a_url_template(run, store, server):
    step = fetch(
        {"template": server.url + "/records?since={{ f.cursor }}"},
        records_path="records",
        incremental={"cursor_field": "id", "initial_value": 10},
    )
    out = output(store, run(doc(step)).run_id)
    assert [r["id"] for r in out["data"]] == [11, 12]


def test_a_dry_run_fetches_for_real(run, store, server):
    result = run(doc(fetch(f"{server.url}/json")), dry_run=True)
    assert result.status == "SUCCESS"
    assert len(server.requests("/json")) == 1
