"""Property-based tests on random DAGs (hypothesis): dependencies, cycles, concurrency, order (issue #3 §11)."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.api import run_policy
from engine.errors import PolicyError
from engine.runner import StepEvent
from engine.store import Store
from engine.validate import validate_document
from tests.conftest import policy
from tests.stepkit import Concurrency

RUNS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TERMINAL = {"SUCCESS", "FAILED", "SKIPPED"}


@dataclass
class Dag:
    """Steps s0..s{n-1}; ``deps[i]`` only holds lower indexes (so it is acyclic); listed in ``order``."""

    deps: list[list[int]]
    order: list[int]

    @property
    def ids(self) -> list[str]:
        return [f"s{i}" for i in self.order]


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 8) -> Dag:
    n = draw(st.integers(1, max_steps))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    return Dag(deps, list(draw(st.permutations(range(n)))))


def sleep_step(i: int, deps: list[int], seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"s{i}",
        "type": "test.sleep",
        "params": {"seconds": seconds},
        "depends_on": [f"s{d}" for d in deps],
        **extra,
    }


def execute(store: Store, tmp_path: Path, doc: dict[str, Any]) -> tuple[Any, list[tuple[str, str]]]:
    Concurrency.reset()
    events: list[tuple[str, str]] = []

    def observe(event: StepEvent) -> None:
        events.append((event.step_id, event.status.value))

    path = tmp_path / "random.json"
    path.write_text(json.dumps(doc))
    result = asyncio.run(run_policy(path, store=store, observer=observe))
    return result, events


def first_index(events: list[tuple[str, str]], step: str, states: set[str]) -> int | None:
    return next((i for i, (sid, status) in enumerate(events) if sid == step and status in states), None)


@RUNS
@given(
    dag=dags(),
    seconds=st.lists(st.sampled_from([0, 0.001, 0.003]), min_size=8, max_size=8),
    max_concurrency=st.integers(1, 4),
)
def test_every_step_starts_after_all_its_dependencies_finished(store, tmp_path, dag, seconds, max_concurrency):
    doc = policy(*[sleep_step(i, dag.deps[i], seconds[i]) for i in dag.order], max_concurrency=max_concurrency)
    result, events = execute(store, tmp_path, doc)
    assert result.status == "SUCCESS"
    assert [s.id for s in result.steps] == dag.ids
    for i, deps in enumerate(dag.deps):
        started = first_index(events, f"s{i}", {"RUNNING"})
        assert started is not None
        for d in deps:
            finished = first_index(events, f"s{d}", TERMINAL)
            assert finished is not None and finished < started, (f"s{i}", f"s{d}", events)


@RUNS
@given(dag=dags(), max_concurrency=st.integers(1, 5))
def test_concurrency_never_exceeds_max_concurrency(store, tmp_path, dag, max_concurrency):
    doc = policy(*[sleep_step(i, dag.deps[i], 0.002) for i in dag.order], max_concurrency=max_concurrency)
    result, _ = execute(store, tmp_path, doc)
    assert result.status == "SUCCESS"
    assert 1 <= Concurrency.peak <= max_concurrency


@RUNS
@given(dag=dags())
def test_one_at_a_time_the_earliest_ready_step_in_policy_order_starts(store, tmp_path, dag):
    doc = policy(*[sleep_step(i, dag.deps[i], 0) for i in dag.order], max_concurrency=1)
    execute(store, tmp_path, doc)
    position = {i: p for p, i in enumerate(dag.order)}
    done: set[int] = set()
    expected = []
    while len(done) < len(dag.deps):
        ready = [i for i in range(len(dag.deps)) if i not in done and set(dag.deps[i]) <= done]
        step = min(ready, key=position.__getitem__)
        expected.append(f"s{step}")
        done.add(step)
    assert Concurrency.order == expected


@RUNS
@given(dag=dags(), failing=st.sets(st.integers(0, 7)), lenient=st.sets(st.integers(0, 7)))
def test_skips_and_failures_follow_the_trigger_rules(store, tmp_path, dag, failing, lenient):
    steps = []
    for i in dag.order:
        extra = {"trigger_rule": "all_done"} if i in lenient else {}
        if i in failing:
            steps.append(
                {
                    "id": f"s{i}",
                    "type": "test.fail",
                    "on_error": "log_and_continue",
                    "depends_on": [f"s{d}" for d in dag.deps[i]],
                    **extra,
                }
            )
        else:
            steps.append(sleep_step(i, dag.deps[i], 0, **extra))
    result, events = execute(store, tmp_path, policy(*steps))
    status = {s.id: s for s in result.steps}
    for i, deps in enumerate(dag.deps):
        step = status[f"s{i}"]
        upstream = [status[f"s{d}"] for d in deps]
        should_run = i in lenient or all(u.status == "SUCCESS" for u in upstream)
        if should_run:
            assert step.status == ("FAILED" if i in failing else "SUCCESS")
        else:
            assert step.status == "SKIPPED"
            culprit = next(u for u in upstream if u.status != "SUCCESS")
            verb = "failed" if culprit.status == "FAILED" else "was skipped"
            assert step.skip_reason == f"upstream {culprit.id!r} {verb}"
            assert first_index(events, step.id, {"RUNNING"}) is None
        for u in upstream:  # whatever happened, it happened after the upstream finished
            assert first_index(events, u.id, TERMINAL) < first_index(events, step.id, TERMINAL)
    any_failed = any(s.status == "FAILED" for s in result.steps)
    assert result.status == ("PARTIAL" if any_failed else "SUCCESS")


# -- cycles -----------------------------------------------------------------------------------


@st.composite
def digraphs(draw: st.DrawFn) -> tuple[int, list[list[int]], list[str]]:
    """Any directed graph (cycles and self-loops allowed); each edge written as depends_on, a ref or a template."""
    n = draw(st.integers(1, 7))
    deps = [sorted(draw(st.sets(st.integers(0, n - 1), max_size=3))) for _ in range(n)]
    forms = draw(st.lists(st.sampled_from(["depends_on", "ref", "template"]), min_size=n, max_size=n))
    return n, deps, forms


def reach(n: int, deps: list[list[int]]) -> list[set[int]]:
    """reach[u]: the steps reachable from u along dependency edges u -> v (v depends on u), one edge or more."""
    succ = [[v for v in range(n) if u in deps[v]] for u in range(n)]
    out = []
    for u in range(n):
        seen: set[int] = set()
        stack = list(succ[u])
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(succ[v])
        out.append(seen)
    return out


def step_doc(i: int, deps: list[int], form: str) -> dict[str, Any]:
    names = [f"s{d}" for d in deps]
    if form == "depends_on":
        return {"id": f"s{i}", "type": "core.value", "depends_on": names}
    if form == "ref":
        return {"id": f"s{i}", "type": "core.value", "params": {"value": [{"ref": f"ctx.{d}"} for d in names]}}
    return {
        "id": f"s{i}",
        "type": "core.value",
        "params": {"value": {"template": " ".join(f"{{{{ {d} }}}}" for d in names)}},
    }


@settings(max_examples=40, deadline=None)
@given(graph=digraphs())
def test_cycles_are_always_detected_and_printed_as_real_cycles(graph):
    n, deps, forms = graph
    doc = policy(*[step_doc(i, deps[i], forms[i]) for i in range(n)])
    reachable = reach(n, deps)
    cyclic = {u for u in range(n) if u in reachable[u]}
    components = {frozenset(v for v in cyclic if v in reachable[u] and u in reachable[v]) for u in cyclic}
    if not cyclic:
        validate_document(doc)
        return
    with pytest.raises(PolicyError) as info:
        validate_document(doc)
    problems = info.value.problems
    assert all(p.message.startswith("dependency cycle: ") for p in problems)
    reported = []
    for problem in problems:
        path = [int(s[1:]) for s in problem.message.removeprefix("dependency cycle: ").split(" -> ")]
        assert path[0] == path[-1] and len(path) >= 2
        assert len(set(path[:-1])) == len(path) - 1  # a simple cycle
        for u, v in itertools.pairwise(path):
            assert u in deps[v], f"{problem.message}: s{v} does not depend on s{u}"
        assert path[0] == min(path)  # starts at its earliest step in policy order
        assert problem.pointer == f"/steps/{path[0]}"
        reported.append(frozenset(path))
    # one cycle per strongly connected component that has one
    assert len(reported) == len(components)
    assert all(any(cycle <= component for component in components) for cycle in reported)
