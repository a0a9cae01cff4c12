"""``engine serve`` and ``engine due``: run policies on their schedules, each slot at most once.

Our own asyncio loop rather than APScheduler (see docs/design.md): every decision is made from
the database and the wall clock, through the pure helpers in :mod:`engine.schedule`:

1. the newest slot recorded for a policy (``schedule_slots``) and the time now give the slots
   to run (:func:`engine.schedule.missed_slots`), so a restart, a second daemon or a wall-clock
   jump all see the same thing as downtime would;
2. a slot is claimed (:meth:`Store.claim_slot`) in one transaction before its run starts; a
   claim that finds another active run of the policy is recorded ``SKIPPED: overlap``;
3. at start-up, scheduled runs left behind by a dead process are resumed when every step that
   was cut short is free of side effects, and left FAILED for a person otherwise.

The policies come from :func:`engine.folders.load_folder`: an invalid file, or an id that two
files claim, runs nothing, and is logged once per version of the files (:func:`log_changes`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import logs
from .api import RunResult, new_run_id, resume_run, run_policy
from .config import EngineConfig
from .errors import ConfigError, EngineError, GovernanceError, NotApproved
from .folders import DuplicateId, FolderScan, PolicyFile, load_folder, problem_text
from .retention import prune
from .runner import Runner
from .schedule import missed_slots, next_fire, parse_slot, previous_fire, slot_key
from .states import RunState
from .store import INTERRUPTED, Store
from .validate import ValidPolicy


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TestClock:
    """A schedulers' clock for tests of whole processes: ``ENGINE_TEST_CLOCK=START@ANCHOR[xRATE]``
    reads as "at the Unix time ANCHOR it was START (ISO 8601), and time runs RATE times faster"
    (default 1). Processes given the same value share one faked clock. Runs, leases and logs
    keep real time: only what is due, and when, follows this clock."""

    __test__ = False  # not a pytest test class

    def __init__(self, text: str) -> None:
        try:
            start, _, rest = text.partition("@")
            anchor, _, rate = rest.partition("x")
            self.start = dt.datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(dt.UTC)
            self.anchor = float(anchor)
            self.rate = float(rate or 1)
        except ValueError:
            raise ConfigError(
                f"ENGINE_TEST_CLOCK={text!r}: write START@ANCHOR[xRATE], e.g. 2030-01-01T00:00:00Z@1767225600x10"
            ) from None
        if not self.rate > 0:
            raise ConfigError(f"ENGINE_TEST_CLOCK={text!r}: the rate must be above 0")

    def __call__(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(time.time() - self.anchor) * self.rate)


def clock_from_env() -> Callable[[], dt.datetime]:
    """The schedulers' clock: :class:`TestClock` when ``ENGINE_TEST_CLOCK`` is set, else real time."""
    text = os.environ.get("ENGINE_TEST_CLOCK")
    return TestClock(text) if text else utc_now


def log_changes(log: Any, before: FolderScan | None, after: FolderScan) -> None:
    """Log what changed from one scan of the folders to the next (everything, for the first).

    Each version of a file is logged once (loaded, or its problems), and each duplicate id once
    per change of the files that share it, so a daemon scanning every second does not repeat itself.
    """
    old_files = before.files if before is not None else {}
    for path, found in after.files.items():
        old = old_files.get(path)
        if old is found:  # unchanged since the last scan
            continue
        if found.problems:
            event = "schedule.invalid_edit" if found.kept else "schedule.invalid"
            action = "keeping the last valid version" if found.kept else "skipped"
            log.error(event, path=str(path), problems=[problem_text(p) for p in found.problems], action=action)
        else:
            assert found.valid is not None
            reloaded = old is not None and old.valid is not None
            log.info("schedule.loaded", path=str(path), policy_id=found.valid.id, reloaded=reloaded)
    for path in sorted(old_files.keys() - after.files.keys()):
        gone = old_files[path]
        log.info("schedule.removed", path=str(path), policy_id=gone.valid.id if gone.valid else gone.raw_id)
    old_duplicates = before.duplicates if before is not None else {}
    for policy_id, duplicate in after.duplicates.items():
        if _versions(after, duplicate) == _versions(before, old_duplicates.get(policy_id)):
            continue
        log.error(
            "schedule.duplicate_id",
            policy_id=policy_id,
            files=[str(p) for p in duplicate.paths],
            problem=problem_text(duplicate.problem),
            action="none of these files runs until only one has this id",
        )
    for policy_id in sorted(old_duplicates.keys() - after.duplicates.keys()):
        if policy_id in after.policies:
            log.info("schedule.duplicate_resolved", policy_id=policy_id, path=str(after.policies[policy_id].path))


