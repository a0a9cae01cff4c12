"""Reports, schedules, deliveries, audit and settings pages.

Every page reads through the service layer (or, for reports and deliveries, the tables the report
and send stages own, as ``/api/v1/reports`` and ``/api/v1/deliveries`` do), so a role sees here
what it may read in the API; buttons a role may not use are not shown, and the service refuses
them anyway. Every POST checks the session's CSRF token (a 403 page when it is wrong). htmx
updates parts of a page (the schedule preview as you type, the audit verification, the test
email); without JavaScript the same forms post and answer whole pages.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ...errors import ConfigError, NotFound, PolicyError, Problem, UsageError
from ...service import audit, policies, require, schedules
from ...service import settings as server_settings
from ...service.runs import artifacts_of
from ...store import runs as runs_table
from .render import page
from .session import Visitor, check_csrf, visitor
from .session import bad_csrf as _forbidden
from .session import is_htmx as _htmx

router = APIRouter(include_in_schema=False)

DELIVERY_STATUSES = ("sent", "failed", "duplicate", "sending")
CADENCE_FIELDS = ("cron", "interval_minutes", "window_time")
FIELD_LABELS = {
    "/cron": "Cron",
    "/interval_minutes": "Interval (minutes)",
    "/window_time": "Window time (UTC)",
    "/timezone": "Time zone",
}


async def _form(request: Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.form()).items()}


# -- reports -----------------------------------------------------------------------------------


def _reports_db(who: Visitor) -> tuple[Any, Any]:
    from steps.report import versions

    return versions, who.ws.store.database(versions.metadata)


def _files_of(who: Visitor, version: dict[str, Any], cache: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The PDF and the HTML page of a report version: among the artifacts of the run that made it,
    the ones named for the report and version (render's default name), else the run's only one."""
    run_id = version["run_id"]
    if run_id not in cache:
        cache[run_id] = artifacts_of(who.ws, run_id)
    found: dict[str, Any] = {}
    for kind, media_type in (("pdf", "application/pdf"), ("html", "text/html")):
        candidates = [a for a in cache[run_id] if a.get("media_type") == media_type]
        named = f"{version['report_id']}-v{version['version']}.{kind}"
        chosen = next((a for a in candidates if a.get("name") == named), None)
        chosen = chosen or next(
            (a for a in candidates if str(a.get("name") or "").startswith(version["report_id"])), None
        )
        if chosen is None and len(candidates) == 1:
            chosen = candidates[0]
        found[kind] = {**chosen, "href": f"/files/artifacts/{chosen['sha256']}"} if chosen else None
    return found


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request, who: Visitor = Depends(visitor)) -> Response:
    require(who.caller, "read")
    versions, db = _reports_db(who)
    cache: dict[str, list[dict[str, Any]]] = {}
    shown = []
    for report in versions.list_reports(db):
        rows = list(reversed(versions.list_versions(db, report["report_id"])))
        for row in rows:
            row["files"] = _files_of(who, row, cache)
        shown.append({**report, "versions": rows})
    return page(request, "reports.html", who=who, reports=shown)


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def report_page(
    request: Request, report_id: str, version: int | None = None, who: Visitor = Depends(visitor)
) -> Response:
    require(who.caller, "read")
    versions, db = _reports_db(who)
    rows = list(reversed(versions.list_versions(db, report_id)))
    if not rows:
        raise NotFound(f"no report {report_id!r} in this workspace")
    number = version if version is not None else rows[0]["version"]
    chosen = versions.get_snapshot(db, report_id, number)
    if chosen is None:
        raise NotFound(f"report {report_id!r} has no version {number}")
    cache: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row["files"] = _files_of(who, row, cache)
    chosen["files"] = _files_of(who, chosen, cache)
    title = chosen.get("snapshot", {}).get("title") or report_id
    return page(request, "report.html", who=who, report_id=report_id, title=title, versions=rows, chosen=chosen)


# -- schedules ---------------------------------------------------------------------------------


def _form_values(block: dict[str, Any] | None) -> dict[str, str]:
    block = block or {}
    return {
        "cron": str(block.get("cron") or ""),
        "interval_minutes": str(block.get("interval_minutes") or ""),
        "window_time": str(block.get("window_time") or ""),
        "timezone": str(block.get("timezone") or "UTC"),
    }


