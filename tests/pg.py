"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` package, never a download.

:func:`start` finds ``initdb``/``pg_ctl`` (PATH, else ``/usr/lib/postgresql/<version>/bin``,
version 15 or newer), makes a cluster in a temporary folder (as the ``postgres`` user when the
tests run as root: initdb refuses root), and starts it on a free port of 127.0.0.1 with
durability off (``fsync``, ``synchronous_commit``, ``full_page_writes``: the data is thrown
away). :meth:`PostgresServer.create_database` makes a database per test
(a copy of one the engine migrated once, or empty);
:meth:`PostgresServer.stop` stops the server and removes the folder (the session fixture calls it,
and ``atexit`` does too if the session dies on the way).

:func:`sql` and :func:`execute` read and write a test's state database with a plain DBAPI
connection of their own, as another process would: the PostgreSQL database of ``ENGINE_DB_URL``
when the test runs on PostgreSQL (the ``db_url`` fixture sets it), else ``engine.db`` in the state
directory. Queries use ``?`` placeholders (turned into ``%s`` for psycopg).

When no server can be started, :func:`start` raises :class:`Unavailable` with the reason, which
the fixtures turn into a skip of the PostgreSQL parameter.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_VERSION = 15
USER = "engine"  # the cluster's superuser (trust authentication on 127.0.0.1 only)


class Unavailable(RuntimeError):
    """No PostgreSQL server could be started here (the message says why)."""


def postgres_url() -> str | None:
    """The test's PostgreSQL database as a libpq URL, or None (the test runs on SQLite)."""
    url = os.environ.get("ENGINE_DB_URL") or ""
    return url.replace("postgresql+psycopg://", "postgresql://", 1) if url.startswith("postgresql") else None


@contextmanager
def connect(state_dir: Path) -> Iterator[Any]:
    """A DBAPI connection to the state database (see the module docstring); commits on success."""
    url = postgres_url()
    if url is None:
        with closing(sqlite3.connect(state_dir / "engine.db", timeout=10)) as conn, conn:
            yield conn
        return
    import psycopg

    with psycopg.connect(url) as conn:  # commits at the end of the block, rolls back on an error
        yield conn


def _placeholders(conn: Any, query: str) -> str:
    return query if isinstance(conn, sqlite3.Connection) else query.replace("?", "%s")


def sql(state_dir: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of ``query``, as tuples (booleans: 0/1 on SQLite, False/True on PostgreSQL)."""
    with connect(state_dir) as conn:
        return [tuple(row) for row in conn.execute(_placeholders(conn, query), args).fetchall()]


def execute(state_dir: Path, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
    """Run statements (SQL, or (SQL, arguments)) in one transaction."""
    with connect(state_dir) as conn:
        for statement in statements:
            query, args = (statement, ()) if isinstance(statement, str) else statement
            conn.execute(_placeholders(conn, query), args)


def find_bin() -> Path:
    """The folder of ``initdb`` and ``pg_ctl`` of PostgreSQL 15 or newer."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(re.sub(r"\D", "", p) or 0))
    candidates += [Path(p) for p in reversed(versions)]
    for folder in candidates:
        initdb = folder / "initdb"
        if not (initdb.is_file() and (folder / "pg_ctl").is_file()):
            continue
        out = subprocess.run([str(initdb), "--version"], capture_output=True, text=True).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        if match and int(match.group(1)) >= MIN_VERSION:
            return folder
    raise Unavailable(
        f"no PostgreSQL {MIN_VERSION}+ initdb/pg_ctl (Debian's 'postgresql' package: scripts/setup installs it as root)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bin: Path
    folder: Path
    port: int
    as_user: list[str]  # the command prefix that runs as the cluster's owner ([] when not root)
    _count: int = 0
    _template: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, migrated: bool = True) -> str:
        """A new database, with the engine's tables (a copy of a database the engine migrated
        once: 50 ms instead of the migrations' 200 ms), or empty; returns its SQLAlchemy URL."""
        with self._lock:
            self._count += 1
            name = f"t_{self._count}"
            template = "template0"
            if migrated:
                if not self._template:
                    self._make_template()
                template = self._template
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE {template} STRATEGY FILE_COPY')
        return self.url(name)

    def _make_template(self) -> None:
        from engine.store import Store

        self._admin("CREATE DATABASE engine_template TEMPLATE template0")
        with tempfile.TemporaryDirectory() as state_dir:
            Store(Path(state_dir), self.url("engine_template")).close()
        self._template = "engine_template"

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`, closing what a test left connected."""
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start() -> PostgresServer:
    """Make and start a throwaway cluster (see the module docstring); raises :class:`Unavailable`."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"psycopg is not installed ({exc})") from exc
    bin_ = find_bin()
    folder = Path(tempfile.mkdtemp(prefix="engine-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable("running as root and there is no 'postgres' user to own the cluster") from exc
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable("running as root without runuser to start PostgreSQL as the postgres user")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        os.chmod(folder, 0o700)
        as_user = [runuser, "-u", "postgres", "--"]
    server = PostgresServer(bin_, folder, 0, as_user)

    def run(*argv: str, timeout: float = 120) -> None:
        done = subprocess.run([*as_user, *argv], capture_output=True, text=True, timeout=timeout, cwd=folder)
        if done.returncode != 0:
            raise Unavailable(f"{Path(argv[0]).name} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")

    try:
        run(
            str(bin_ / "initdb"),
            "-D",
            str(server.data),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        for _ in range(5):  # the port may be taken between the probe and the start: try another
            server.port = _free_port()
            options = (
                f"-p {server.port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
            )
            try:
                run(
                    str(bin_ / "pg_ctl"),
                    "-D",
                    str(server.data),
                    "-o",
                    options,
                    "-l",
                    str(folder / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                break
            except Unavailable:
                log = folder / "server.log"
                if "already in use" not in (log.read_text(errors="replace") if log.exists() else ""):
                    raise
        else:
            raise Unavailable("no free port for PostgreSQL after 5 tries")
    except (Unavailable, OSError, subprocess.TimeoutExpired) as exc:
        server.stop()
        raise exc if isinstance(exc, Unavailable) else Unavailable(str(exc)) from exc
    atexit.register(server.stop)
    return server
