"""The request bodies of the REST API, declared once (the OpenAPI document is made from them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApprovalIn(_Body):
    hash: str = Field(description="The approval hash (64 hex digits, or a unique prefix of at least 12).")
    note: str | None = Field(None, max_length=2000, description="Why, for the audit log.")


class RunIn(_Body):
    params: dict[str, Any] = Field(default_factory=dict, description="Run parameters (the policy's params).")
    scheduled_for: str | None = Field(
        None, description="ISO 8601: the schedule slot this run is for; its deliveries go out once per slot."
    )


class ScheduleIn(_Body):
    """The seed's scheduler shape; exactly one cadence when creating."""

    policy_id: str | None = Field(None, description="The policy to schedule (POST only).")
    cron: str | None = Field(None, description="Five-field cron expression, read in timezone.")
    interval_minutes: int | None = Field(None, ge=1)
    interval_hours: int | None = Field(None, ge=1)
    window_time: str | None = Field(None, description="Once a day at this UTC time, HH:MM.")
    timezone: str | None = Field(None, description="IANA time zone (default UTC).")
    params: dict[str, Any] | None = Field(None, description="Parameters of the scheduled runs.")
    enabled: bool | None = None
    catchup: Literal["latest", "none", "all"] | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class Accepted(BaseModel):
    run_id: str
    policy_id: str | None = None
    version: int | None = None
    dry_run: bool = False
    status: str
    attempt: int | None = None
    scheduled_for: str | None = None
    links: dict[str, str] = Field(default_factory=dict)


class PolicyRecorded(BaseModel):
    id: str
    version: int
    hash: str
    approval_hash: str
    approved: bool
    new: bool
    problems: list[dict[str, Any]] = Field(default_factory=list)
