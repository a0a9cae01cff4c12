"""transform.store: real SQLite files, each write disposition, schema evolution, exact money."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import policy

ROWS = [{"id": 1, "name": "a", "amount": "10.10"}, {"id": 2, "name": "b", "amount": "0.20"}]


def store_step(rows, **params):
    return policy(
        {"id": "src", "type": "core.value", "params": {"value": rows}},
        {
            "id": "cast",
            "type": "transform.frame",
            "params": {"input": {"ref": "ctx.src"}, "ops": [{"op": "cast", "columns": {"amount": "decimal"}}]},
        },
        {
            "id": "save",
            "type": "transform.store",
            "params": {"input": {"ref": "ctx.cast.data"}, "database": "out.db", "table": "orders", **params},
        },
    )


def table(tmp_path, query="select * from orders order by id"):
    with sqlite3.connect(tmp_path / "out.db") as con:
        return con.execute(query).fetchall()


def saved(store, result):
    import json

    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == "save"]
    out = json.loads(row["output_json"])
    return {k: out[k] for k in ("rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted")}


def test_append_creates_the_table_and_keeps_money_exact(run, store, tmp_path):
    result = run(store_step(ROWS))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    assert table(tmp_path) == [(1, "a", "10.10"), (2, "b", "0.20")]
    assert table(tmp_path, "select distinct typeof(amount) from orders") == [("text",)]  # Decimals as exact text
    assert saved(store, result) == {"rows_inserted": 2, "rows_updated": 0, "rows_unchanged": 0, "rows_deleted": 0}
    run(store_step(ROWS))
    assert len(table(tmp_path)) == 4


def test_replace_swaps_the_table_in_one_transaction(run, store, tmp_path):
    run(store_step(ROWS))
    result = run(store_step([{"id": 9, "name": "z", "amount": "1"}], disposition="replace"))
    assert table(tmp_path) == [(9, "z", "1")]
    assert saved(store, result)["rows_deleted"] == 2


def test_merge_upserts_and_is_idempotent(run, store, tmp_path):
    first = run(store_step(ROWS, disposition="merge", primary_key=["id"]))
    assert saved(store, first) == {"rows_inserted": 2, "rows_updated": 0, "rows_unchanged": 0, "rows_deleted": 0}
    again = run(store_step(ROWS, disposition="merge", primary_key=["id"]))
    assert saved(store, again) == {"rows_inserted": 0, "rows_updated": 0, "rows_unchanged": 2, "rows_deleted": 0}
    assert table(tmp_path) == [(1, "a", "10.10"), (2, "b", "0.20")]
    changed = run(
        store_step(
            [{"id": 2, "name": "B", "amount": "0.20"}, {"id": 3, "name": "c", "amount": "3"}],
            disposition="merge",
            primary_key=["id"],
        )
    )
    assert saved(store, changed) == {"rows_inserted": 1, "rows_updated": 1, "rows_unchanged": 0, "rows_deleted": 0}
    assert table(tmp_path) == [(1, "a", "10.10"), (2, "B", "0.20"), (3, "c", "3")]


def test_derived_keys_are_stable_hashes(run, store, tmp_path):
    rows = [{"source": "s1", "url": "http://x/1", "amount": "1"}]
    for _ in range(2):
        result = run(
            store_step(
                rows, disposition="merge", primary_key=["key"], derive_key={"column": "key", "from": ["source", "url"]}
            )
        )
    assert saved(store, result)["rows_unchanged"] == 1
    import hashlib

    assert table(tmp_path, "select key from orders") == [(hashlib.sha256(b"s1|http://x/1").hexdigest(),)]


def test_new_columns_are_added_and_incompatible_types_refused(run, tmp_path):
    run(store_step(ROWS))
    run(store_step([{"id": 3, "name": "c", "amount": "1", "extra": "new"}]))
    assert table(tmp_path, "select id, extra from orders order by id") == [(1, None), (2, None), (3, "new")]
    bad = run(store_step([{"id": "x", "name": "d", "amount": "1"}]))
    assert bad.status == "FAILED"
    assert bad.steps[2].error == (
        "column 'id' is INTEGER in table 'orders' but the data is TEXT: refusing an incompatible type change "
        "(cast the column, or write to a new table)"
    )
    assert len(table(tmp_path)) == 3  # nothing written


def test_dry_run_previews_counts_without_writing(run, store, tmp_path):
    run(store_step(ROWS, disposition="merge", primary_key=["id"]))
    before = (tmp_path / "out.db").read_bytes()
    result = run(
        store_step(
            [{"id": 2, "name": "B", "amount": "0.20"}, {"id": 5, "name": "e", "amount": "5"}],
            disposition="merge",
            primary_key=["id"],
        ),
        dry_run=True,
    )
    assert result.status == "SUCCESS"
    import json

    (row,) = [r for r in store.get_steps(result.run_id) if r["step_id"] == "save"]
    preview = json.loads(row["output_json"])
    assert (preview["preview"], preview["rows_inserted"], preview["rows_updated"]) == (True, 1, 1)
    assert table(tmp_path) == [(1, "a", "10.10"), (2, "b", "0.20")]
    assert (tmp_path / "out.db").read_bytes() == before


def test_merge_needs_a_primary_key_and_unique_keys(run):
    from engine import PolicyError

    with pytest.raises(PolicyError, match="disposition 'merge' needs primary_key"):
        run(store_step(ROWS, disposition="merge"))
    result = run(store_step(ROWS + [ROWS[0]], disposition="merge", primary_key=["id"]))
    assert result.steps[2].error.startswith("the data has duplicate keys ['id']")


def test_identifiers_are_checked_before_any_sql(run, tmp_path):
    from engine import PolicyError

    with pytest.raises(PolicyError, match="/steps/2/params/table"):
        run(store_step(ROWS, table='orders"; drop table x; --'))
    with pytest.raises(PolicyError, match="/steps/2/params/derive_key/column"):
        run(store_step(ROWS, derive_key={"column": 'k" TEXT); --', "from": ["id"]}))
    bad = run(store_step([{"id": 1, "amount": "1", "we ird": 2}]))
    assert bad.steps[2].error == "column names must be letters, digits and _ to be stored: ['we ird']"
    assert not (tmp_path / "out.db").exists()
