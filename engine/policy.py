"""The policy document: frozen pydantic models with ``extra="forbid"``.

These models check the *shape* of a policy. Everything that needs more than one field at a
time (step types, references, cycles) is checked in :mod:`engine.validate`.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from . import cron

POLICY_ID_PATTERN = r"^[a-z][a-z0-9_-]*$"
STEP_ID_PATTERN = r"^[a-z_][a-z0-9_]*$"
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_STEP_IDS = frozenset({"params", "run", "ctx"})
SCHEMA_VERSION = 1


class OnError(StrEnum):
    """What a step failure does to the run."""

    fail_pipeline = "fail_pipeline"
    log_and_continue = "log_and_continue"
    retry_then_fail = "retry_then_fail"


class TriggerRule(StrEnum):
    """When a step with finished dependencies runs."""

    all_success = "all_success"
    all_done = "all_done"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Retry(_Model):
    """Retry settings used by ``on_error: retry_then_fail``: exponential backoff, full jitter."""

    max_attempts: int = Field(3, ge=1, le=100, description="Attempts in all, the first included.")
    backoff_s: float = Field(1.0, ge=0, description="Delay before the 2nd attempt; doubles each time.")
    max_backoff_s: float = Field(60.0, ge=0, description="Upper bound of one delay.")
    jitter: bool = Field(True, description="Full jitter: sleep a random time between 0 and the delay.")


class Defaults(_Model):
    """Settings applied to every step that does not set them itself."""

    timeout_s: float | None = Field(None, gt=0, description="Per-step time limit in seconds.")
    on_error: OnError | None = Field(None, description="Default on_error (built-in default: fail_pipeline).")
    retry: Retry | None = Field(None, description="Default retry settings.")


ParamType = Literal["string", "integer", "number", "boolean", "object", "array"]


class ParamDecl(_Model):
    """A declared run parameter; ``engine run --param name=value`` overrides its default."""

    type: ParamType = Field(description="The parameter's JSON type; --param values are coerced to it.")
    default: Any = Field(None, description="Value used when the run does not set it. Without one, it is required.")
    description: str | None = None


Catchup = Literal["latest", "none", "all"]
SCHEDULE_KINDS = ("cron", "interval_minutes", "window_time", "interval_seconds")


class Schedule(_Model):
    """When the policy runs by itself: exactly one of ``cron``, ``interval_minutes``, ``window_time``."""

    cron: str | None = Field(None, description="Five-field cron expression, read in 'timezone'.")
    interval_minutes: int | None = Field(
        None, ge=1, le=527_040, description="Every N minutes, anchored at 1970-01-01T00:00Z."
    )
    window_time: str | None = Field(None, description="Once a day at this UTC time, 'HH:MM' (24-hour).")
    interval_seconds: int | None = Field(
        None, ge=1, le=86_400, description="For tests only: every N seconds, anchored at the epoch."
    )
    timezone: str = Field("UTC", description="IANA time zone name for 'cron' (and for display).")
    enabled: bool = Field(True, description="false: the schedulers leave the policy alone.")
    catchup: Catchup = Field("latest", description="Missed slots after downtime: latest, none or all.")
    max_catchup: int = Field(10, ge=1, le=1000, description="catchup 'all': at most this many missed slots.")
    misfire_grace_s: float | None = Field(
        None, ge=0, description="A slot later than this counts as missed (default: the interval)."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Run parameters of scheduled runs.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                cron.parse(value)
            except cron.CronError as exc:
                raise PydanticCustomError("cron", str(exc)) from None
        return value

    @field_validator("window_time")
    @classmethod
    def _window_time(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
            raise PydanticCustomError("window_time", "must be a UTC time as HH:MM, 24-hour, e.g. '07:00'")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from .schedule import zone

        try:
            zone(value)
        except ValueError as exc:
            raise PydanticCustomError("timezone", str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        given = [k for k in SCHEDULE_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise PydanticCustomError(
                "schedule_kind",
                "a schedule needs exactly one of cron, interval_minutes, window_time ({found})",
                {"found": found},
            )
        if self.window_time is not None and self.timezone != "UTC":
            raise PydanticCustomError(
                "schedule_kind",
                "window_time is always UTC; for a local time use cron with timezone, e.g. "
                '{"cron": "0 7 * * *", "timezone": "Europe/Berlin"}',
            )
        return self


class Retention(_Model):
    """How much run history to keep; ``engine prune`` and ``engine serve`` apply it."""

    days: float | None = Field(
        None, ge=0, description="Delete finished runs older than this many days (0: all but the latest N)."
    )
    keep_latest_n_runs: int | None = Field(None, ge=0, description="Always keep this many latest runs.")


class StepSpec(_Model):
    """One step of the graph."""

    id: str = Field(pattern=STEP_ID_PATTERN, description="Unique step id; 'params', 'run' and 'ctx' are reserved.")
    type: str = Field(description="A registered step type or alias, e.g. 'core.value'.")
    params: dict[str, Any] = Field(default_factory=dict, description="Validated against the step type's Params.")
    depends_on: list[str] = Field(default_factory=list, description="Step ids that must finish first.")
    skip_if: Any = Field(None, description="A condition; when true the step is SKIPPED.")
    on_error: OnError | None = None
    retry: Retry | None = None
    timeout_s: float | None = Field(None, gt=0)
    trigger_rule: TriggerRule = TriggerRule.all_success
    description: str | None = None


class Policy(_Model):
    """A policy: a graph of steps, with run parameters and defaults."""

    schema_uri: str | None = Field(None, alias="$schema", description="Optional; lets an editor find the schema.")
    schema_version: Literal[1] = Field(description="Always 1.")
    id: str = Field(pattern=POLICY_ID_PATTERN, description="The policy id; runs are grouped by it.")
    title: str | None = None
    description: str | None = None
    params: dict[str, ParamDecl] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    max_concurrency: int = Field(4, ge=1, le=10_000, description="Steps running at once, at most.")
    timeout_s: float | None = Field(None, gt=0, description="Whole-run time limit in seconds.")
    steps: list[StepSpec] = Field(min_length=1)
    on_failure: list[StepSpec] = Field(default_factory=list, description="Steps run only when the run FAILED.")
    schedule: Schedule | None = Field(None, description="When 'engine serve' and 'engine due' run the policy.")
    retention: Retention | None = Field(None, description="How much run history to keep ('engine prune').")

    def all_steps(self) -> list[StepSpec]:
        return [*self.steps, *self.on_failure]


def canonical_json(value: Any) -> str:
    """The encoding hashes are taken over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def effective_retry(step: StepSpec, defaults: Defaults) -> Retry:
    """Built-in retry settings, overridden by ``defaults.retry``, overridden by the step's own fields."""
    merged: dict[str, Any] = {}
    for layer in (defaults.retry, step.retry):
        if layer is not None:
            merged.update({name: getattr(layer, name) for name in layer.model_fields_set})
    return Retry(**merged)


def effective_on_error(step: StepSpec, defaults: Defaults) -> OnError:
    return step.on_error or defaults.on_error or OnError.fail_pipeline


def effective_timeout(step: StepSpec, defaults: Defaults) -> float | None:
    return step.timeout_s if step.timeout_s is not None else defaults.timeout_s