def _schedule_body(form: dict[str, str]) -> dict[str, Any]:
    """The edit form as the fields of ``PUT /schedules/{id}``; PolicyError when it cannot be one."""
    body: dict[str, Any] = {}
    problems: list[Problem] = []
    cron = form.get("cron", "").strip()
    minutes = form.get("interval_minutes", "").strip()
    window = form.get("window_time", "").strip()
    if cron:
        body["cron"] = cron
    if minutes:
        if minutes.isdigit():
            body["interval_minutes"] = int(minutes)
        else:
            problems.append(
                Problem("/interval_minutes", f"must be a whole number of minutes, e.g. 15 (got {minutes!r})")
            )
    if window:
        body["window_time"] = window
    body["timezone"] = form.get("timezone", "").strip() or "UTC"
    if not (cron or minutes or window):
        problems.append(
            Problem("", "a schedule needs one of cron, interval (minutes) or window time", hint="e.g. cron 0 7 * * 1-5")
        )
    if problems:
        raise PolicyError(problems)
    return body


def _problem_lines(exc: PolicyError) -> list[dict[str, Any]]:
    return [
        {
            "field": FIELD_LABELS.get(p.pointer, p.pointer.lstrip("/") or "schedule"),
            "message": p.message,
            "hint": p.hint,
        }
        for p in exc.problems
    ]


def _preview(who: Visitor, policy_id: str, form: dict[str, str]) -> dict[str, Any]:
    """The preview of an edit form: ``{"result": ...}`` or ``{"problems": [...]}``."""
    current = policies.latest(who.ws, policy_id).document.get("schedule")
    if not current:
        raise NotFound(f"policy {policy_id!r} has no schedule")
    try:
        return {"result": schedules.preview(_schedule_body(form), current=current), "problems": []}
    except PolicyError as exc:
        return {"result": None, "problems": _problem_lines(exc)}


def _schedules_page(
    request: Request, who: Visitor, editing: dict[str, dict[str, Any]] | None = None, status_code: int = 200
) -> Response:
    from zoneinfo import available_timezones

    entries = schedules.list_schedules(who.ws, who.caller, count=5)
    for entry in entries:
        entry["history"] = schedules.schedule_runs(who.ws, who.caller, entry["policy_id"], limit=10)["runs"]
        state = (editing or {}).get(entry["policy_id"])
        if state is None:
            state = {
                "values": _form_values(entry["schedule"]),
                "preview": {
                    "result": {
                        "description": entry["description"],
                        "timezone": entry["timezone"],
                        "next_fires": entry["next_fires"],
                    },
                    "problems": [],
                },
                "open": False,
            }
        entry["edit"] = state
    return page(
        request,
        "schedules.html",
        who=who,
        status_code=status_code,
        entries=entries,
        saved=request.query_params.get("saved"),
        timezones=sorted(available_timezones()),
    )


@router.get("/schedules", response_class=HTMLResponse)
def schedules_page(request: Request, who: Visitor = Depends(visitor)) -> Response:
    return _schedules_page(request, who)


@router.post("/schedules/{policy_id}/preview", response_class=HTMLResponse)
async def schedule_preview(request: Request, policy_id: str, who: Visitor = Depends(visitor)) -> Response:
    """The next fires of the edit form as it is (nothing saved): a fragment for htmx, else the page."""
    form = await _form(request)
    if not check_csrf(request, who, form):
        return _forbidden(request, who)
    return await run_in_threadpool(_schedule_preview, request, who, policy_id, form)


def _schedule_preview(request: Request, who: Visitor, policy_id: str, form: dict[str, str]) -> Response:
    require(who.caller, "read")
    preview = _preview(who, policy_id, form)
    if _htmx(request):
        return page(request, "_misc_schedule_preview.html", who=who, preview=preview)
    state = {"values": {k: form.get(k, "") for k in (*CADENCE_FIELDS, "timezone")}, "preview": preview, "open": True}
    return _schedules_page(request, who, {policy_id: state})


@router.post("/schedules/{policy_id}/enabled")
async def schedule_enabled(request: Request, policy_id: str, who: Visitor = Depends(visitor)) -> Response:
    form = await _form(request)
    if not check_csrf(request, who, form):
        return _forbidden(request, who)
    enabled = form.get("enabled") == "true"
    await run_in_threadpool(schedules.update_schedule, who.ws, who.caller, policy_id, {"enabled": enabled})
    return RedirectResponse(f"/schedules?saved={policy_id}#{policy_id}", status_code=303)


@router.post("/schedules/{policy_id}")
async def schedule_save(request: Request, policy_id: str, who: Visitor = Depends(visitor)) -> Response:
    form = await _form(request)
    if not check_csrf(request, who, form):
        return _forbidden(request, who)
    return await run_in_threadpool(_schedule_save, request, who, policy_id, form)


