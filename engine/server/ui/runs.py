"""Run pages: the list of runs (filters, newest first, a page at a time) and one run (its header,
steps, graph, Gantt, outputs and previews, Resume and Cancel), kept live while it runs.

A running run's page opens the server-sent events of ``/runs/{id}/events`` (static/ui.js); each
event reloads the page's ``data-live`` fragments (``/runs/{id}/summary``, ``steps``, ``graph``,
``gantt``, ``outputs``), so the page follows the run without a reload. Without JavaScript the
page is complete as served; reloading it shows the run's state.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import urlencode

from anyio.from_thread import run_sync as on_loop
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from ...errors import UsageError
from ...service import runs
from ...service.access import require
from ...states import RunState
from ..events import run_events
from .graph import gantt_svg, graph_svg
from .render import page
from .session import Visitor, check_csrf, visitor
from .session import bad_csrf as _bad_csrf

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
TRIGGERS = ("manual", "schedule", "api", "mcp", "ui", "resume")
RESUMABLE = frozenset(s.value for s in RunState if s.is_resumable)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_PDF_FRAMES = 3


# -- the list ----------------------------------------------------------------------------------


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request,
    policy: str = "",
    status: str = "",
    trigger: str = "",
    since: str = "",
    until: str = "",
    cursor: str = "",
    limit: str = "",
    who: Visitor = Depends(visitor),
) -> Response:
    filters = {
        "policy": policy.strip(),
        "status": status.strip().upper(),
        "trigger": trigger.strip(),
        "since": since.strip(),
        "until": until.strip(),
    }
    size = min(max(int(limit), 1), 500) if limit.strip().isdigit() else PAGE_SIZE
    error = None
    found: dict[str, Any] = {"runs": [], "next_cursor": None}
    try:
        found = runs.list_runs(
            who.ws,
            who.caller,
            policy=filters["policy"] or None,
            status=filters["status"] or None,
            trigger=filters["trigger"] or None,
            since=filters["since"] or None,
            until=_day_after(filters["until"]) if filters["until"] else None,
            limit=size,
            cursor=cursor or None,
        )
    except UsageError as exc:  # a bad filter: said on the page, with the form to correct it
        error = str(exc)
    kept = {k: v for k, v in filters.items() if v}
    if size != PAGE_SIZE:
        kept["limit"] = str(size)
    older = f"/runs?{urlencode({**kept, 'cursor': found['next_cursor']})}" if found["next_cursor"] else None
    newest = f"/runs?{urlencode(kept)}" if cursor else None
    return page(
        request,
        "runs.html",
        who=who,
        status_code=400 if error else 200,
        filters=filters,
        limit=size if size != PAGE_SIZE else None,
        statuses=[s.value for s in RunState],
        triggers=TRIGGERS,
        recent=found["runs"],
        older=older,
        newest=newest,
        error=error,
        date_only=lambda v: v if _DATE.match(v or "") else "",
    )


def _day_after(value: str) -> str:
    """``until`` as a date means the whole day: runs started before the next day."""
    if _DATE.match(value):
        try:
            return (dt.date.fromisoformat(value) + dt.timedelta(days=1)).isoformat()
        except ValueError:
            raise UsageError(f"until {value!r}: a date such as 2026-12-01") from None
    return value


# -- one run -----------------------------------------------------------------------------------


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, who: Visitor = Depends(visitor)) -> Response:
    run = runs.show(who.ws, who.caller, run_id)
    full = run["run_id"]
    rows = who.ws.store.get_steps(full)
    return page(
        request,
        "run.html",
        who=who,
        **_summary_context(run),
        **_steps_context(rows),
        **_graph_context(who, full, rows),
        **_gantt_context(rows),
        **_outputs_context(who, run),
    )


@router.get("/runs/{run_id}/summary", response_class=HTMLResponse)
def summary_fragment(request: Request, run_id: str, who: Visitor = Depends(visitor)) -> Response:
    run = runs.show(who.ws, who.caller, run_id)
    return page(request, "_run_summary.html", who=who, **_summary_context(run))


@router.get("/runs/{run_id}/steps", response_class=HTMLResponse)
def steps_fragment(request: Request, run_id: str, who: Visitor = Depends(visitor)) -> Response:
    full, rows = _rows(who, run_id)
    return page(request, "_run_steps.html", who=who, run_id=full, **_steps_context(rows))


@router.get("/runs/{run_id}/graph", response_class=HTMLResponse)
def graph_fragment(request: Request, run_id: str, who: Visitor = Depends(visitor)) -> Response:
    full, rows = _rows(who, run_id)
    return page(request, "_run_graph.html", who=who, run_id=full, **_graph_context(who, full, rows))


@router.get("/runs/{run_id}/gantt", response_class=HTMLResponse)
def gantt_fragment(request: Request, run_id: str, who: Visitor = Depends(visitor)) -> Response:
    full, rows = _rows(who, run_id)
    return page(request, "_run_gantt.html", who=who, run_id=full, **_gantt_context(rows))


@router.get("/runs/{run_id}/outputs", response_class=HTMLResponse)
def outputs_fragment(request: Request, run_id: str, who: Visitor = Depends(visitor)) -> Response:
    run = runs.show(who.ws, who.caller, run_id)
    return page(
        request,
        "_run_outputs.html",
        who=who,
        run=run,
        run_id=run["run_id"],
        running=run["status"] == RunState.RUNNING.value,
        **_outputs_context(who, run),
    )


@router.get("/runs/{run_id}/events")
def events(run_id: str, who: Visitor = Depends(visitor)) -> StreamingResponse:
    """The run's server-sent events (as ``/api/v1/runs/{id}/events``), for the page's session."""
    full = runs.status_of(who.ws, run_id)["run_id"]  # 404 before the stream starts; a prefix resolved
    return StreamingResponse(
        run_events(who.ws, who.caller, full),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/runs/{run_id}/resume")
def resume(request: Request, run_id: str, csrf_token: str = Form(""), who: Visitor = Depends(visitor)) -> Response:
    if not check_csrf(request, who, {"csrf_token": csrf_token}):
        return _bad_csrf(request, who)
    executor = who.server.executor
    assert executor is not None, "the server's run executor starts with the application"
    out = runs.resume(who.ws, who.caller, run_id, lambda prepared: on_loop(executor.submit, prepared))
    return RedirectResponse(f"/runs/{out['run_id']}", status_code=303)


@router.post("/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str, csrf_token: str = Form(""), who: Visitor = Depends(visitor)) -> Response:
    if not check_csrf(request, who, {"csrf_token": csrf_token}):
        return _bad_csrf(request, who)
    out = runs.cancel(who.ws, who.caller, run_id, lambda rid, reason: bool(on_loop(who.server.cancel, rid, reason)))
    return RedirectResponse(f"/runs/{out['run_id']}", status_code=303)


# -- what the fragments show -------------------------------------------------------------------


def _rows(who: Visitor, run_id: str) -> tuple[str, list[dict[str, Any]]]:
    require(who.caller, "read")
    full = runs.run_row(who.ws, run_id)["id"]
    return full, who.ws.store.get_steps(full)


def _steps_context(rows: list[dict[str, Any]]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    steps = []
    for row in rows:
        took = row.get("duration_s")
        running = False
        if took is None and row.get("started_at") and not row.get("finished_at"):
            started = _moment(row["started_at"])
            if started is not None:
                took, running = (now - started).total_seconds(), True
        steps.append(
            {
                "id": row["step_id"],
                "type": row["type"],
                "status": row["status"],
                "attempts": row["attempts"],
                "phase": row.get("phase") or "main",
                "duration": _duration(took) + (" so far" if running and took is not None else ""),
                "error": row.get("error"),
                "skip_reason": row.get("skip_reason"),
            }
        )
    return {"steps": steps}


def _gantt_context(rows: list[dict[str, Any]]) -> dict[str, Any]:
    spans = [
        {
            "id": r["step_id"],
            "started_at": r.get("started_at"),
            "finished_at": r.get("finished_at"),
            "status": r["status"],
        }
        for r in rows
    ]
    return {"gantt": gantt_svg(spans, title="Step timeline")}


def _graph_context(who: Visitor, run_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    row = who.ws.store.get_run(run_id) or {}
    states = {r["step_id"]: r["status"] for r in rows}
    planned = _plan_steps(who, row, rows)
    return {"graph": graph_svg(planned, states, title=f"Graph of run {run_id}")}


_PLANS: OrderedDict[tuple[str, ...], list[dict[str, Any]]] = OrderedDict()
_PLANS_LOCK = threading.Lock()


def _plan_steps(who: Visitor, row: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plan's steps (layers, dependencies) of the policy the run recorded; if that no longer
    validates (a step type gone, a stricter allow-list), layers worked out from its ``depends_on``."""
    key = (
        who.ws.name,
        str(row.get("policy_hash")),
        str(row.get("params_json")),
        str(bool(row.get("dry_run"))),
        str(row.get("policy_path")),
    )
    with _PLANS_LOCK:
        if key in _PLANS:
            _PLANS.move_to_end(key)
            return _PLANS[key]
    try:
        from pathlib import Path

        from ...plan import make_plan
        from ...validate import validate_document

        document = json.loads(row["policy_json"])
        path = Path(row["policy_path"]) if row.get("policy_path") else None
        valid = validate_document(document, path, who.ws.config)
        params = json.loads(row.get("params_json") or "{}")
        planned = [s.to_dict() for s in make_plan(valid, params, bool(row.get("dry_run"))).steps]
    except Exception:  # the picture of a run never fails its page
        planned = _layers_of(row, rows)
    with _PLANS_LOCK:
        _PLANS[key] = planned
        while len(_PLANS) > 64:
            _PLANS.popitem(last=False)
    return planned


