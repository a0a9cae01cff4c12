"""``fetch.sql`` against a PostgreSQL server (``url: postgresql+psycopg://user@host:5432/db``).

The server enforces read-only, not the step: the query runs in a ``READ ONLY`` transaction with
``statement_timeout`` set from ``timeout_s``, through a server-side cursor (``DECLARE ... CURSOR
FOR``, which takes one SELECT, VALUES or TABLE statement, sent with the extended protocol, which
takes one statement), fetched in batches so that ``max_rows`` and ``max_bytes`` trip before a
huge result reaches memory.

A read-only transaction does not stop everything: a superuser still reads the server's files
(``pg_read_file``, ``lo_import``) and runs programs (``COPY ... TO PROGRAM``). So
the step refuses to run as a role that is a superuser or a member (direct or not) of
``pg_read_server_files``, ``pg_write_server_files`` or ``pg_execute_server_program``; any other
role gets PostgreSQL's own "permission denied" for those. The documented advice is a role that
may only SELECT the tables a report reads.

The password comes as a secret param, never in the URL; the URL a step reports has none. The
engine's own database (``ENGINE_DB_URL``) is never read, as the state directory is never read.
psycopg is imported only when a query runs.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from engine import CheckContext, Problem, StepError, is_expression, register_secret

from . import hosts, reach
from .sql_rows import collect_rows, stopped_message

if TYPE_CHECKING:
    from .sql import FetchSql

SCHEMES = ("postgresql", "postgresql+psycopg")
URL_OPTIONS = ("sslmode",)  # others (host=, options=, passfile=) could lead the connection elsewhere
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
CONTENT_TYPE = "application/x-postgresql"
URL_HINT = "write it as postgresql+psycopg://user@host:5432/database (a SQLite file goes in params.database)"
PASSWORD_HINT = 'name it as a secret read from the environment: {"secret": "WAREHOUSE_PASSWORD"}'
READ_STATEMENTS = ("select", "with", "values", "table")
SERVER_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
ROLE_ADVICE = (
    "connect as a role that may only read your tables (CREATE ROLE reporter LOGIN PASSWORD '...'; "
    "GRANT SELECT ON ... TO reporter): see docs/steps/fetch.md"
)
_CURSOR = "fetch_sql"


class UrlError(ValueError):
    def __init__(self, message: str, hint: str = URL_HINT) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Server:
    """Where to connect: a parsed ``postgresql://`` URL (it never holds a password)."""

    scheme: str
    host: str
    port: int
    user: str | None
    dbname: str
    sslmode: str | None

    @property
    def url(self) -> str:
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        options = f"?sslmode={quote(self.sslmode, safe='')}" if self.sslmode else ""
        return f"{self.scheme}://{user}{host}:{self.port}/{quote(self.dbname, safe='')}{options}"


