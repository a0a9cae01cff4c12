"""Policy pages: the list, one policy (graph, plan, versions and a side-by-side diff, dry run with
its previews inline, approve and revoke) and the JSON editor of API-created policies, validated
as one types.

Every action is a service call (:mod:`engine.service`): the roles, approval rules and validation
are theirs, and their errors become HTML error pages (``engine.server.errors``). A button the
visitor's role may not use is not shown; the server refuses it anyway. Every POST checks the
session's CSRF token.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import Conflict, EngineError, PolicyError, Problem
from ...governance.approval import separate_approver
from ...service import approvals, policies, previews, runs
from .graph import graph_svg
from .render import page
from .session import Visitor, check_csrf, visitor
from .session import bad_csrf as _forbidden
from .session import is_htmx as _htmx

router = APIRouter(include_in_schema=False)

STARTER = {
    "schema_version": 1,
    "id": "my-policy",
    "title": "",
    "steps": [{"id": "hello", "type": "core.value", "params": {"value": "hello"}}],
}


def _see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


# -- the list -------------------------------------------------------------------------------------


@router.get("/policies", response_class=HTMLResponse)
def policy_list(request: Request, who: Visitor = Depends(visitor)) -> Response:
    found = sorted(policies.list_policies(who.ws, who.caller), key=lambda p: p["id"])
    return page(request, "policies.html", who=who, policies=found)


# -- the editor -----------------------------------------------------------------------------------


def _editor(
    request: Request,
    who: Visitor,
    *,
    policy_id: str | None,
    text: str,
    problems: list[dict[str, Any]] | None = None,
    checked: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "policy_edit.html",
        who=who,
        status_code=status_code,
        policy_id=policy_id,
        text=text,
        problems=problems or [],
        checked=checked,
    )


@router.get("/policies/new", response_class=HTMLResponse)
def new_policy(request: Request, who: Visitor = Depends(visitor)) -> Response:
    return _editor(request, who, policy_id=None, text=json.dumps(STARTER, indent=2, ensure_ascii=False))


@router.post("/policies/validate", response_class=HTMLResponse)
def validate(
    request: Request,
    document: str = Form(""),
    policy_id: str = Form(""),
    csrf_token: str = Form(""),
    who: Visitor = Depends(visitor),
) -> Response:
    """The editor's live check (an htmx fragment); without JavaScript, the editor again with it."""
    if not check_csrf(request, who, {"csrf_token": csrf_token}):
        return _forbidden(request, who)
    result = policies.validate(who.ws, who.caller, document)
    if _htmx(request):
        return page(request, "_policy_problems.html", who=who, checked=result, problems=result["problems"])
    return _editor(
        request, who, policy_id=policy_id or None, text=document, problems=result["problems"], checked=result
    )


@router.post("/policies", response_class=HTMLResponse)
def create(
    request: Request, document: str = Form(""), csrf_token: str = Form(""), who: Visitor = Depends(visitor)
) -> Response:
    if not check_csrf(request, who, {"csrf_token": csrf_token}):
        return _forbidden(request, who)
    try:
        out = policies.create_policy(who.ws, who.caller, document)
    except PolicyError as exc:
        return _editor(
            request,
            who,
            policy_id=None,
            text=document,
            problems=policies.problem_dicts(exc.problems),
            status_code=422,
        )
    except Conflict as exc:  # the id exists (or is file-backed): keep what was typed, say where to go
        taken = policies.parse(document, who.ws).id
        problem = Problem(
            "/id", str(exc).split(":")[0], hint=f"edit it at /policies/{taken}/edit, or choose another id"
        )
        return _editor(
            request, who, policy_id=None, text=document, problems=policies.problem_dicts([problem]), status_code=409
        )
    return _see_other(f"/policies/{out['id']}?saved={out['version']}")


@router.get("/policies/{policy_id}/edit", response_class=HTMLResponse)
def edit_policy(policy_id: str, request: Request, who: Visitor = Depends(visitor)) -> Response:
    current = policies.get_policy(who.ws, who.caller, policy_id)
    if current["source"] == "file":
        return page(request, "policy_edit.html", who=who, policy_id=policy_id, file_path=current["path"], text="")
    text = json.dumps(current["document"], indent=2, ensure_ascii=False)
    return _editor(request, who, policy_id=policy_id, text=text)


