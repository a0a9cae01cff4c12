"""The step graph (networkx): cycles with their path, execution layers, downstream sets.

Validation only needs to know that the graph has no cycle: :func:`has_cycle` answers with the
standard library's topological sort (``graphlib``), so ``engine validate`` and ``engine run``
never import networkx for a valid policy; networkx builds the graph when a cycle must be
described, or a plan or a resume needs layers and descendants.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx


def has_cycle(order: Sequence[str], deps: Mapping[str, Sequence[str]]) -> bool:
    """Whether the steps' dependencies (those that are steps) form a cycle."""
    known = set(order)
    sorter = graphlib.TopologicalSorter({step: [d for d in deps.get(step, ()) if d in known] for step in order})
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return True
    return False


def build(order: Sequence[str], deps: Mapping[str, Sequence[str]]) -> nx.DiGraph:
    """Nodes in policy order; an edge ``dep -> step`` for each dependency."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(order)
    for step, upstream in deps.items():
        graph.add_edges_from((dep, step) for dep in upstream if dep in graph)
    return graph


def find_cycles(graph: nx.DiGraph, order: Sequence[str]) -> list[list[str]]:
    """One cycle per strongly connected component, each starting at its first step in policy order.

    Returned as node lists that end where they begin: ``["a", "b", "c", "a"]``.
    """
    import networkx as nx

    if nx.is_directed_acyclic_graph(graph):
        return []
    position = {step: i for i, step in enumerate(order)}
    cycles: list[list[str]] = []
    for component in nx.strongly_connected_components(graph):
        if len(component) == 1:
            (node,) = component
            if graph.has_edge(node, node):
                cycles.append([node, node])
            continue
        start = min(component, key=position.__getitem__)
        sub = graph.subgraph(component)
        edges = nx.find_cycle(sub, source=start)
        path = [edges[0][0]] + [v for _, v in edges]
        # rotate so that the cycle starts at its earliest step
        first = min(path[:-1], key=position.__getitem__)
        i = path.index(first)
        path = path[i:-1] + path[:i] + [first]
        cycles.append(path)
    cycles.sort(key=lambda c: position[c[0]])
    return cycles


def layers(graph: nx.DiGraph, order: Sequence[str]) -> list[list[str]]:
    """Topological generations, each in policy order: what could run at once."""
    import networkx as nx

    position = {step: i for i, step in enumerate(order)}
    return [sorted(gen, key=position.__getitem__) for gen in nx.topological_generations(graph)]


def downstream(graph: nx.DiGraph, steps: set[str]) -> set[str]:
    """``steps`` and everything that depends on them, directly or not."""
    import networkx as nx

    out = set(steps)
    for step in steps:
        out |= nx.descendants(graph, step)
    return out