def parse_url(url: str) -> Server:
    """The server of a ``postgresql://`` URL; :class:`UrlError` says what is wrong (never quoting
    the URL, which might hold a password)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in SCHEMES:
        raise UrlError(f"the url's scheme {parts.scheme!r} is not postgresql or postgresql+psycopg")
    if parts.password is not None:
        raise UrlError("the url holds a password, which would be stored with every run", PASSWORD_HINT)
    if "," in parts.netloc:
        raise UrlError("the url names several hosts: fetch.sql connects to one")
    host = parts.hostname or ""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+|[0-9A-Fa-f:.]+", host):
        raise UrlError("the url names no host name" if not host else f"{host!r} is not a host name")
    try:
        port = parts.port or 5432
    except ValueError:
        raise UrlError("the url's port is not a number from 1 to 65535") from None
    dbname = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not dbname or "/" in dbname:
        raise UrlError("the url names no database: end it with /database", URL_HINT)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(options.keys() - set(URL_OPTIONS))
    if unknown:
        raise UrlError(f"url option {unknown[0]!r} is not supported (only: {', '.join(URL_OPTIONS)})")
    if options.get("sslmode", "prefer") not in SSL_MODES:
        raise UrlError(f"sslmode {options['sslmode']!r} is not one of {', '.join(SSL_MODES)}")
    user = unquote(parts.username) if parts.username else None
    return Server(parts.scheme.lower(), host.lower(), port, user, dbname, options.get("sslmode"))


def own_database(server: Server) -> bool:
    """Whether ``server`` is the engine's own state database (``ENGINE_DB_URL``: the same host, port
    and database name), which fetch steps never read, as they never read the state directory."""
    own = urlsplit(os.environ.get("ENGINE_DB_URL", ""))
    if not own.scheme.startswith("postgres") or not own.hostname:
        return False
    try:
        port = own.port or 5432
    except ValueError:
        return False
    return (own.hostname.lower(), port, unquote(own.path[1:])) == (server.host, server.port, server.dbname)


def own_database_message(server: Server) -> str:
    return f"{server.url} is the engine's own database (ENGINE_DB_URL), which fetch steps never read"


def check(params: dict[str, Any], where: CheckContext) -> list[Problem]:
    """Validation of a literal url (scheme, host on the allow-list, database) and of the password."""
    problems: list[Problem] = []
    if isinstance(params.get("password"), str):
        message = "a password written into the policy would be stored with every run"
        problems.append(Problem("/password", message, PASSWORD_HINT))
    url = params.get("url")
    if not isinstance(url, str) or is_expression(url) or "{{" in url:
        return problems  # a ref or template: checked when the step runs
    try:
        server = parse_url(url)
    except UrlError as exc:
        return [*problems, Problem("/url", str(exc), exc.hint)]
    patterns = hosts.allowed_patterns(where.sections, where.config)
    if not hosts.host_allowed(server.host, patterns):
        problems.append(Problem("/url", hosts.not_allowed_message(server.host, patterns), hosts.ALLOW_HINT))
    if own_database(server):
        problems.append(Problem("/url", own_database_message(server), reach.STATE_HINT))
    return problems


# -- the query text -------------------------------------------------------------------------------

_LEADING = re.compile(r"\A(?:\s+|--[^\n]*|/\*.*?\*/|\()*", re.S)
# what a :name inside must not be taken from: strings, quoted names, dollar quotes, comments, casts
_TOKENS = re.compile(
    r"""(?P<skip>[Ee]'(?:[^'\\]|\\.|'')*'
        | '(?:[^']|'')*'
        | "(?:[^"]|"")*"
        | \$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$
        | --[^\n]*
        | /\*.*?\*/
        | ::)
      | (?<![\w:\\]):(?P<name>[A-Za-z_]\w*)""",
    re.S | re.X,
)


def prepare(query: str) -> tuple[str, list[str]]:
    """The query in psycopg's placeholder style (``:name`` becomes ``%(name)s``, ``%`` doubled) and
    the names it binds; refuses (before connecting) what is not a SELECT, VALUES or TABLE."""
    first = re.split(r"[^A-Za-z]", _LEADING.sub("", query), maxsplit=1)[0].lower()
    if first not in READ_STATEMENTS:
        shown = first.upper() or repr(query.strip()[:20])
        raise StepError(
            f"refused: fetch.sql only reads: the query must be one SELECT (or WITH ... SELECT, VALUES, TABLE) "
            f"statement, not {shown}",
            retryable=False,
        )
    out: list[str] = []
    names: list[str] = []
    at = 0
    for token in _TOKENS.finditer(query):
        if token.group("name") is None:
            continue
        out.append(query[at : token.start()].replace("%", "%%"))
        out.append(f"%({token.group('name')})s")
        names.append(token.group("name"))
        at = token.end()
    out.append(query[at:].replace("%", "%%"))
    return "".join(out), names


# -- the query ------------------------------------------------------------------------------------


class Query:
    """One query in a worker thread that the step stops waiting for at ``timeout_s``.

    Made when the step runs: it checks the url against the host allow-list and the query text
    first, so that a refusal comes before the query is counted against a quota. ``result()``
    connects, runs and fetches; at the deadline it cancels the query on the server (which
    ``statement_timeout`` would stop anyway) and fails.
    """

    def __init__(self, params: FetchSql.Params, binds: dict[str, Any], allowed: list[str]) -> None:
        assert params.url is not None
        try:
            self.server = parse_url(params.url)
        except UrlError as exc:
            raise StepError(f"params.url: {exc}: {exc.hint}", retryable=False) from None
        if not hosts.host_allowed(self.server.host, allowed):
            message = hosts.not_allowed_message(self.server.host, allowed)
            raise StepError(f"{message}: {hosts.ALLOW_HINT}", retryable=False)
        if own_database(self.server):
            raise StepError(f"params.url: {own_database_message(self.server)}: {reach.STATE_HINT}", retryable=False)
        self.text, names = prepare(params.query)
        missing = [name for name in dict.fromkeys(names) if name not in binds]
        if missing:
            raise StepError(f"query failed: no value for :{missing[0]}: add it to params", retryable=False)
        self.binds = {name: binds[name] for name in names}
        if params.password:
            register_secret(params.password)  # masked in errors and logs, however it came
        self.params = params
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.conn: Any = None
        self.stopped = False
        self.outcome: tuple[list[str], list[Any]] | BaseException | None = None

    def result(self) -> tuple[list[str], list[Any]]:
        timeout_s = self.params.timeout_s
        worker = threading.Thread(target=self._work, name=f"fetch.sql {self.server.host}", daemon=True)
        worker.start()
        if not self.done.wait(timeout_s):
            with self.lock:
                self.stopped = True
                conn = self.conn
            if conn is not None:
                _cancel(conn)
            raise StepError(stopped_message(timeout_s), retryable=False)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        assert self.outcome is not None
        return self.outcome

    def _work(self) -> None:
        try:
            self.outcome = self._fetch()
        except BaseException as exc:  # handed to the waiting step, which raises it
            self.outcome = exc
        finally:
            with self.lock:
                conn, self.conn = self.conn, None
            if conn is not None:
                conn.close()  # never committed: the transaction is rolled back
            self.done.set()

    def _fetch(self) -> tuple[list[str], list[Any]]:
        import psycopg

        params, server = self.params, self.server
        try:
            conn = psycopg.connect(
                host=server.host,
                port=server.port,
                dbname=server.dbname,
                user=server.user,
                password=params.password,
                sslmode=server.sslmode,
                connect_timeout=max(2, math.ceil(params.timeout_s)),
                application_name="policy-engine fetch.sql",
            )
        except psycopg.Error as exc:
            auth = (exc.sqlstate or "").startswith("28")  # invalid authorization or password
            text = _first_line(exc)
            raise StepError(f"cannot connect to {server.url}: {text}", retryable=not auth) from None
        with self.lock:
            self.conn = conn
            if self.stopped:
                return [], []
        try:
            limit_ms = max(1, math.ceil(params.timeout_s * 1000))
            # psycopg sends BEGIN first: these are the transaction's first statements (one round trip)
            conn.execute(
                "SET TRANSACTION READ ONLY; "
                f"SET LOCAL statement_timeout = {limit_ms}; "
                f"SET LOCAL idle_in_transaction_session_timeout = {limit_ms}"
            )
            _refuse_server_roles(conn)
            with conn.cursor(name=_CURSOR, scrollable=False) as cursor:
                cursor.execute(self.text, self.binds)  # DECLARE ... CURSOR FOR, extended protocol
                columns = [column.name for column in cursor.description or ()]

                def fetch(n: int) -> list[Any]:
                    return [] if self.stopped else cursor.fetchmany(n)  # FETCH FORWARD n

                rows = collect_rows(fetch, params.max_rows, params.max_bytes)
        except psycopg.Error as exc:
            raise _explain(exc, params.timeout_s) from None
        return columns, rows


def _refuse_server_roles(conn: Any) -> None:
    """Refuse a role that can reach the server's files or programs (see the module docstring)."""
    found = conn.execute(
        "SELECT r.rolname, r.rolsuper, r.rolname = current_user FROM pg_roles r "
        "WHERE pg_has_role(current_user, r.oid, 'MEMBER') AND (r.rolsuper OR r.rolname = ANY(%s)) "
        "ORDER BY r.rolsuper DESC, r.rolname",
        [list(SERVER_ROLES)],
    ).fetchall()
    if not found:
        return
    user = conn.execute("SELECT current_user").fetchone()[0]
    reasons = _role_reasons(found)
    raise StepError(
        f"refused: the PostgreSQL role {user!r} {reasons}, which can reach the server's files or run programs "
        f"on it even in a read-only transaction: {ROLE_ADVICE}",
        retryable=False,
    )


