"""Load the policy files of some folders: validate each file, find ids claimed by more than one.

:func:`load_folder` is the one place that turns folders into policies to run; ``engine serve``,
``engine due`` and ``engine schedule`` all call it, and ``engine validate FOLDER`` can print its
result. The rules:

- a folder's ``*.json`` files count (not sub-folders), in path order, folders in the order given;
  a file reached twice (the same folder given twice) counts once;
- a file that fails validation never runs; it is listed with its problems;
- a policy id claimed by two or more files is a problem for **every** one of them, and **none** of
  them runs until only one file claims it. An invalid file claims the ``"id"`` written in its JSON
  (when the file parses to an object with a string ``id``): a broken copy is still a second
  definition of the policy, and running the other one could be running the wrong one.

Example::

    scan = load_folder([Path("policies")], EngineConfig.load())
    for policy_id, loaded in scan.policies.items():
        ...  # loaded.valid is the ValidPolicy to run
    for path, problems in scan.problems().items():
        print(path, [problem_text(p) for p in problems])

Nothing here logs or touches the database: callers decide what to say about a scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import EngineConfig
from .errors import PolicyError, Problem
from .validate import ValidPolicy, validate_file

__all__ = ["DuplicateId", "FolderScan", "PolicyFile", "load_folder", "problem_text"]


@dataclass(frozen=True)
class PolicyFile:
    """One ``*.json`` file of a folder, as it was read.

    ``valid`` is the version to run: the file's own when it is valid; after an invalid edit under
    ``previous`` (``engine serve``), the last valid version, still running; otherwise ``None``.
    ``problems`` says why the file *as it is now* is invalid (empty when valid). ``raw_id`` is
    the ``"id"`` written in the file, read even when the file is invalid.
    """

    path: Path
    stamp: tuple[int, int]  # (mtime_ns, size) of the version read
    valid: ValidPolicy | None
    problems: tuple[Problem, ...] = ()
    raw_id: str | None = None

    @property
    def kept(self) -> bool:
        """The file is invalid now, and its last valid version is kept running."""
        return self.valid is not None and bool(self.problems)

    @property
    def ids(self) -> frozenset[str]:
        """The policy ids this file claims: the running version's and the one written in it."""
        claimed = {self.raw_id} if self.raw_id is not None else set()
        if self.valid is not None:
            claimed.add(self.valid.id)
        return frozenset(claimed)


@dataclass(frozen=True)
class DuplicateId:
    """A policy id claimed by several files (every one of them, in scan order)."""

    policy_id: str
    paths: tuple[Path, ...]

    @property
    def problem(self) -> Problem:
        files = ", ".join(str(p) for p in self.paths)
        return Problem(
            "/id",
            f"policy id '{self.policy_id}' is used by {len(self.paths)} files: {files};"
            " none of them runs until only one has it",
            hint="give each policy its own id, or remove the copies you do not want",
        )


@dataclass(frozen=True)
class FolderScan:
    """What :func:`load_folder` found.

    - ``files``: every ``*.json`` file, in scan order;
    - ``policies``: policy id -> the file to run, for ids claimed by exactly one file that has a
      valid version (``valid`` is never ``None`` here);
    - ``duplicates``: policy id -> :class:`DuplicateId`, for ids claimed by two or more files.
    """

    folders: tuple[Path, ...]
    files: dict[Path, PolicyFile]
    policies: dict[str, PolicyFile]
    duplicates: dict[str, DuplicateId]

    @property
    def invalid(self) -> list[PolicyFile]:
        """The files that fail validation as they are now, in scan order."""
        return [f for f in self.files.values() if f.problems]

    @property
    def ok(self) -> bool:
        """No file is invalid and no id is claimed twice."""
        return not self.duplicates and not self.invalid

    def shared_with(self, path: Path) -> list[Path]:
        """Every file that claims one of the ids this file claims, itself included (scan order)."""
        ids = self.files[path].ids
        return [p for p, f in self.files.items() if f.ids & ids]

    def problems(self) -> dict[Path, list[Problem]]:
        """Every file with a problem -> its problems: validation problems first, then one per
        duplicate id it claims. In scan order; files without problems are left out."""
        out: dict[Path, list[Problem]] = {}
        for path, found in self.files.items():
            problems = list(found.problems)
            problems += [self.duplicates[i].problem for i in sorted(found.ids) if i in self.duplicates]
            if problems:
                out[path] = problems
        return out


def problem_text(problem: Problem) -> str:
    """``/schedule/cron: message``: one problem on one line, as logs and ``--json`` show it."""
    return f"{problem.pointer or '/'}: {problem.message}"


def load_folder(
    folders: Iterable[Path],
    config: EngineConfig | None = None,
    previous: FolderScan | None = None,
) -> FolderScan:
    """Scan ``folders`` for ``*.json`` policy files; validate each; find ids claimed more than once.

    ``config`` is the engine configuration step checks read (``None``: loaded when needed).
    With ``previous`` (the scan before, as ``engine serve`` does every second), a file whose
    modification time and size did not change is not read again (its :class:`PolicyFile` is
    reused, the same object), and an invalid edit of a file that was valid keeps the last valid
    version in ``valid``. A file that cannot be read is left out until it can be.
    """
    folders = tuple(folders)
    files: dict[Path, PolicyFile] = {}
    seen: set[Path] = set()
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                stat = path.stat()
            except OSError:  # removed between the listing and now
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            before = previous.files.get(path) if previous is not None else None
            if before is not None and before.stamp == stamp:
                files[path] = before
            else:
                files[path] = _read(path, stamp, config, before)
    claims: dict[str, list[Path]] = {}
    for path, found in files.items():
        for policy_id in found.ids:
            claims.setdefault(policy_id, []).append(path)
    duplicates = {i: DuplicateId(i, tuple(paths)) for i, paths in sorted(claims.items()) if len(paths) > 1}
    policies: dict[str, PolicyFile] = {}
    for found in files.values():
        if found.valid is not None and found.valid.id not in duplicates:
            policies[found.valid.id] = found
    return FolderScan(folders, files, policies, duplicates)


def _read(path: Path, stamp: tuple[int, int], config: EngineConfig | None, before: PolicyFile | None) -> PolicyFile:
    try:
        valid = validate_file(path, config)
    except PolicyError as exc:
        kept = before.valid if before is not None else None
        return PolicyFile(path, stamp, kept, tuple(exc.problems), _raw_id(path))
    return PolicyFile(path, stamp, valid, (), valid.id)


def _raw_id(path: Path) -> str | None:
    """The ``"id"`` written in an invalid file, if it has one: it still names a policy."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    policy_id = doc.get("id") if isinstance(doc, dict) else None
    return policy_id if isinstance(policy_id, str) else None