def _schedule_save(request: Request, who: Visitor, policy_id: str, form: dict[str, str]) -> Response:
    require(who.caller, "write")
    try:
        schedules.update_schedule(who.ws, who.caller, policy_id, _schedule_body(form))
    except PolicyError as exc:
        values = {k: form.get(k, "") for k in (*CADENCE_FIELDS, "timezone")}
        state = {"values": values, "preview": {"result": None, "problems": _problem_lines(exc)}, "open": True}
        return _schedules_page(request, who, {policy_id: state}, status_code=422)
    return RedirectResponse(f"/schedules?saved={policy_id}#{policy_id}", status_code=303)


# -- deliveries --------------------------------------------------------------------------------


def _deliveries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger rows (one per recipient) as deliveries: one per message (or per step's files)."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["run_id"], row["step_id"], row["channel"], row["dedup_key"], row["message_id"], row["status"])
        group = found.get(key)
        if group is None:
            group = found[key] = {**row, "recipients": [], "errors": []}
        group["recipients"].append(row["recipient"])
        if row.get("error") and row["error"] not in group["errors"]:
            group["errors"].append(row["error"])
        group["sent_at"] = group["sent_at"] or row.get("sent_at")
    return list(found.values())


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(
    request: Request, policy: str | None = None, status: str | None = None, who: Visitor = Depends(visitor)
) -> Response:
    from steps.send import deliveries as ledger

    require(who.caller, "read")
    policy = (policy or "").strip() or None
    status = status if status in DELIVERY_STATUSES else None
    db = who.ws.store.database(ledger.metadata)
    rows = ledger.ledger(db, runs_table, policy_id=policy, status=status, limit=1000)
    return page(
        request,
        "deliveries.html",
        who=who,
        deliveries=_deliveries(rows),
        rows=len(rows),
        policy=policy or "",
        status=status or "",
        statuses=DELIVERY_STATUSES,
        policy_ids=sorted(v.policy_id for v in policies.registry.latest_versions(who.ws.store.engine)),
    )


# -- audit -------------------------------------------------------------------------------------


def _audit_page(
    request: Request, who: Visitor, filters: dict[str, str], verification: dict[str, Any] | None = None
) -> Response:
    from ...governance.audit import ACTIONS

    error = None
    try:
        found = audit.entries(
            who.ws,
            who.caller,
            policy=filters["policy"] or None,
            action=filters["action"] or None,
            since=filters["since"] or None,
            limit=200,
        )
    except UsageError as exc:
        found, error = [], str(exc)
    actions = sorted(set(ACTIONS) | {e["action"] for e in found})
    return page(
        request,
        "audit.html",
        who=who,
        entries=list(reversed(found)),
        filters=filters,
        error=error,
        actions=actions,
        verification=verification,
    )


def _audit_filters(values: Any) -> dict[str, str]:
    return {k: str(values.get(k) or "").strip() for k in ("policy", "action", "since")}


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, who: Visitor = Depends(visitor)) -> Response:
    return _audit_page(request, who, _audit_filters(request.query_params))


@router.post("/audit/verify", response_class=HTMLResponse)
async def audit_verify(request: Request, who: Visitor = Depends(visitor)) -> Response:
    """Recompute the chain: a fragment for htmx, else the audit page with the result."""
    form = await _form(request)
    if not check_csrf(request, who, form):
        return _forbidden(request, who)
    expected = form.get("expected_head", "").strip() or None
    verification = await run_in_threadpool(audit.verify, who.ws, who.caller, expected)
    verification["expected_head"] = expected
    if _htmx(request):
        return page(request, "_misc_audit_verify.html", who=who, verification=verification)
    return await run_in_threadpool(_audit_page, request, who, _audit_filters(form), verification)


# -- settings ----------------------------------------------------------------------------------


def _settings_page(request: Request, who: Visitor, test: dict[str, Any] | None = None, to: str = "") -> Response:
    smtp = server_settings.smtp_settings(who.ws, who.caller)  # Forbidden (403 page) unless admin
    return page(request, "settings.html", who=who, smtp=smtp, test=test, to=to)


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, who: Visitor = Depends(visitor)) -> Response:
    return _settings_page(request, who)


@router.post("/settings/test-email", response_class=HTMLResponse)
async def settings_test_email(request: Request, who: Visitor = Depends(visitor)) -> Response:
    form = await _form(request)
    if not check_csrf(request, who, form):
        return _forbidden(request, who)
    return await run_in_threadpool(_test_email, request, who, form.get("to", "").strip())


def _test_email(request: Request, who: Visitor, to: str) -> Response:
    try:
        test = server_settings.send_test_email(who.ws, who.caller, to)
    except (UsageError, ConfigError) as exc:
        test = {"ok": False, "to": to, "error": str(exc), "server": None, "reply": None}
    if _htmx(request):
        return page(request, "_misc_test_email.html", who=who, test=test)
    return _settings_page(request, who, test, to)
