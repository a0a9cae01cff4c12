"""Run-history retention: which runs ``engine prune`` (and ``engine serve`` after each run) deletes.

Settings come from the policy's ``retention`` section, field by field over the engine
configuration's ``[retention]`` section (``days``, ``keep_latest_n_runs``). A run is deleted
when it is older than ``days`` (by ``started_at``) and is not among the policy's latest
``keep_latest_n_runs`` runs; a RUNNING run is never deleted. Deleting a run deletes its step and
attempt records, its preview folder and the artifact files no remaining run references. The
policy's settings are read from the snapshot stored with its newest run, so pruning needs no
policy files. Candidates are taken oldest first, which makes the result deterministic.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .config import EngineConfig
from .errors import ConfigError
from .policy import Retention
from .store import Store

_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class PruneResult:
    runs: list[dict[str, Any]] = field(default_factory=list)  # {run_id, policy_id, status, started_at}
    artifacts: list[str] = field(default_factory=list)  # SHA-256 of each deleted file
    previews: list[str] = field(default_factory=list)

    def to_dict(self, dry_run: bool) -> dict[str, Any]:
        return {"dry_run": dry_run, "runs": self.runs, "artifacts": self.artifacts, "previews": self.previews}


def global_settings(config: EngineConfig) -> Retention:
    try:
        return Retention.model_validate(config.section("retention"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{config.where('retention')}: {where}: {first['msg']}") from None


def effective(policy: Retention | None, defaults: Retention) -> Retention:
    """The policy's fields where it sets them, the configuration's otherwise."""
    merged = defaults.model_dump()
    if policy is not None:
        merged.update({name: getattr(policy, name) for name in policy.model_fields_set})
    return Retention(**merged)


def select(runs: list[dict[str, Any]], settings: Retention, now_utc: dt.datetime) -> list[dict[str, Any]]:
    """The runs (one policy's, any order) that retention deletes, oldest first. Pure."""
    if settings.days is None and settings.keep_latest_n_runs is None:
        return []
    ordered = sorted(runs, key=lambda r: (r["started_at"], r["id"]))
    keep = settings.keep_latest_n_runs or 0
    candidates = ordered[: max(len(ordered) - keep, 0)]
    cutoff = (now_utc - dt.timedelta(days=settings.days)).isoformat() if settings.days is not None else None
    return [r for r in candidates if r["status"] != "RUNNING" and (cutoff is None or r["started_at"] < cutoff)]


def prune(
    store: Store,
    *,
    config: EngineConfig,
    now_utc: dt.datetime,
    policy_id: str | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Apply retention to every policy (or one); with ``dry_run``, only say what would go."""
    defaults = global_settings(config)
    everything = store.list_runs(policy_id=policy_id, limit=None)
    by_policy: dict[str, list[dict[str, Any]]] = {}
    for row in everything:
        by_policy.setdefault(row["policy_id"], []).append(row)
    doomed: list[dict[str, Any]] = []
    for pid in sorted(by_policy):
        rows = by_policy[pid]
        newest = max(rows, key=lambda r: (r["started_at"], r["id"]))
        doomed += select(rows, effective(_policy_retention(newest), defaults), now_utc)
    doomed.sort(key=lambda r: (r["started_at"], r["id"]))
    result = PruneResult(
        runs=[
            {"run_id": r["id"], "policy_id": r["policy_id"], "status": r["status"], "started_at": r["started_at"]}
            for r in doomed
        ]
    )
    ids = [r["id"] for r in doomed]
    if not ids:
        return result
    gone = _artifact_hashes(store.output_texts(run_ids=ids)) - _artifact_hashes(store.output_texts(exclude=ids))
    artifacts = store.artifacts()
    result.artifacts = sorted(sha for sha in gone if artifacts.path_for(sha).exists())
    previews = [Path(r["preview_dir"]).parent for r in doomed if r.get("preview_dir")]
    result.previews = [str(p) for p in previews if p.exists()]
    if dry_run:
        return result
    store.delete_runs(ids)
    for sha in result.artifacts:
        artifacts.path_for(sha).unlink(missing_ok=True)
    for folder in result.previews:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _policy_retention(row: dict[str, Any]) -> Retention | None:
    try:
        section = json.loads(row["policy_json"]).get("retention")
        return Retention.model_validate(section) if section is not None else None
    except (ValueError, ValidationError):
        return None


def _artifact_hashes(texts: list[str]) -> set[str]:
    """Every artifact SHA-256 referenced in stored outputs: ``$frame``/``$bytes`` markers and file refs."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("$frame", "$bytes", "sha256") and isinstance(item, str) and _SHA.match(item):
                    found.add(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for text in texts:
        walk(json.loads(text))
    return found
