"""``engine plan``: what a run would do, layer by layer, without executing anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import graph as graphs
from .errors import ConditionError
from .policy import TriggerRule
from .validate import ValidPolicy
from .values import RunContext


@dataclass
class PlannedStep:
    id: str
    type: str
    layer: int
    action: str  # "run" | "preview" | "skip"
    depends_on: list[str]
    phase: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "layer": self.layer,
            "action": self.action,
            "depends_on": self.depends_on,
            "phase": self.phase,
            "reason": self.reason,
        }


@dataclass
class Plan:
    policy_id: str
    max_concurrency: int
    dry_run: bool
    layers: list[list[str]]
    steps: list[PlannedStep]
    # {"hash", "approved", "approved_by", "approved_at"}: what an approver approves (engine.governance)
    approval: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy_id": self.policy_id,
            "max_concurrency": self.max_concurrency,
            "dry_run": self.dry_run,
            "approval": self.approval,
            "layers": self.layers,
            "steps": [s.to_dict() for s in self.steps],
        }


def make_plan(valid: ValidPolicy, params: dict[str, Any], dry_run: bool = False) -> Plan:
    """Layers of the main steps; per step, run, preview (dry run with side effects) or skip.

    A step is known to be skipped when its ``skip_if`` reads only ``params`` and is true, or
    (under ``trigger_rule: all_success``) when an upstream step is known to be skipped.
    """
    main_graph = valid.graph.subgraph(valid.main_ids)
    layers = graphs.layers(main_graph, valid.main_ids)
    failure_layers = graphs.layers(valid.graph.subgraph(valid.failure_ids), valid.failure_ids)
    ctx = RunContext(params, {})
    skipped: dict[str, str] = {}
    steps: list[PlannedStep] = []
    for phase, phase_layers, offset in (("main", layers, 0), ("on_failure", failure_layers, len(layers))):
        for number, layer in enumerate(phase_layers, start=1 + offset):
            for sid in layer:
                spec = valid.spec(sid)
                reason = _known_skip(valid, sid, ctx, skipped)
                if reason is not None:
                    skipped[sid] = reason
                    action = "skip"
                elif dry_run and valid.side_effects(sid):
                    action = "preview"
                else:
                    action = "run"
                steps.append(PlannedStep(sid, spec.type, number, action, list(valid.deps[sid]), phase, reason))
    return Plan(valid.id, valid.policy.max_concurrency, dry_run, layers + failure_layers, steps)


def _known_skip(valid: ValidPolicy, sid: str, ctx: RunContext, skipped: dict[str, str]) -> str | None:
    if valid.spec(sid).trigger_rule is TriggerRule.all_success:
        for dep in valid.deps[sid]:
            if dep in skipped:
                return f"upstream {dep!r} will be skipped"
    condition = valid.skip_conditions.get(sid)
    if condition is None or any(ref.path[0] != "params" for ref in condition.refs()):
        return None
    try:
        return "skip_if is true for these params" if condition.evaluate(ctx) else None
    except ConditionError:
        return None
