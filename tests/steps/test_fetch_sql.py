"""fetch.sql against real SQLite files: read-only, authorised, bound, bounded."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from engine.artifacts import ArtifactStore
from engine.outputs import decode
from tests import pg
from tests.conftest import policy


@pytest.fixture
def shop(tmp_path):
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as con:
        con.execute("create table orders (id integer primary key, region text, amount text)")
        con.executemany(
            "insert into orders values (?, ?, ?)", [(i, "emea" if i % 2 else "apac", f"{i}.10") for i in range(1, 21)]
        )
    return path


def sql(query, **params):
    return {"id": "q", "type": "fetch.sql", "params": {"database": "shop.db", "query": query, **params}}


def frame(store, run_id, step="q"):
    (row,) = [r for r in store.get_steps(run_id) if r["step_id"] == step]
    return decode(json.loads(row["output_json"]), ArtifactStore(store.state_dir / "artifacts"))["data"]


def test_query_with_named_bind_params_from_refs(run, store, shop):
    doc = policy(
        sql(
            "select id, amount from orders where region = :region and id <= :top order by id",
            params={"region": {"ref": "ctx.params.region"}, "top": 6},
        ),
        params={"region": {"type": "string", "default": "apac"}},
    )
    result = run(doc)
    assert result.status == "SUCCESS", result.steps[0].error
    assert frame(store, result.run_id).to_dict("records") == [
        {"id": 2, "amount": "2.10"},
        {"id": 4, "amount": "4.10"},
        {"id": 6, "amount": "6.10"},
    ]


def test_a_bound_value_is_never_sql(run, store, shop):
    result = run(policy(sql("select count(*) as n from orders where region = :r", params={"r": "x' or '1'='1"})))
    assert frame(store, result.run_id)["n"].tolist() == [0]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (
            "delete from orders",
            "refused: fetch.sql only reads (not authorized); writes, ATTACH, PRAGMA and extensions are not allowed",
        ),
        (
            "insert into orders values (99, 'x', '1')",
            "refused: fetch.sql only reads (not authorized); writes, ATTACH, PRAGMA and extensions are not allowed",
        ),
        (
            "pragma journal_mode=delete",
            "refused: fetch.sql only reads (not authorized); writes, ATTACH, PRAGMA and extensions are not allowed",
        ),
        (
            "attach database 'other.db' as other",
            "refused: fetch.sql only reads (not authorized); writes, ATTACH, PRAGMA and extensions are not allowed",
        ),
        (
            "select load_extension('evil')",
            "refused: fetch.sql only reads (not authorized to use function: "
            "load_extension); writes, ATTACH, PRAGMA and extensions are not allowed",
        ),
        ("select 1; select 2", "the query must be one statement"),
        ("select nope from orders", "query failed: no such column: nope"),
    ],
    ids=["delete", "insert", "pragma", "attach", "load_extension", "two-statements", "bad-column"],
)
def test_anything_but_reading_is_refused(run, shop, query, error):
    before = shop.read_bytes()
    result = run(policy(sql(query)))
    assert result.status == "FAILED"
    assert result.steps[0].error == error
    assert result.steps[0].attempts == 1  # refusals are not retried
    assert shop.read_bytes() == before
    assert not (shop.parent / "other.db").exists()


def test_max_rows_fails_instead_of_truncating(run, shop):
    result = run(policy(sql("select * from orders", max_rows=5)))
    assert result.steps[0].error == "the query returned more than max_rows (5) rows: add a LIMIT or raise max_rows"
    assert run(policy(sql("select * from orders", max_rows=20))).status == "SUCCESS"


def test_a_long_query_is_stopped_at_its_time_limit(run, shop):
    endless = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"
    result = run(policy(sql(endless, timeout_s=0.2)))
    assert result.status == "FAILED"
    assert result.steps[0].error == "the query ran longer than timeout_s (0.2 s) and was stopped"
    assert result.steps[0].duration_s < 5


@pytest.fixture
def big_text(tmp_path):
    """A real file with one 20 MB text value: instr() with a near-miss needle scans it for seconds."""
    path = tmp_path / "big.db"
    with sqlite3.connect(path) as con:
        con.execute("create table t (big text)")
        con.execute("insert into t values (?)", ("a" * 20_000_000,))
    con.close()
    return path


def test_a_single_long_function_call_is_stopped_at_its_time_limit(run, big_text):
    # one instr() call of several seconds: SQLite checks its progress handler only between VM steps
    query = "select instr(big, :needle) as at from t"
    step = {
        "id": "q",
        "type": "fetch.sql",
        "params": {"database": "big.db", "query": query, "params": {"needle": "a" * 8_000 + "b"}, "timeout_s": 0.5},
    }
    started = time.monotonic()
    result = run(policy(step))
    elapsed = time.monotonic() - started
    assert result.steps[0].error == "the query ran longer than timeout_s (0.5 s) and was stopped"
    assert result.steps[0].attempts == 1
    assert elapsed < 3, elapsed


@pytest.fixture
def blobs(tmp_path):
    """A real file with 12 blobs of 1 MB each."""
    path = tmp_path / "blobs.db"
    with sqlite3.connect(path) as con:
        con.execute("create table b (id integer primary key, data blob)")
        con.executemany("insert into b values (?, ?)", [(i, bytes([i]) * 1_000_000) for i in range(12)])
    con.close()
    return path


def test_max_bytes_bounds_the_size_of_the_result(run, store, blobs):
    def step(**params):
        return {
            "id": "q",
            "type": "fetch.sql",
            "params": {"database": "blobs.db", "query": "select * from b", **params},
        }

    result = run(policy(step(max_bytes=5_000_000)))
    assert result.steps[0].error == (
        "the query's result is larger than max_bytes (5000000) after 5 rows: "
        "select fewer rows or columns (add a LIMIT), or raise max_bytes"
    )
    ok = run(policy(step(max_bytes=12_000_200, query="select id, data from b")))
    assert ok.status == "SUCCESS", ok.steps[0].error
    assert frame(store, ok.run_id)["id"].tolist() == list(range(12))


def test_missing_database_is_not_created(run, tmp_path):
    result = run(policy({"id": "q", "type": "fetch.sql", "params": {"database": "nope.db", "query": "select 1"}}))
    assert result.steps[0].error == f"database not found: {tmp_path / 'nope.db'} (params.database 'nope.db')"
    assert not (tmp_path / "nope.db").exists()


def test_content_hash_follows_the_rows(run, store, shop):
    first = run(policy(sql("select * from orders order by id")))
    same = run(policy(sql("select * from orders order by id")))
    with sqlite3.connect(shop) as con:
        con.execute("update orders set amount = '9.99' where id = 1")
    changed = run(policy(sql("select * from orders order by id")))
    hashes = []
    for result in (first, same, changed):
        (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == "q"]
        hashes.append(json.loads(row["output_json"])["content_hash"])
    assert hashes[0] == hashes[1] != hashes[2]


# -- incremental loading ------------------------------------------------------------------------


def incremental_policy(gate_ok: bool = True, **extra):
    step = sql(
        "select id, amount from orders where id > :cursor order by id",
        incremental={"cursor_field": "id", "initial_value": 0},
        **extra,
    )
    gate = {"id": "gate", "type": "test.fail" if not gate_ok else "core.value", "params": {}}
    return policy(step, {**gate, "depends_on": ["q"]})


def committed_cursor(state_dir):
    rows = pg.sql(state_dir, "select value_json from pipeline_state where step_id = 'q' and key = 'cursor'")
    return [json.loads(r[0]) for r in rows]


def add_orders(shop, ids):
    with sqlite3.connect(shop) as con:
        con.executemany("insert into orders values (?, 'emea', '1.00')", [(i,) for i in ids])


def test_incremental_reads_only_new_rows_and_advances_on_success(run, store, state_dir, shop):
    first = run(incremental_policy())
    assert first.status == "SUCCESS"
    assert frame(store, first.run_id)["id"].tolist() == list(range(1, 21))
    assert committed_cursor(state_dir) == [20]

    add_orders(shop, [21, 22])
    second = run(incremental_policy())
    assert frame(store, second.run_id)["id"].tolist() == [21, 22]
    (row,) = [r for r in store.get_steps(second.run_id) if r["step_id"] == "q"]
    out = json.loads(row["output_json"])
    assert (out["cursor"], out["next_cursor"]) == (20, 22)
    assert committed_cursor(state_dir) == [22]

    third = run(incremental_policy())
    assert frame(store, third.run_id).empty
    assert committed_cursor(state_dir) == [22]  # no new rows: the mark stays


def test_a_failed_run_does_not_advance_the_cursor(run, store, state_dir, shop):
    run(incremental_policy())
    add_orders(shop, [21, 22, 23])
    failed = run(incremental_policy(gate_ok=False))
    assert failed.status == "FAILED"
    assert committed_cursor(state_dir) == [20]  # rows 21-23 were read but not delivered
    again = run(incremental_policy())
    assert frame(store, again.run_id)["id"].tolist() == [21, 22, 23]  # so they are read again
    assert committed_cursor(state_dir) == [23]


def test_resuming_a_failed_run_to_success_advances_the_cursor(run, resume, store, state_dir, write_policy, shop):
    failed = run(incremental_policy(gate_ok=False))
    assert committed_cursor(state_dir) == []
    fixed = write_policy(incremental_policy(), "fixed.json")
    resumed = resume(failed.run_id, policy_path=fixed)
    assert resumed.status == "SUCCESS"
    assert committed_cursor(state_dir) == [20]  # staged by the kept step of the first attempt


def test_a_dry_run_does_not_advance_the_cursor(run, state_dir, shop):
    assert run(incremental_policy(), dry_run=True).status == "SUCCESS"
    assert committed_cursor(state_dir) == []


def test_incremental_query_must_read_the_cursor(run, shop):
    step = sql("select id from orders", incremental={"cursor_field": "id", "initial_value": 0})
    result = run(policy(step))
    assert result.steps[0].error == (
        "an incremental query must read its cursor: as :cursor (e.g. 'where updated_at > :cursor'), "
        'or through a param set to {"ref": "ctx.q.cursor"}'
    )


def test_cursor_field_must_be_a_column(run, shop):
    step = sql("select amount from orders where id > :cursor", incremental={"cursor_field": "id", "initial_value": 0})
    result = run(policy(step))
    assert result.steps[0].error == "incremental.cursor_field 'id' is not a column of the result (it has: amount)"


def test_the_cursor_can_be_bound_as_ctx_step_cursor(run, store, state_dir, shop):
    """The issue's wording: the high-water mark is ctx.<step>.cursor, for use in the query."""
    step = sql(
        "select id from orders where id > :since order by id",
        params={"since": {"ref": "ctx.q.cursor"}},
        incremental={"cursor_field": "id", "initial_value": 15},
    )
    first = run(policy(step))
    assert frame(store, first.run_id)["id"].tolist() == [16, 17, 18, 19, 20]
    assert committed_cursor(state_dir) == [20]
    add_orders(shop, [21, 22])
    assert frame(store, run(policy(step)).run_id)["id"].tolist() == [21, 22]


def test_a_step_may_not_depend_on_itself():
    from engine import PolicyError
    from engine.validate import validate_document

    with pytest.raises(PolicyError, match=r"dependency cycle: q -> q"):
        validate_document(policy({**sql("select 1"), "depends_on": ["q"]}))