@router.post("/policies/{policy_id}", response_class=HTMLResponse)
def save(
    policy_id: str,
    request: Request,
    document: str = Form(""),
    csrf_token: str = Form(""),
    who: Visitor = Depends(visitor),
) -> Response:
    """A new version (the same content again keeps its version)."""
    if not check_csrf(request, who, {"csrf_token": csrf_token}):
        return _forbidden(request, who)
    try:
        out = policies.update_policy(who.ws, who.caller, policy_id, document)
    except PolicyError as exc:
        return _editor(
            request,
            who,
            policy_id=policy_id,
            text=document,
            problems=policies.problem_dicts(exc.problems),
            status_code=422,
        )
    suffix = f"?saved={out['version']}" if out["new"] else "?unchanged=1"
    return _see_other(f"/policies/{policy_id}{suffix}")


# -- one policy -----------------------------------------------------------------------------------


def _plan_steps(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's steps with their layers counted from 0 (the drawing's first column)."""
    steps = plan["steps"]
    lowest = min((int(s["layer"]) for s in steps), default=0)
    return [{**s, "layer": int(s["layer"]) - lowest} for s in steps]


def _approve_blocked(who: Visitor, current: dict[str, Any], history: list[dict[str, Any]]) -> str | None:
    """Why the Approve button is shown disabled (the rule itself is the service's: it refuses)."""
    if not separate_approver(who.ws.config):
        return None
    same = [v for v in history if v["approval_hash"] == current["approval_hash"]]
    if same and all(v["created_by"] == who.caller.actor for v in same):
        return "you created this version; [governance] separate_approver needs another person"
    return None


def side_by_side(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Rows of two columns (old, new) of the canonical JSON (2-space, keys sorted): each side a
    ``(line number, text, kind)`` or None, ``kind`` one of ``same``, ``del``, ``add``."""

    def lines(doc: dict[str, Any] | None) -> list[str]:
        if doc is None:
            return []
        return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    a, b = lines(old), lines(new)
    rows: list[tuple[Any, Any]] = []
    removed = added = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows.extend(
                ((i + 1, a[i], "same"), (j + 1, b[j], "same"))
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
            continue
        left = [(i + 1, a[i], "del") for i in range(i1, i2)]
        right = [(j + 1, b[j], "add") for j in range(j1, j2)]
        removed += len(left)
        added += len(right)
        for k in range(max(len(left), len(right))):
            rows.append((left[k] if k < len(left) else None, right[k] if k < len(right) else None))
    return {"rows": rows, "removed": removed, "added": added}


def _diff(who: Visitor, policy_id: str, old: int | None, new: int | None) -> dict[str, Any]:
    summary = policies.diff(who.ws, who.caller, policy_id, old, new)
    new_doc = policies.get_policy(who.ws, who.caller, policy_id, summary["to"])["document"]
    old_doc = (
        policies.get_policy(who.ws, who.caller, policy_id, summary["from"])["document"]
        if summary["from"] is not None
        else None
    )
    return {**summary, **side_by_side(old_doc, new_doc)}


def _policy_page(
    request: Request,
    who: Visitor,
    policy_id: str,
    *,
    version: int | None = None,
    diff: dict[str, Any] | None = None,
    notice: str | None = None,
) -> Response:
    current = policies.get_policy(who.ws, who.caller, policy_id)
    shown = policies.get_policy(who.ws, who.caller, policy_id, version) if version is not None else None
    history = policies.versions(who.ws, who.caller, policy_id)
    plan = policies.plan(who.ws, who.caller, policy_id)
    steps = _plan_steps(plan)
    numbers = [v["version"] for v in history]
    default_to = current["latest_version"]
    default_from = max((n for n in numbers if n < default_to), default=default_to)
    return page(
        request,
        "policy.html",
        who=who,
        p=current,
        shown=shown,
        versions=list(reversed(history)),
        plan=plan,
        steps=steps,
        graph=graph_svg(steps, title=f"Graph of policy {policy_id}"),
        diff=diff,
        diff_from=diff["from"] if diff and diff["from"] is not None else default_from,
        diff_to=diff["to"] if diff else default_to,
        approve_blocked=_approve_blocked(who, current, history),
        notice=notice,
    )


@router.get("/policies/{policy_id}", response_class=HTMLResponse)
def policy_page(
    policy_id: str,
    request: Request,
    version: int | None = Query(None, ge=1),
    saved: int | None = Query(None),
    unchanged: int | None = Query(None),
    approved: int | None = Query(None),
    revoked: int | None = Query(None),
    who: Visitor = Depends(visitor),
) -> Response:
    notice = None
    if saved:
        notice = f"Saved version {saved}."
    elif unchanged:
        notice = "Nothing changed: the current version has this content."
    elif approved:
        notice = "Approved."
    elif revoked:
        notice = "Approval revoked."
    return _policy_page(request, who, policy_id, version=version, notice=notice)


@router.get("/policies/{policy_id}/diff", response_class=HTMLResponse)
def policy_diff(
    policy_id: str,
    request: Request,
    from_version: int | None = Query(None, alias="from", ge=1),
    to_version: int | None = Query(None, alias="to", ge=1),
    who: Visitor = Depends(visitor),
) -> Response:
    """The side-by-side diff of two versions: the section alone for htmx, else the whole page."""
    found = _diff(who, policy_id, from_version, to_version)
    if _htmx(request):
        return page(request, "_policy_diff.html", who=who, p={"id": policy_id}, diff=found)
    return _policy_page(request, who, policy_id, diff=found)


# -- approve, revoke ------------------------------------------------------------------------------


@router.post("/policies/{policy_id}/approvals", response_class=HTMLResponse)
def approve(
    policy_id: str,
    request: Request,
    hash: str = Form(""),
    note: str = Form(""),
    csrf_token: str = Form(""),
    who: Visitor = Depends(visitor),
) -> Response:
    return _approval_form(request, who, csrf_token, approvals.approve, policy_id, hash, note, "approved")


@router.post("/policies/{policy_id}/approvals/revoke", response_class=HTMLResponse)
def revoke(
    policy_id: str,
    request: Request,
    hash: str = Form(""),
    note: str = Form(""),
    csrf_token: str = Form(""),
    who: Visitor = Depends(visitor),
) -> Response:
    return _approval_form(request, who, csrf_token, approvals.revoke, policy_id, hash, note, "revoked")


def _approval_form(
    request: Request, who: Visitor, csrf_token: str, action: Any, policy_id: str, hash: str, note: str, done: str
) -> Response:
    """Approve or revoke (the service action), then back to the policy page saying which."""
    if not check_csrf(request, who, {"csrf_token": csrf_token}):
        return _forbidden(request, who)
    action(who.ws, who.caller, policy_id, hash, note.strip() or None)
    return _see_other(f"/policies/{policy_id}?{done}=1")


# -- dry run --------------------------------------------------------------------------------------


def _launch(who: Visitor) -> Any:
    """Hand the prepared run to the server's executor (on the event loop; this route is a worker thread)."""
    from anyio.from_thread import run_sync as on_loop

    executor = who.server.executor
    assert executor is not None, "the server's run executor starts with the application"

    def launch(prepared: Any) -> None:
        on_loop(executor.submit, prepared)

    return launch


@router.post("/policies/{policy_id}/dry-run", response_class=HTMLResponse)
def dry_run(policy_id: str, request: Request, csrf_token: str = Form(""), who: Visitor = Depends(visitor)) -> Response:
    """Start a dry run: for htmx a fragment that follows it and shows its previews, else the run page."""
    if not check_csrf(request, who, {"csrf_token": csrf_token}):
        return _forbidden(request, who)
    if not _htmx(request):
        out = runs.start_run(who.ws, who.caller, policy_id, _launch(who), dry_run=True, trigger="ui")
        return _see_other(f"/runs/{out['run_id']}")
    try:
        out = runs.start_run(who.ws, who.caller, policy_id, _launch(who), dry_run=True, trigger="ui")
    except EngineError as exc:  # htmx swaps only a 2xx answer: the refusal is shown in place
        return page(request, "_policy_dryrun.html", who=who, policy_id=policy_id, run=None, error=str(exc))
    run = {"run_id": out["run_id"], "status": out["status"], "policy_id": policy_id}
    return page(request, "_policy_dryrun.html", who=who, policy_id=policy_id, run=run, error=None)


@router.get("/policies/{policy_id}/dry-runs/{run_id}", response_class=HTMLResponse)
def dry_run_result(policy_id: str, run_id: str, request: Request, who: Visitor = Depends(visitor)) -> Response:
    """The dry run's state (polled while it runs), then its previews: e-mails, files, PDFs."""
    if not _htmx(request):
        return _see_other(f"/runs/{run_id}")
    try:
        run = runs.show(who.ws, who.caller, run_id)
    except EngineError as exc:  # shown in place (htmx swaps only a 2xx answer), and the polling stops
        return page(request, "_policy_dryrun.html", who=who, policy_id=policy_id, run=None, error=str(exc))
    shown: dict[str, Any] = {"emails": [], "files": [], "previews": []}
    pdfs: list[dict[str, Any]] = []
    if run["status"] not in ("RUNNING", "PENDING"):
        shown = previews.describe(run.get("preview_dir"))
        pdfs = [a for a in run.get("artifacts") or [] if a.get("media_type") == "application/pdf"]
    return page(
        request,
        "_policy_dryrun.html",
        who=who,
        policy_id=policy_id,
        run=run,
        error=None,
        previews=shown,
        pdfs=pdfs,
    )