def _versions(scan: FolderScan | None, duplicate: DuplicateId | None) -> list[tuple[Path, tuple[int, int]]] | None:
    if scan is None or duplicate is None:
        return None
    return [(p, scan.files[p].stamp) for p in duplicate.paths]


@dataclass
class SlotOutcome:
    policy_id: str
    scheduled_for: str
    status: str  # a run state, or SKIPPED
    run_id: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id,
            "scheduled_for": self.scheduled_for,
            "status": self.status,
            "run_id": self.run_id,
            "reason": self.reason,
        }


class Scheduler:
    """Runs the scheduled policies of some folders against one store."""

    def __init__(
        self,
        store: Store,
        folders: list[Path],
        config: EngineConfig,
        clock: Callable[[], dt.datetime] = utc_now,
        *,
        from_registry: bool = False,
        approval_default: bool = False,
    ) -> None:
        self.store = store
        # also run the scheduled policies created through the API (they live in the registry only)
        self.from_registry = from_registry
        self.approval_default = approval_default  # [governance] require_approval when unset
        self._registry_cache: dict[str, ValidPolicy] = {}
        self.config = config
        self.clock = clock
        self.rate = float(getattr(clock, "rate", 1.0))  # a test clock may run faster than real time
        self.log = logs.get_logger()
        self.folders = list(folders)
        self.scan: FolderScan | None = None  # the latest scan of the folders
        self.runners: dict[str, Runner] = {}
        self.tasks: dict[str, asyncio.Task[list[SlotOutcome]]] = {}
        self.planned: dict[str, dt.datetime] = {}  # policy id -> last slot its task will run
        self.stopping = False

    def load(self) -> dict[str, PolicyFile]:
        """Scan the folders again, log what changed since the last scan; return the policies to run."""
        scan = load_folder(self.folders, self.config, previous=self.scan)
        log_changes(self.log, self.scan, scan)
        self._record_versions(self.scan, scan)
        self.scan = scan
        if not self.from_registry:
            return scan.policies
        policies = dict(scan.policies)
        for policy_id, loaded in self._registry_policies().items():
            policies.setdefault(policy_id, loaded)
        return policies

    def _registry_policies(self) -> dict[str, PolicyFile]:
        """The latest version of each policy created through the API (not archived, not from a file)."""
        from .governance import registry
        from .governance.tables import policy_archive
        from .validate import validate_document

        with self.store.engine.connect() as conn:
            hidden = {r[0] for r in conn.execute(policy_archive.select().with_only_columns(policy_archive.c.policy_id))}
        found: dict[str, PolicyFile] = {}
        cache: dict[str, ValidPolicy] = {}
        for version in registry.latest_versions(self.store.engine):
            if version.policy_id in hidden or version.source.startswith("file:"):
                continue
            valid = self._registry_cache.get(version.hash)
            if valid is None:
                try:
                    valid = validate_document(version.document, None, self.config)
                except EngineError as exc:  # valid when recorded; an allow-list may have changed since
                    self.log.error(
                        "schedule.invalid", policy_id=version.policy_id, version=version.version, error=str(exc)
                    )
                    continue
            cache[version.hash] = valid
            found[version.policy_id] = PolicyFile(Path(f"registry:{version.policy_id}"), (version.version, 0), valid)
        self._registry_cache = cache
        return found

    def _record_versions(self, before: FolderScan | None, scan: FolderScan) -> None:
        """Record each new or edited valid file as a policy version at once, so that a person can
        review and approve it before its next slot (``engine policy show``, ``engine approve``)."""
        from .governance import current_actor, registry

        for found in scan.policies.values():
            earlier = before.files.get(found.path) if before is not None else None
            if found.valid is None or found.problems or (earlier is not None and earlier.stamp == found.stamp):
                continue
            try:
                source = f"file:{found.path.resolve()}"
                version = registry.record_version(
                    self.store.engine, found.valid.document, actor=current_actor(), source=source
                )
            except Exception as exc:  # a locked database: the run records it when it starts
                self.log.warning("schedule.version_not_recorded", path=str(found.path), error=str(exc))
                continue
            if version.new:  # in the audit log too (policy.version_added)
                self.log.debug("schedule.version_added", policy_id=version.policy_id, version=version.version)

    # -- start-up ---------------------------------------------------------------------------

    def recover(self, policy_ids: Iterable[str]) -> list[tuple[str, str, str]]:
        """Deal with claims of these policies whose process is gone (its lease expired, on any host,
        or its pid is dead on this one); return the (policy, slot, run) to resume.

        ``engine serve`` calls it at start and then every heartbeat (``ENGINE_HEARTBEAT_S``), so a
        slot another host left is taken up once its lease is over."""
        self.store.mark_interrupted()
        resumable = []
        wanted = set(policy_ids)
        for claim in self.store.list_slots(status="CLAIMED"):
            policy_id, slot, run_id = claim["policy_id"], claim["scheduled_for"], claim["run_id"]
            if policy_id not in wanted:
                continue  # another folder's policy: left to the scheduler that runs it
            if not self.store.slot_lease_expired(claim):
                continue  # a live process is on it
            run = self.store.get_run(run_id) if run_id else None
            if run is not None and run["status"] == RunState.RUNNING.value:
                continue  # resumed by hand, and that process's lease holds: it is not ours to take
            if not self.store.take_over_slot(claim):
                continue  # another recovering process took it first
            if run is None:
                self.store.release_slot(policy_id, slot)
                self.log.warning("schedule.claim_released", policy_id=policy_id, scheduled_for=slot)
            elif run["status"] != RunState.FAILED.value or run["error"] != INTERRUPTED:
                self.store.finish_slot(policy_id, slot, run["status"])
            else:
                cut = [s for s in self.store.get_steps(run_id) if s["error"] == INTERRUPTED]
                unsafe = [s["step_id"] for s in cut if s["side_effects"]]
                if unsafe:
                    reason = f"interrupted during {', '.join(unsafe)} (side effects): left FAILED for a person"
                    self.store.finish_slot(policy_id, slot, RunState.FAILED.value, reason)
                    self.log.error(
                        "schedule.interrupted",
                        policy_id=policy_id,
                        run_id=run_id,
                        scheduled_for=slot,
                        steps=unsafe,
                        action=f"check what the steps did, then: engine resume {run_id}",
                    )
                else:
                    resumable.append((policy_id, slot, run_id))
                    self.log.warning("schedule.interrupted", policy_id=policy_id, run_id=run_id, action="resume")
        return resumable

    # -- running one slot ---------------------------------------------------------------------

    async def run_slot(self, loaded: PolicyFile, slot: dt.datetime) -> SlotOutcome:
        """Claim ``slot`` and, if this process may, run it; record what became of it."""
        policy = loaded.valid.policy
        schedule = policy.schedule
        assert schedule is not None
        key = slot_key(slot)
        run_id = new_run_id()
        claim = self.store.claim_slot(policy.id, key, run_id)
        if claim is None:
            self.log.info("schedule.skipped", policy_id=policy.id, scheduled_for=key, reason="claimed elsewhere")
            return SlotOutcome(policy.id, key, "SKIPPED", reason="claimed elsewhere")
        if claim == "overlap":
            self.log.warning("schedule.skipped", policy_id=policy.id, scheduled_for=key, reason="overlap")
            return SlotOutcome(policy.id, key, "SKIPPED", reason="overlap")
        self.log.info("schedule.fire", policy_id=policy.id, scheduled_for=key, run_id=run_id)
        try:
            result = await run_policy(
                loaded.valid,
                store=self.store,
                params=schedule.params,
                trigger="schedule",
                scheduled_for=key,
                run_id=run_id,
                config=self.config,
                on_runner=lambda runner: self.runners.__setitem__(run_id, runner),
                approval_default=self.approval_default,
            )
        except GovernanceError as exc:  # refused before it started: the slot is skipped, never lost
            reason = "not approved" if isinstance(exc, NotApproved) else f"quota: {exc}"
            self.store.finish_slot(policy.id, key, "SKIPPED", reason)
            self.log.warning("schedule.skipped", policy_id=policy.id, scheduled_for=key, reason=reason)
            return SlotOutcome(policy.id, key, "SKIPPED", reason=reason)
        except Exception as exc:  # nothing ran (bad params, configuration), or the store failed
            error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            self.store.finish_slot(policy.id, key, RunState.FAILED.value, error)
            self.log.error("schedule.error", policy_id=policy.id, scheduled_for=key, error=error)
            return SlotOutcome(policy.id, key, RunState.FAILED.value, reason=error)
        finally:
            self.runners.pop(run_id, None)
        return self._finished(result, key)

    async def resume_slot(self, policy_id: str, key: str, run_id: str) -> SlotOutcome:
        self.log.info("schedule.resume", policy_id=policy_id, scheduled_for=key, run_id=run_id)
        try:
            result = await resume_run(
                run_id,
                store=self.store,
                config=self.config,
                on_runner=lambda runner: self.runners.__setitem__(run_id, runner),
                approval_default=self.approval_default,
            )
        except EngineError as exc:
            self.store.finish_slot(policy_id, key, RunState.FAILED.value, f"resume failed: {exc}")
            self.log.error("schedule.error", policy_id=policy_id, scheduled_for=key, error=str(exc))
            return SlotOutcome(policy_id, key, RunState.FAILED.value, run_id, str(exc))
        finally:
            self.runners.pop(run_id, None)
        return self._finished(result, key, "resumed after an interruption")

    def _finished(self, result: RunResult, key: str, reason: str | None = None) -> SlotOutcome:
        self.store.finish_slot(result.policy_id, key, result.status, reason)
        self.log.info(
            "schedule.finished",
            policy_id=result.policy_id,
            scheduled_for=key,
            run_id=result.run_id,
            status=result.status,
        )
        try:
            pruned = prune(self.store, config=self.config, now_utc=self.clock(), policy_id=result.policy_id)
            if pruned.runs:
                self.log.info("schedule.pruned", policy_id=result.policy_id, runs=[r["run_id"] for r in pruned.runs])
        except EngineError as exc:
            self.log.error("schedule.prune_failed", policy_id=result.policy_id, error=str(exc))
        return SlotOutcome(result.policy_id, key, result.status, result.run_id, reason)

    # -- deciding ------------------------------------------------------------------------------

    def due_slots(self, loaded: PolicyFile, now: dt.datetime, after: dt.datetime | None = None) -> list[dt.datetime]:
        """The slots of a policy to run now (recording a skipped missed slot so it is not seen again)."""
        schedule = loaded.valid.policy.schedule
        if schedule is None or not schedule.enabled:
            return []
        last_text = self.store.last_slot(loaded.valid.id)
        last = parse_slot(last_text) if last_text else None
        if after is not None and (last is None or after > last):
            last = after
        slots = missed_slots(schedule, last, now)
        if not slots:
            newest = previous_fire(schedule, now)
            # catchup none: the newest slot is too late, or the policy is new (it waits for its next slot)
            if newest is not None and (last is None or newest > last):
                key = slot_key(newest)
                if self.store.record_slot(loaded.valid.id, key, "SKIPPED", "missed"):
                    self.log.warning("schedule.skipped", policy_id=loaded.valid.id, scheduled_for=key, reason="missed")
        return slots

    def log_next(self, loaded: PolicyFile, now: dt.datetime) -> None:
        schedule = loaded.valid.policy.schedule
        if schedule is None:
            return
        upcoming = next_fire(schedule, now) if schedule.enabled else None
        self.log.info(
            "schedule.next",
            policy_id=loaded.valid.id,
            next_fire=slot_key(upcoming) if upcoming else None,
            enabled=schedule.enabled,
        )

    # -- engine due ----------------------------------------------------------------------------

    async def due(self, max_parallel: int = 1) -> tuple[list[SlotOutcome], FolderScan]:
        """Run every due slot once; return the outcomes and the scan (its invalid files and duplicate ids)."""
        limit = asyncio.Semaphore(max_parallel)
        policies = self.load()
        resumable = self.recover(policies)
        now = self.clock()

        async def resume(policy_id: str, key: str, run_id: str) -> list[SlotOutcome]:
            async with limit:
                return [await self.resume_slot(policy_id, key, run_id)]

        async def run(loaded: PolicyFile, slots: list[dt.datetime]) -> list[SlotOutcome]:
            async with limit:
                return [await self.run_slot(loaded, slot) for slot in slots if not self.stopping]

        jobs = [resume(*item) for item in resumable]
        for loaded in policies.values():
            slots = self.due_slots(loaded, now)
            if slots:
                jobs.append(run(loaded, slots))
        outcomes = [o for group in await asyncio.gather(*jobs) for o in group]
        assert self.scan is not None
        return outcomes, self.scan

    # -- engine serve --------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event, grace_s: float) -> None:
        """Run until ``stop`` is set; then let running steps finish for ``grace_s``, then cancel them."""
        self.log.info("schedule.serve", folders=[str(f) for f in self.folders])
        for policy_id, key, run_id in self.recover(self.load()):
            self._start(policy_id, parse_slot(key), self.resume_slot(policy_id, key, run_id))
        announced: dict[str, Any] = {}  # policy id -> the version whose next fire time was logged
        recovered_at = time.monotonic()
        while not stop.is_set():
            policies = self.load()
            if time.monotonic() - recovered_at >= self.store.leases.settings.heartbeat_s:
                recovered_at = time.monotonic()
                self._recover_left(policies)
            now = self.clock()
            wake = now + dt.timedelta(seconds=1)
            for gone in announced.keys() - policies.keys():  # announced again when it comes back
                del announced[gone]
            for policy_id, loaded in policies.items():
                schedule = loaded.valid.policy.schedule
                if schedule is None:
                    continue
                if announced.get(policy_id) is not loaded.valid:
                    announced[policy_id] = loaded.valid
                    self.log_next(loaded, now)
                try:
                    self._tick(policy_id, loaded, now)
                except Exception as exc:  # a locked or unreachable database: try again next tick
                    self.log.error("schedule.error", policy_id=policy_id, error=f"{type(exc).__name__}: {exc}")
                upcoming = next_fire(schedule, now) if schedule.enabled else None
                if upcoming is not None:
                    wake = min(wake, upcoming)
            delay = max((wake - self.clock()).total_seconds() / self.rate, 0.01)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
        await self._shutdown(grace_s)

    def _recover_left(self, policies: dict[str, PolicyFile]) -> None:
        """Take up what processes that stopped (here or on another host) left of these policies."""
        try:
            left = self.recover(policy_id for policy_id in policies if policy_id not in self.tasks)
        except Exception as exc:  # a locked or unreachable database: try again next time
            self.log.error("schedule.error", error=f"recovery: {type(exc).__name__}: {exc}")
            return
        for policy_id, key, run_id in left:
            self._start(policy_id, parse_slot(key), self.resume_slot(policy_id, key, run_id))

    def _tick(self, policy_id: str, loaded: PolicyFile, now: dt.datetime) -> None:
        if policy_id in self.tasks:  # came due while this process still runs the policy
            for slot in self.due_slots(loaded, now, after=self.planned.get(policy_id)):
                if self.store.record_slot(policy_id, slot_key(slot), "SKIPPED", "overlap"):
                    self.log.warning(
                        "schedule.skipped", policy_id=policy_id, scheduled_for=slot_key(slot), reason="overlap"
                    )
            return
        slots = self.due_slots(loaded, now)
        if slots:
            self._start(policy_id, slots[-1], self._run_slots(loaded, slots))

    async def _run_slots(self, loaded: PolicyFile, slots: list[dt.datetime]) -> list[SlotOutcome]:
        outcomes = []
        for slot in slots:
            if self.stopping:
                break
            outcomes.append(await self.run_slot(loaded, slot))
        if not self.stopping:
            self.log_next(loaded, self.clock())
        return outcomes

    def _start(self, policy_id: str, last: dt.datetime, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks[policy_id] = task
        self.planned[policy_id] = last

        def done(_task: asyncio.Task[Any]) -> None:
            if self.tasks.get(policy_id) is task:
                del self.tasks[policy_id]
                self.planned.pop(policy_id, None)
            if not _task.cancelled() and _task.exception() is not None:
                self.log.error("schedule.error", policy_id=policy_id, error=repr(_task.exception()))

        task.add_done_callback(done)

    async def _shutdown(self, grace_s: float) -> None:
        self.stopping = True
        tasks = list(self.tasks.values())
        self.log.info("schedule.stopping", running=sorted(self.runners), grace_s=grace_s)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        if pending:
            for runner in list(self.runners.values()):
                runner.cancel(f"cancelled: engine serve stopped, grace period of {grace_s:g} s over")
            await asyncio.gather(*pending, return_exceptions=True)