def _layers_of(row: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        document = json.loads(row.get("policy_json") or "{}")
    except ValueError:
        document = {}
    declared: dict[str, list[str]] = {}
    for spec in list(document.get("steps") or []) + list(document.get("on_failure") or []):
        if isinstance(spec, dict) and isinstance(spec.get("id"), str):
            declared[spec["id"]] = [d for d in spec.get("depends_on") or [] if isinstance(d, str)]
    types = {r["step_id"]: r["type"] for r in rows}
    ids = list(types) or list(declared)
    layer: dict[str, int] = {}

    def depth(sid: str, seen: frozenset[str]) -> int:
        if sid in layer:
            return layer[sid]
        ups = [u for u in declared.get(sid, []) if u in ids and u not in seen]
        layer[sid] = 1 + max((depth(u, seen | {sid}) for u in ups), default=-1)
        return layer[sid]

    return [
        {"id": sid, "type": types.get(sid, ""), "layer": depth(sid, frozenset()), "depends_on": declared.get(sid, [])}
        for sid in ids
    ]


def _outputs_context(who: Visitor, run: dict[str, Any]) -> dict[str, Any]:
    run_id = run["run_id"]
    artifacts = [
        {**a, "href": f"/files/artifacts/{a['sha256']}", "size_text": _size(a.get("size"))} for a in run["artifacts"]
    ]
    outputs = [{"step_id": sid, "shape": _shape(value)} for sid, value in runs.step_outputs(who.ws, run_id).items()]
    previews = []
    for name in run.get("previews") or []:
        href = f"/files/runs/{run_id}/previews/{name}"
        previews.append({"name": name, "href": href, "pdf": name.lower().endswith(".pdf")})
    frames = [a for a in artifacts if a.get("media_type") == "application/pdf"]
    shown = {a.get("name") for a in frames}  # a dry run's preview of a stored PDF is the same file
    frames += [{"name": p["name"], "href": p["href"]} for p in previews if p["pdf"] and p["name"] not in shown]
    return {"artifacts": artifacts, "outputs": outputs, "previews": previews, "pdf_frames": frames[:MAX_PDF_FRAMES]}


def _shape(value: Any) -> str:
    """A step's output in a few words: its keys, or what it is."""
    if isinstance(value, dict):
        keys = [str(k) for k in value]
        shown = ", ".join(keys[:12])
        return (shown + (f", … ({len(keys)} keys)" if len(keys) > 12 else "")) if keys else "an empty object"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return f"a text of {len(value)} character{'s' if len(value) != 1 else ''}"
    return type(value).__name__


def _moment(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _size(size: Any) -> str:
    if not isinstance(size, int) or isinstance(size, bool):
        return ""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _summary_context(run: dict[str, Any]) -> dict[str, Any]:
    start, end = _moment(run.get("started_at")), _moment(run.get("finished_at"))
    took = ""
    if start is not None:
        took = _duration(((end or dt.datetime.now(dt.UTC)) - start).total_seconds()) + ("" if end else " so far")
    return {
        "run": run,
        "run_id": run["run_id"],
        "took": took,
        "running": run["status"] == RunState.RUNNING.value,
        "resumable": run["status"] in RESUMABLE,
    }
