"""The deliveries journal: what the server accepted, on disk before the database knows it.

``send.email`` records an accepted message in the ``deliveries`` table of the shared state
database. That write can wait on a lock another process holds, and the process can be killed
while it waits: the message went out, and nothing would say so. So the acceptance is first
appended to ``STATE_DIR/deliveries.journal`` (one JSON line, flushed and fsynced, under an
exclusive ``flock``), and only then written to the table. Every send step of the state
directory resolves the journal when it starts: an entry whose rows are in the table is dropped,
one whose rows are not is written into the table and then dropped. Until then the entry itself
counts as ``sent`` for the idempotency check, so no resume sends the message again.

A line is small and the file holds only what the table does not know yet (usually nothing).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

NAME = "deliveries.journal"


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        """Add ``entry`` durably: when this returns, a crash cannot lose it."""
        line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._locked() as fh:
            end = fh.seek(0, os.SEEK_END)
            if end and os.pread(fh.fileno(), 1, end - 1) != b"\n":
                line = "\n" + line  # after a line a crash cut short: keep this one whole
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self._locked() as fh:
            return _parse(fh.read())

    def find(self, key: str) -> dict[str, Any] | None:
        """The first entry for dedup key ``key`` that accepted the message for someone."""
        return next((e for e in self.entries() if e.get("dedup_key") == key and e.get("sent")), None)

    def resolve(self, apply: Callable[[dict[str, Any]], None]) -> int:
        """Call ``apply`` on each entry (it writes the entry into the table, idempotently) and drop
        those it took; one that raises stays for the next time. Returns how many stay."""
        if not self.path.exists():
            return 0
        with self._locked() as fh:
            entries = _parse(fh.read())
            if not entries:
                return 0
            kept = []
            for entry in entries:
                try:
                    apply(entry)
                except Exception:  # the table is busy (or worse): the entry still holds the truth
                    kept.append(entry)
            if len(kept) < len(entries):
                fh.seek(0)
                fh.truncate()
                fh.write(b"".join(json.dumps(e, sort_keys=True).encode() + b"\n" for e in kept))
                fh.flush()
                os.fsync(fh.fileno())
            return len(kept)

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file is closed
            yield fh


def _parse(data: bytes) -> list[dict[str, Any]]:
    entries = []
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash before its fsync: that append never returned
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