def _role_reasons(found: Iterable[tuple[str, bool, bool]]) -> str:
    rows = list(found)
    if any(is_super for _name, is_super, _own in rows):
        supers = [(name, own) for name, is_super, own in rows if is_super]
        if any(own for _name, own in supers):
            return "is a superuser"
        return "is a member of the superuser role " + ", ".join(repr(name) for name, _own in supers)
    return "is a member of " + ", ".join(name for name, _s, _o in rows)


def _cancel(conn: Any) -> None:
    try:
        conn.cancel_safe(timeout=2)
    except Exception:  # the server stops the statement at statement_timeout anyway
        pass


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__


def _explain(exc: Any, timeout_s: float) -> StepError:
    """A psycopg error as the step's error: what was refused by whom, or why the query failed."""
    state = exc.sqlstate or ""
    text = _first_line(exc)
    if state == "57014":  # query_canceled: statement_timeout
        message = stopped_message(timeout_s)
    elif state == "25006" or "data-modifying" in text:  # read_only_sql_transaction
        message = f"refused: fetch.sql only reads ({text})"
    elif state == "42501":  # insufficient_privilege
        message = f"refused by PostgreSQL: {text} (the role fetch.sql connects as may not do this)"
    elif "multiple commands" in text:
        message = "the query must be one statement"
    else:
        message = f"query failed: {text}"
    return StepError(message, retryable=False)
