"""fetch.sql against a real PostgreSQL server: read-only by the server, bound, bounded, refused.

The session's throwaway cluster (tests/pg.py) trusts every connection from 127.0.0.1; for these
tests its pg_hba.conf asks the reader roles for their password (scram-sha-256), so the password
a step names as a secret really is checked by the server. The cluster's own user is a superuser.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from engine import PolicyError
from engine.artifacts import ArtifactStore
from engine.outputs import decode
from engine.validate import validate_document
from steps.fetch.sql_postgres import prepare
from tests import pg
from tests.conftest import policy

READER = "fetch_reader"  # may only SELECT orders and events
FILER = "fetch_filer"  # a member of pg_read_server_files
PASSWORD = "Wh-pass/7+x=="  # URL-encoding and base64 change it: the leak check looks for those too
SECRET = "WAREHOUSE_PASSWORD"


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="module")
def warehouse(postgres_server: pg.PostgresServer | str) -> Iterator[dict[str, Any]]:
    """A database with an orders table, the reader roles, and password authentication for them."""
    if isinstance(postgres_server, str):
        pytest.skip(f"PostgreSQL is not available: {postgres_server}")
    url = postgres_server.create_database(migrated=False)
    with psycopg.connect(libpq(url), autocommit=True) as admin:
        admin.execute("create table orders (id int primary key, region text not null, amount numeric(10, 2) not null)")
        admin.execute(
            "insert into orders select i, case when i % 2 = 0 then 'apac' else 'emea' end, i + 0.10 "
            "from generate_series(1, 20) i"
        )
        for role in (READER, FILER):
            admin.execute(f"drop role if exists {role}")
            admin.execute(f"create role {role} login password '{PASSWORD}'")
            admin.execute(f"grant select on orders to {role}")
            admin.execute(f"alter role {role} set timezone = 'UTC'")  # timestamps read back in UTC
        admin.execute(f"grant pg_read_server_files to {FILER}")
        # runs as its owner, the superuser: a write the server must still refuse
        admin.execute(
            "create function bump() returns int language sql security definer "
            "as $$ update orders set amount = amount + 1 returning 1 $$"
        )
    hba = postgres_server.data / "pg_hba.conf"
    trusted = hba.read_text()
    hba.write_text(f"host all {READER},{FILER} 127.0.0.1/32 scram-sha-256\n{trusted}")
    _reload_until_password_asked(postgres_server)
    name = url.rsplit("/", 1)[1]
    yield {"server": postgres_server, "admin": libpq(url), "name": name, "port": postgres_server.port}
    hba.write_text(trusted)
    postgres_server.drop_database(url)
    with psycopg.connect(libpq(postgres_server.url()), autocommit=True) as admin:
        admin.execute("select pg_reload_conf()")
        for role in (READER, FILER):
            admin.execute(f"drop role if exists {role}")


def _reload_until_password_asked(server: pg.PostgresServer) -> None:
    with psycopg.connect(libpq(server.url()), autocommit=True) as admin:
        admin.execute("select pg_reload_conf()")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            psycopg.connect(host="127.0.0.1", port=server.port, user=READER, dbname="postgres").close()
        except psycopg.OperationalError:
            return  # no password supplied: the new rule is in force
        time.sleep(0.05)
    raise AssertionError("pg_hba.conf was not reloaded")


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET, PASSWORD)


def url_of(warehouse: dict[str, Any], user: str = READER) -> str:
    return f"postgresql+psycopg://{user}@127.0.0.1:{warehouse['port']}/{warehouse['name']}"


def sql(warehouse: dict[str, Any], query: str, user: str = READER, **params: Any) -> dict[str, Any]:
    source: dict[str, Any] = {"url": url_of(warehouse, user)}
    if user != pg.USER:
        source["password"] = {"secret": SECRET}
    return {"id": "q", "type": "fetch.sql", "params": {**source, "query": query, **params}}


def pg_policy(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return policy(*steps, allowed_hosts=["127.0.0.1"], **top)


def output(store, run_id: str, step: str = "q") -> dict[str, Any]:
    (row,) = [r for r in store.get_steps(run_id) if r["step_id"] == step]
    return decode(json.loads(row["output_json"]), ArtifactStore(store.state_dir / "artifacts"))


def admin_rows(warehouse: dict[str, Any], query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(warehouse["admin"], autocommit=True) as conn:
        return conn.execute(query).fetchall()


# -- reading ------------------------------------------------------------------------------------


def test_query_with_named_bind_params_into_a_frame(run, store, warehouse, secret):
    doc = pg_policy(
        sql(
            warehouse,
            "select id, amount from orders where region = :region and id <= :top order by id",
            params={"region": {"ref": "ctx.params.region"}, "top": 6},
        ),
        params={"region": {"type": "string", "default": "apac"}},
    )
    result = run(doc)
    assert result.status == "SUCCESS", result.steps[0].error
    out = output(store, result.run_id)
    assert [(r["id"], str(r["amount"])) for r in out["data"].to_dict("records")] == [
        (2, "2.10"),
        (4, "4.10"),
        (6, "6.10"),
    ]
    assert out["url"] == url_of(warehouse)
    assert out["content_type"] == "application/x-postgresql"


def test_a_bound_value_is_never_sql(run, store, warehouse, secret):
    step = sql(warehouse, "select count(*) as n from orders where region = :r", params={"r": "x' or '1'='1"})
    result = run(pg_policy(step))
    assert output(store, result.run_id)["data"]["n"].tolist() == [0]


def test_the_server_runs_the_query_read_only_with_the_time_limit(run, store, warehouse, secret):
    query = (
        "select current_setting('transaction_read_only') as read_only, "
        "current_setting('statement_timeout') as statement_timeout"
    )
    result = run(pg_policy(sql(warehouse, query, timeout_s=1.5)))
    assert output(store, result.run_id)["data"].to_dict("records") == [
        {"read_only": "on", "statement_timeout": "1500ms"}
    ]


def test_placeholders_skip_strings_comments_and_casts():
    query = (
        "select ':a', E'it\\'s :g', $$:b$$, $t$ :c $t$, \"x:d\", id::text, tags[1:k], 5 % 2 "
        "from t where r = :r -- :e\n and n > :n /* :f */"
    )
    assert prepare(query) == (
        "select ':a', E'it\\'s :g', $$:b$$, $t$ :c $t$, \"x:d\", id::text, tags[1:k], 5 %% 2 "
        "from t where r = %(r)s -- :e\n and n > %(n)s /* :f */",
        ["r", "n"],
    )


# -- limits -------------------------------------------------------------------------------------


def test_max_rows_fails_instead_of_truncating(run, warehouse, secret):
    result = run(pg_policy(sql(warehouse, "select * from orders", max_rows=5)))
    assert result.steps[0].error == "the query returned more than max_rows (5) rows: add a LIMIT or raise max_rows"
    assert result.steps[0].attempts == 1
    assert run(pg_policy(sql(warehouse, "select * from orders", max_rows=20))).status == "SUCCESS"


def test_max_bytes_bounds_the_size_of_the_result(run, warehouse, secret):
    query = "select i as id, repeat('x', 1000000) as data from generate_series(1, 12) i"
    result = run(pg_policy(sql(warehouse, query, max_bytes=5_000_000)))
    assert result.steps[0].error == (
        "the query's result is larger than max_bytes (5000000) after 5 rows: "
        "select fewer rows or columns (add a LIMIT), or raise max_bytes"
    )


def test_a_long_query_is_stopped_at_its_time_limit_on_the_server_too(run, warehouse, secret):
    started = time.monotonic()
    result = run(pg_policy(sql(warehouse, "select pg_sleep(30)", timeout_s=0.5)))
    assert result.status == "FAILED"
    assert result.steps[0].error == "the query ran longer than timeout_s (0.5 s) and was stopped"
    assert result.steps[0].attempts == 1
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    mine = (
        "select query from pg_stat_activity "
        f"where application_name = 'policy-engine fetch.sql' and datname = '{warehouse['name']}'"
    )
    while admin_rows(warehouse, mine):  # the step's connection is gone, its query stopped
        assert time.monotonic() < deadline, admin_rows(warehouse, mine)
        time.sleep(0.05)


# -- refusals -----------------------------------------------------------------------------------

NOT_A_SELECT = (
    "refused: fetch.sql only reads: the query must be one SELECT (or WITH ... SELECT, VALUES, TABLE) statement, not "
)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("insert into orders values (99, 'x', 1)", NOT_A_SELECT + "INSERT"),
        ("update orders set amount = 0", NOT_A_SELECT + "UPDATE"),
        ("delete from orders", NOT_A_SELECT + "DELETE"),
        ("create table evil (x int)", NOT_A_SELECT + "CREATE"),
        ("drop table orders", NOT_A_SELECT + "DROP"),
        ("copy orders to program 'touch {marker}'", NOT_A_SELECT + "COPY"),
        ("/* hidden */ (copy orders to program 'touch {marker}')", NOT_A_SELECT + "COPY"),
        ("select 1; drop table orders", "the query must be one statement"),
        ("select 1; copy orders to program 'touch {marker}'", "the query must be one statement"),
        (
            "with gone as (delete from orders returning *) select * from gone",
            "refused: fetch.sql only reads (DECLARE CURSOR must not contain data-modifying statements in WITH)",
        ),
        (
            "select * from orders for update",
            "refused: fetch.sql only reads (cannot execute SELECT FOR UPDATE in a read-only transaction)",
        ),
        ("select bump()", "refused: fetch.sql only reads (cannot execute UPDATE in a read-only transaction)"),
        (
            "select set_config('transaction_read_only', 'off', true)",
            "query failed: transaction read-write mode must be set before any query",
        ),
        (
            "select pg_read_file('/etc/passwd')",
            "refused by PostgreSQL: permission denied for function pg_read_file "
            "(the role fetch.sql connects as may not do this)",
        ),
        (
            "select lo_export(lo_from_bytea(0, 'x'), '{marker}')",
            "refused by PostgreSQL: permission denied for function lo_export "
            "(the role fetch.sql connects as may not do this)",
        ),
        (
            "select pg_ls_dir('.')",
            "refused by PostgreSQL: permission denied for function pg_ls_dir "
            "(the role fetch.sql connects as may not do this)",
        ),
    ],
    ids=[
        "insert",
        "update",
        "delete",
        "create-table",
        "drop-table",
        "copy-to-program",
        "copy-behind-a-comment",
        "two-statements",
        "copy-as-second-statement",
        "data-modifying-with",
        "for-update",
        "writing-function",
        "set-read-write",
        "pg_read_file",
        "lo_export",
        "pg_ls_dir",
    ],
)
def test_anything_but_reading_is_refused(run, warehouse, secret, tmp_path, query, error):
    marker = tmp_path / "ran"
    before = admin_rows(warehouse, "select count(*), sum(amount) from orders")
    result = run(pg_policy(sql(warehouse, query.format(marker=marker))))
    assert result.status == "FAILED"
    assert result.steps[0].error == error
    assert result.steps[0].attempts == 1  # refusals are not retried
    assert admin_rows(warehouse, "select count(*), sum(amount) from orders") == before
    assert admin_rows(warehouse, "select to_regclass('evil')") == [(None,)]
    assert not marker.exists()


ROLE_ADVICE = (
    "which can reach the server's files or run programs on it even in a read-only transaction: "
    "connect as a role that may only read your tables (CREATE ROLE reporter LOGIN PASSWORD '...'; "
    "GRANT SELECT ON ... TO reporter): see docs/steps/fetch.md"
)


@pytest.mark.parametrize(
    ("user", "query", "error"),
    [
        (
            pg.USER,
            "select pg_read_file('/etc/passwd')",
            f"refused: the PostgreSQL role '{pg.USER}' is a superuser, {ROLE_ADVICE}",
        ),
        (pg.USER, "select 1", f"refused: the PostgreSQL role '{pg.USER}' is a superuser, {ROLE_ADVICE}"),
        (
            FILER,
            "select 1",
            f"refused: the PostgreSQL role '{FILER}' is a member of pg_read_server_files, {ROLE_ADVICE}",
        ),
    ],
    ids=["superuser-pg_read_file", "superuser-select", "pg_read_server_files"],
)
def test_a_role_that_reaches_the_servers_files_is_refused(run, warehouse, secret, user, query, error):
    # a read-only transaction does not stop a superuser's pg_read_file, lo_import or COPY TO PROGRAM
    result = run(pg_policy(sql(warehouse, query, user=user)))
    assert result.status == "FAILED"
    assert result.steps[0].error == error
    assert result.steps[0].attempts == 1


def test_a_host_off_the_allow_list_is_refused_before_connecting(run, warehouse, secret):
    step = sql(warehouse, "select 1")
    step["params"]["url"] = {"template": url_of(warehouse).replace("127.0.0.1", "{{ params.host }}")}
    result = run(policy(step, params={"host": {"type": "string", "default": "localhost"}}))
    assert result.steps[0].error == (
        "host 'localhost' is not on the allow-list (allowed: none): "
        "add it to the policy's allowed_hosts, or to allowed_hosts under [fetch] in engine.toml"
    )


def test_the_engines_own_database_is_never_read(run, warehouse, secret, monkeypatch):
    own = f"postgresql+psycopg://{pg.USER}:pw@127.0.0.1:{warehouse['port']}/{warehouse['name']}?sslmode=disable"
    monkeypatch.setenv("ENGINE_DB_URL", own)
    why = f"{url_of(warehouse)} is the engine's own database (ENGINE_DB_URL), which fetch steps never read"
    assert problems(sql(warehouse, "select 1")) == [("/steps/0/params/url", why, "copy the data elsewhere")]
    step = sql(warehouse, "select 1")
    step["params"]["url"] = {"template": url_of(warehouse)}  # checked when the step runs
    result = run(pg_policy(step))
    assert result.steps[0].error == f"params.url: {why}: copy the data elsewhere"


# -- validation ---------------------------------------------------------------------------------


def problems(step: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    with pytest.raises(PolicyError) as caught:
        validate_document(pg_policy(step))
    return [(p.pointer, p.message, p.hint) for p in caught.value.problems]


URL_HINT = "write it as postgresql+psycopg://user@host:5432/database (a SQLite file goes in params.database)"
PASSWORD_HINT = 'name it as a secret read from the environment: {"secret": "WAREHOUSE_PASSWORD"}'


@pytest.mark.parametrize(
    ("params", "found"),
    [
        (
            {"url": "mysql://me@127.0.0.1/shop"},
            [("/url", "the url's scheme 'mysql' is not postgresql or postgresql+psycopg", URL_HINT)],
        ),
        (
            {"url": "postgresql+psycopg://me@127.0.0.1:5432"},
            [("/url", "the url names no database: end it with /database", URL_HINT)],
        ),
        (
            {"url": "postgresql://me:hunter22@127.0.0.1/shop"},
            [("/url", "the url holds a password, which would be stored with every run", PASSWORD_HINT)],
        ),
        (
            {"url": "postgresql://me@127.0.0.1/shop?host=/tmp"},
            [("/url", "url option 'host' is not supported (only: sslmode)", URL_HINT)],
        ),
        (
            {"url": "postgresql://me@127.0.0.1/shop?sslmode=maybe"},
            [
                (
                    "/url",
                    "sslmode 'maybe' is not one of disable, allow, prefer, require, verify-ca, verify-full",
                    URL_HINT,
                )
            ],
        ),
        (
            {"url": "postgresql://me@db.example.com/shop"},
            [
                (
                    "/url",
                    "host 'db.example.com' is not on the allow-list (allowed: 127.0.0.1)",
                    "add it to the policy's allowed_hosts, or to allowed_hosts under [fetch] in engine.toml",
                )
            ],
        ),
        (
            {"url": "postgresql://me@127.0.0.1/shop", "password": "hunter22"},
            [("/password", "a password written into the policy would be stored with every run", PASSWORD_HINT)],
        ),
        (
            {"url": "postgresql://me@127.0.0.1/shop", "database": "shop.db"},
            [("", "set exactly one of database (a SQLite file) or url (a PostgreSQL server)", None)],
        ),
    ],
    ids=["scheme", "no-database", "password-in-url", "option", "sslmode", "host", "literal-password", "both-sources"],
)
def test_validate_reports_a_bad_url_at_its_pointer(params, found):
    step = {"id": "q", "type": "fetch.sql", "params": {"query": "select 1", **params}}
    assert problems(step) == [(f"/steps/0/params{pointer}", message, hint) for pointer, message, hint in found]


# -- incremental loading and dry runs -----------------------------------------------------------


@pytest.fixture
def events(warehouse: dict[str, Any]) -> Iterator[None]:
    with psycopg.connect(warehouse["admin"], autocommit=True) as admin:
        admin.execute("create table events (id int, at timestamptz not null)")
        admin.execute(
            "insert into events select i, timestamptz '2026-11-01 00:00:00+00' + i * interval '1 hour' "
            "from generate_series(1, 5) i"
        )
        admin.execute(f"grant select on events to {READER}")
    yield
    with psycopg.connect(warehouse["admin"], autocommit=True) as admin:
        admin.execute("drop table events")


def add_events(warehouse: dict[str, Any], ids: list[int]) -> None:
    with psycopg.connect(warehouse["admin"], autocommit=True) as admin:
        for i in ids:
            admin.execute(
                "insert into events values (%s, timestamptz '2026-11-01 00:00:00+00' + %s * interval '1 hour')", (i, i)
            )


def incremental(warehouse: dict[str, Any], gate_ok: bool = True) -> dict[str, Any]:
    step = sql(
        warehouse,
        "select id, at from events where at > :cursor order by at",
        incremental={"cursor_field": "at", "initial_value": "1970-01-01T00:00:00+00:00"},
    )
    gate = {"id": "gate", "type": "core.value" if gate_ok else "test.fail", "params": {}, "depends_on": ["q"]}
    return pg_policy(step, gate)


def committed_cursor(state_dir: Path) -> list[Any]:
    rows = pg.sql(state_dir, "select value_json from pipeline_state where step_id = 'q' and key = 'cursor'")
    return [json.loads(r[0]) for r in rows]


def test_incremental_reads_only_new_rows_and_advances_on_success(run, store, state_dir, warehouse, events, secret):
    first = run(incremental(warehouse))
    assert first.status == "SUCCESS", first.steps[0].error
    assert output(store, first.run_id)["data"]["id"].tolist() == [1, 2, 3, 4, 5]
    assert committed_cursor(state_dir) == ["2026-11-01T05:00:00+00:00"]  # a timestamptz, kept as ISO text

    add_events(warehouse, [6, 7])
    failed = run(incremental(warehouse, gate_ok=False))
    assert failed.status == "FAILED"
    assert output(store, failed.run_id)["data"]["id"].tolist() == [6, 7]
    assert committed_cursor(state_dir) == ["2026-11-01T05:00:00+00:00"]  # read, not delivered: kept

    again = run(incremental(warehouse))
    out = output(store, again.run_id)
    assert out["data"]["id"].tolist() == [6, 7]
    assert (out["cursor"], out["next_cursor"]) == ("2026-11-01T05:00:00+00:00", "2026-11-01T07:00:00+00:00")
    assert committed_cursor(state_dir) == ["2026-11-01T07:00:00+00:00"]
    assert output(store, run(incremental(warehouse)).run_id)["data"].empty


def test_a_dry_run_reads_but_does_not_advance_the_cursor(run, store, state_dir, warehouse, events, secret):
    result = run(incremental(warehouse), dry_run=True)
    assert result.status == "SUCCESS", result.steps[0].error
    assert output(store, result.run_id)["data"]["id"].tolist() == [1, 2, 3, 4, 5]
    assert committed_cursor(state_dir) == []


# -- the password -------------------------------------------------------------------------------


def test_a_wrong_password_is_refused_by_the_server(run, warehouse, monkeypatch):
    monkeypatch.setenv(SECRET, "not-the-password")
    result = run(pg_policy(sql(warehouse, "select 1")))
    assert result.steps[0].error == (
        f'cannot connect to {url_of(warehouse)}: connection failed: connection to server at "127.0.0.1", '
        f'port {warehouse["port"]} failed: FATAL: password authentication failed for user "{READER}"'
    )
    assert result.steps[0].attempts == 1  # not retried


def test_the_password_is_never_written(cli, write_policy, state_dir, warehouse):
    """Through the real CLI: its output, engine.db, the artifacts and engine.log hold no form of it."""
    doc = pg_policy(
        sql(warehouse, "select id, region from orders order by id limit 3"),
        {**sql(warehouse, "select nope from orders"), "id": "bad"},
    )
    done = cli("run", str(write_policy(doc)), env={SECRET: PASSWORD})
    assert done.returncode == 1, done.stderr
    assert 'query failed: column "nope" does not exist' in done.stdout + done.stderr
    forms = [PASSWORD, quote(PASSWORD, safe=""), base64.b64encode(PASSWORD.encode()).decode()]
    written = [path for path in state_dir.rglob("*") if path.is_file()]
    assert any(path.name == "engine.db" for path in written) and any(path.name == "engine.log" for path in written)
    for text in [done.stdout, done.stderr, *(path.read_bytes().decode("latin-1") for path in written)]:
        for form in forms:
            assert form not in text
