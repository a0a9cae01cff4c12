"""engine.graph: the step graph with networkx: cycles with their path, layers, downstream sets."""

from __future__ import annotations

import pytest

from engine import graph as graphs


def build(edges: dict[str, list[str]]):
    return graphs.build(list(edges), edges)


def test_build_has_nodes_in_policy_order_and_dep_to_step_edges():
    g = build({"c": [], "a": ["c"], "b": ["a", "c"]})
    assert list(g.nodes) == ["c", "a", "b"]
    assert sorted(g.edges) == [("a", "b"), ("c", "a"), ("c", "b")]


def test_build_ignores_deps_that_are_not_steps():
    g = graphs.build(["a"], {"a": ["ghost"]})
    assert list(g.edges) == []


@pytest.mark.parametrize(
    ("edges", "cycles"),
    [
        pytest.param({"a": [], "b": ["a"]}, [], id="acyclic"),
        pytest.param({"a": ["a"]}, [["a", "a"]], id="self-loop"),
        pytest.param({"a": ["b"], "b": ["a"]}, [["a", "b", "a"]], id="two"),
        pytest.param({"a": ["c"], "b": ["a"], "c": ["b"]}, [["a", "b", "c", "a"]], id="three"),
        pytest.param({"z": [], "c": ["b"], "b": ["c"]}, [["c", "b", "c"]], id="starts-at-earliest-in-policy-order"),
        pytest.param(
            {"a": ["b"], "b": ["a"], "x": [], "y": ["z"], "z": ["y"], "s": ["s"]},
            [["a", "b", "a"], ["y", "z", "y"], ["s", "s"]],
            id="one-per-component-in-policy-order",
        ),
    ],
)
def test_find_cycles(edges, cycles):
    assert graphs.find_cycles(build(edges), list(edges)) == cycles


def test_cycle_path_follows_dependency_edges():
    edges = {"a": ["d"], "b": ["a"], "c": ["b"], "d": ["c"], "e": ["b"]}
    (cycle,) = graphs.find_cycles(build(edges), list(edges))
    assert cycle[0] == cycle[-1] == "a"
    assert len(set(cycle[:-1])) == len(cycle) - 1
    g = build(edges)
    assert all(g.has_edge(u, v) for u, v in zip(cycle, cycle[1:], strict=False))


def test_layers_are_topological_generations_in_policy_order():
    edges = {"fetch_b": [], "fetch_a": [], "join": ["fetch_a", "fetch_b"], "report": ["join"], "side": ["fetch_a"]}
    assert graphs.layers(build(edges), list(edges)) == [["fetch_b", "fetch_a"], ["join", "side"], ["report"]]


def test_downstream_includes_the_steps_and_all_their_descendants():
    edges = {"a": [], "b": ["a"], "c": ["b"], "d": [], "e": ["d", "c"]}
    g = build(edges)
    assert graphs.downstream(g, {"b"}) == {"b", "c", "e"}
    assert graphs.downstream(g, {"d", "a"}) == {"a", "b", "c", "d", "e"}
    assert graphs.downstream(g, set()) == set()


@pytest.mark.parametrize(
    ("edges", "cyclic"),
    [
        pytest.param({"a": [], "b": ["a"]}, False, id="acyclic"),
        pytest.param({"a": ["a"]}, True, id="self-loop"),
        pytest.param({"a": ["c"], "b": ["a"], "c": ["b"]}, True, id="three"),
        pytest.param({"a": ["ghost"]}, False, id="unknown-deps-ignored"),
    ],
)
def test_has_cycle_agrees_with_find_cycles(edges, cyclic):
    assert graphs.has_cycle(list(edges), edges) is cyclic
    assert bool(graphs.find_cycles(build(edges), list(edges))) is cyclic
