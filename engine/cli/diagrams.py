"""The step graph as Mermaid or Graphviz DOT, for plans and for finished runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

STATE_STYLES = {
    "SUCCESS": "fill:#c8e6c9,stroke:#2e7d32,color:#1b5e20",
    "FAILED": "fill:#ffcdd2,stroke:#c62828,color:#b71c1c",
    "SKIPPED": "fill:#eeeeee,stroke:#9e9e9e,color:#616161,stroke-dasharray:4 3",
    "RUNNING": "fill:#fff9c4,stroke:#f9a825,color:#5d4037",
    "PENDING": "fill:#ffffff,stroke:#90a4ae,color:#455a64",
    "run": "fill:#e3f2fd,stroke:#1565c0,color:#0d47a1",
    "preview": "fill:#f3e5f5,stroke:#6a1b9a,color:#4a148c",
    "skip": "fill:#eeeeee,stroke:#9e9e9e,color:#616161,stroke-dasharray:4 3",
}
_DOT_COLORS = {
    "SUCCESS": "#c8e6c9",
    "FAILED": "#ffcdd2",
    "SKIPPED": "#eeeeee",
    "RUNNING": "#fff9c4",
    "PENDING": "#ffffff",
    "run": "#e3f2fd",
    "preview": "#f3e5f5",
    "skip": "#eeeeee",
}


def mermaid(
    nodes: Sequence[tuple[str, str, str]],
    deps: Mapping[str, Sequence[str]],
    failure_ids: Sequence[str] = (),
) -> str:
    """``nodes`` are (id, label detail, class); class is a step state or a plan action."""
    lines = ["flowchart TD"]
    failure = set(failure_ids)
    for sid, detail, _ in nodes:
        if sid not in failure:
            lines.append(f'    {sid}["{sid}<br/><small>{_mm(detail)}</small>"]')
    if failure:
        lines.append('    subgraph on_failure["on_failure"]')
        for sid, detail, _ in nodes:
            if sid in failure:
                lines.append(f'        {sid}["{sid}<br/><small>{_mm(detail)}</small>"]')
        lines.append("    end")
    for sid, _, _ in nodes:
        for dep in deps.get(sid, ()):
            lines.append(f"    {dep} --> {sid}")
    used = sorted({cls for _, _, cls in nodes})
    for cls in used:
        lines.append(f"    classDef {cls.lower()} {STATE_STYLES.get(cls, '')}")
    for cls in used:
        members = ",".join(sid for sid, _, c in nodes if c == cls)
        lines.append(f"    class {members} {cls.lower()}")
    return "\n".join(lines) + "\n"


def dot(
    name: str,
    nodes: Sequence[tuple[str, str, str]],
    deps: Mapping[str, Sequence[str]],
    failure_ids: Sequence[str] = (),
) -> str:
    lines = [
        f'digraph "{_dq(name)}" {{',
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fontname="sans-serif"];',
    ]
    failure = set(failure_ids)
    for sid, detail, cls in nodes:
        if sid not in failure:
            lines.append(f'    "{sid}" [label="{sid}\\n{_dq(detail)}", fillcolor="{_DOT_COLORS.get(cls, "#ffffff")}"];')
    if failure:
        lines.append('    subgraph cluster_on_failure {\n        label="on_failure"; style=dashed;')
        for sid, detail, cls in nodes:
            if sid in failure:
                lines.append(
                    f'        "{sid}" [label="{sid}\\n{_dq(detail)}", fillcolor="{_DOT_COLORS.get(cls, "#ffffff")}"];'
                )
        lines.append("    }")
    for sid, _, _ in nodes:
        for dep in deps.get(sid, ()):
            lines.append(f'    "{dep}" -> "{sid}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mm(text: str) -> str:
    return text.replace('"', "#quot;")


def _dq(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
