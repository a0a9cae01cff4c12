"""The MCP face: agents author, check, preview and run policies over the Model Context Protocol.

Built on the official SDK (``mcp`` 2.x, :class:`mcp.server.mcpserver.MCPServer`). Every tool calls
one action of :mod:`engine.service`, so the rules are the REST API's and the CLI's: a real run
needs a version a person approved by hash (there is deliberately no approve tool), quotas count
per actor, step types and hosts are allow-listed. The engine's errors become tool errors here, in
one place (:func:`_explain`), with what a person must do.

Two transports, the same tools: ``engine mcp`` (stdio; the actor is ``mcp:<ENGINE_ACTOR or
user>``, the workspace ``ENGINE_WORKSPACE``) and streamable HTTP at ``/mcp`` in ``engine server``
(bearer tokens, roles and workspaces as the REST API; a viewer sees only the read-only tools).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from anyio import to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ImageContent, ListToolsResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .. import __version__
from ..errors import Conflict, EngineError, NotApproved, NotFound, PolicyError, QuotaExceeded
from ..service import Caller, Workspace, approvals, policies, previews, runs, schedules

MAX_WAIT_S = 600.0
SOURCE = "mcp"

INSTRUCTIONS = """\
This server runs declarative JSON policies (DAGs of fetch, transform, report, render and send
steps). Write a policy with get_policy_schema and list_step_types, check it with validate_policy
(every problem with its JSON pointer and line), record it with create_policy, see what it would do
with plan_policy and dry_run (emails and files it would send or write, without sending), and look
at the report with preview_report. A real run (run_pipeline) only starts for a version whose
approval hash a person approved: ask with request_approval; a person approves it with
'engine approve' or the REST API. Schedules: update_policy_schedule, get_schedule_status."""


@dataclass(frozen=True)
class McpSession:
    """Who calls, in which workspace, and how runs are started and cancelled here."""

    caller: Caller
    ws: Workspace
    launch: Callable[[Any], None]


Resolver = Callable[[Context], McpSession]


# -- output models (the tools' output schemas) -------------------------------------------------------


class Problem(BaseModel):
    pointer: str
    line: int | None = None
    column: int | None = None
    message: str
    hint: str | None = None


class StepTypes(BaseModel):
    steps: list[dict[str, Any]] = Field(description="Each type: type, description, side_effects, params schema.")


class PolicySchema(BaseModel):
    schema_: dict[str, Any] = Field(alias="schema", description="The policy JSON Schema (Draft 2020-12).")


class Recorded(BaseModel):
    id: str | None = Field(description="The policy id (null when the document is invalid).")
    version: int | None = None
    hash: str | None = None
    approval_hash: str | None = Field(None, description="What a person approves (the policy without 'schedule').")
    approved: bool = False
    problems: list[Problem] = Field(default_factory=list, description="Every problem; empty when recorded.")


class Validation(BaseModel):
    valid: bool
    id: str | None = None
    hash: str | None = None
    approval_hash: str | None = None
    problems: list[Problem] = Field(default_factory=list)


class PolicyView(BaseModel):
    id: str
    version: int
    latest_version: int
    hash: str
    approval_hash: str
    approved: bool
    approved_version: int | None = None
    schedule: str | None = Field(None, description="A summary of the schedule, or null.")
    last_run: dict[str, Any] | None = None
    document: dict[str, Any]


class PolicyList(BaseModel):
    policies: list[dict[str, Any]] = Field(
        description="id, version (latest), approved, approved_version, schedule summary, last_run."
    )


class Plan(BaseModel):
    policy_id: str
    layers: list[list[str]]
    steps: list[dict[str, Any]] = Field(description="Each step: id, type, layer, action (run|preview|skip), reason.")
    approval: dict[str, Any] | None = Field(None, description="The approval hash, and whether it is approved.")
    recorded: bool = Field(description="True: the plan of a recorded policy; false: of a document given.")


class StepState(BaseModel):
    id: str
    status: str
    skip_reason: str | None = None
    error: str | None = None


class DryRun(BaseModel):
    run_id: str
    status: str
    steps: list[StepState]
    emails: list[dict[str, Any]] = Field(
        description="Each email it would send: recipients, subject, attachments (name, size), plain text."
    )
    files: list[dict[str, Any]] = Field(description="Each file it would write: path, name, size.")


class ReportPreview(BaseModel):
    run_id: str
    status: str
    report: dict[str, Any] | None = Field(
        description="report_id, title, version, metrics (value, comparison), conditional_sections (shown, why)."
    )
    pdf: dict[str, Any] | None = Field(description="sha256, size, pages, uri (pipeline://artifacts/...), url.")


class RunStarted(BaseModel):
    run_id: str
    policy_id: str
    version: int
    scheduled_for: str | None = Field(None, description="The schedule slot the run is for (deliveries once per slot).")
    status: str = Field(description="RUNNING, or the end state when it finished within wait_s.")
    finished: bool
    run: dict[str, Any] | None = Field(None, description="The run (engine show --json) when it finished.")


class RunView(BaseModel):
    run: dict[str, Any] = Field(description="The run as 'engine show --json' prints it.")


class History(BaseModel):
    runs: list[dict[str, Any]]


class ScheduleStatus(BaseModel):
    schedules: list[dict[str, Any]] = Field(
        description="Per policy: description, next 5 fires (UTC and local), last run, overdue, recent runs and "
        "skipped slots with reasons."
    )


class ApprovalRequested(BaseModel):
    policy_id: str
    hash: str
    versions: list[int]
    requested_by: str
    requested_at: str
    approved: bool
    how_to_approve: str


# -- helpers ------------------------------------------------------------------------------------------


def _explain(exc: EngineError) -> str:
    """An engine error as the text of a tool error: why, and what a person must do."""
    if isinstance(exc, PolicyError):
        lines = [f"the policy is invalid: {len(exc.problems)} problem(s)"]
        lines += [f"- {p}" for p in exc.problems]
        return "\n".join(lines)
    if isinstance(exc, NotApproved):
        text = str(exc)
        if exc.policy_id and exc.approval_hash:
            text += (
                f". An agent cannot approve: ask a person with request_approval (id {exc.policy_id!r}, hash "
                f"{exc.approval_hash}); an approver approves it with 'engine approve {exc.policy_id} --hash "
                f"{exc.approval_hash}' or POST /api/v1/policies/{exc.policy_id}/approvals"
            )
        return text
    if isinstance(exc, QuotaExceeded):
        return str(exc)
    text = str(exc)
    if isinstance(exc, Conflict) and "PUT /api/v1/policies/" in text:
        return text.split(":")[0] + ": record a new version of it with update_policy"
    if isinstance(exc, NotFound) and "in the registry" in text:
        return text.split(":")[0] + " in this workspace (list_policies shows them; create_policy records one)"
    return text


@contextlib.contextmanager
def _resource_errors() -> Iterator[None]:
    """An engine error while reading a resource, as the resource error the client sees (with why)."""
    from mcp.server.mcpserver.exceptions import ResourceError

    try:
        yield
    except EngineError as exc:
        raise ResourceError(_explain(exc)) from None


def _result(model: BaseModel, summary: str, *extra: Any) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=summary), *extra],
        structured_content=model.model_dump(mode="json", by_alias=True),
    )


def _document(value: dict[str, Any] | str) -> str | dict[str, Any]:
    """A policy given as a JSON object (or JSON text, which the SDK parses into one). Problems get
    the line and column in the document printed as JSON with 2-space indentation (as get_policy
    shows it); only text that does not parse keeps its own lines (the syntax error's place)."""
    return value


def _problems(exc: PolicyError) -> list[Problem]:
    return [Problem(**p) for p in policies.problem_dicts(list(exc.problems))]


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _annotations(read_only: bool, destructive: bool, idempotent: bool, open_world: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=open_world
    )


class _EngineMCP(MCPServer):
    """The SDK's server, with ``tools/list`` answering by the caller's role: a viewer sees only the
    read-only tools (calling another is refused by the action's role check anyway)."""

    def __init__(self, resolve: Resolver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resolve = resolve

    async def _handle_list_tools(self, ctx: Any, params: Any) -> ListToolsResult:
        tools = await self.list_tools()
        session = self._resolve(Context(request_context=ctx, mcp_server=self))
        if not session.caller.may("write"):
            tools = [t for t in tools if t.annotations is not None and t.annotations.read_only_hint]
        return ListToolsResult(tools=tools)


def build(resolve: Resolver) -> MCPServer:
    """The MCP server; ``resolve`` tells each request's session (caller, workspace, run launcher)."""
    import logging

    root = logging.getLogger()
    if not root.handlers:  # the SDK would install its rich console handler on the root logger
        root.addHandler(logging.NullHandler())  # (the engine logs through structlog: engine.logs)
    mcp = _EngineMCP(resolve, name="policy-engine", version=__version__, instructions=INSTRUCTIONS)

    def tool(annotations: ToolAnnotations, output: type[BaseModel]) -> Callable[[Callable[..., Any]], Any]:
        """Register a tool whose body runs in a worker thread (the actions are blocking calls) and
        whose engine errors become tool errors with what to do."""

        def register(fn: Callable[..., Awaitable[CallToolResult]]) -> Any:
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> CallToolResult:
                try:
                    return await fn(*args, **kwargs)
                except EngineError as exc:
                    raise ToolError(_explain(exc)) from None

            # the output schema comes from the return annotation: CallToolResult carrying ``output``
            signature = inspect.signature(fn, eval_str=True)
            wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
                return_annotation=Annotated[CallToolResult, output]
            )
            mcp.add_tool(wrapper, annotations=annotations)
            return wrapper

        return register

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    # -- authoring ---------------------------------------------------------------------------------

    @tool(READ_ONLY, StepTypes)
    async def list_step_types(ctx: Context) -> CallToolResult:
        """Every step type a policy may use: its description, whether it has side effects, and the
        JSON Schema of its params."""
        from ..schema import manifest

        resolve(ctx)
        found = await call(manifest)
        return _result(StepTypes(steps=found), f"{len(found)} step types: " + ", ".join(s["type"] for s in found))

    @tool(READ_ONLY, PolicySchema)
    async def get_policy_schema(ctx: Context) -> CallToolResult:
        """The JSON Schema (Draft 2020-12) of a policy document, with every step type's params."""
        from ..schema import policy_schema

        resolve(ctx)
        schema = await call(policy_schema)
        return _result(PolicySchema(schema=schema), "the policy JSON Schema (also the resource pipeline://policies)")

    @tool(READ_ONLY, Validation)
    async def validate_policy(document: dict[str, Any] | str, ctx: Context) -> CallToolResult:
        """Check a policy document and record nothing: every problem with its JSON pointer, line and message."""
        s = resolve(ctx)
        out = await call(policies.validate, s.ws, s.caller, _document(document))
        model = Validation(**{**out, "problems": [Problem(**p) for p in out["problems"]]})
        summary = "valid" if model.valid else f"invalid: {len(model.problems)} problem(s)"
        return _result(model, summary)

    @tool(_annotations(False, False, False), Recorded)
    async def create_policy(document: dict[str, Any] | str, ctx: Context) -> CallToolResult:
        """Validate and record a new policy (version 1, not approved). An invalid document is not
        recorded: ``problems`` lists every problem with pointer, line and message."""
        s = resolve(ctx)
        try:
            out = await call(policies.create_policy, s.ws, s.caller, _document(document), SOURCE)
        except PolicyError as exc:
            model = Recorded(id=None, problems=_problems(exc))
            return _result(model, f"not recorded: {len(model.problems)} problem(s)")
        model = Recorded(**{k: out[k] for k in ("id", "version", "hash", "approval_hash", "approved")})
        return _result(model, f"recorded {model.id} version {model.version}; approval hash {model.approval_hash}")

    @tool(_annotations(False, False, True), Recorded)
    async def update_policy(id: str, document: dict[str, Any] | str, ctx: Context) -> CallToolResult:
        """Record a new version of a policy (the same content again is its existing version). An
        invalid document is not recorded: ``problems`` lists every problem."""
        s = resolve(ctx)
        try:
            out = await call(policies.update_policy, s.ws, s.caller, id, _document(document), SOURCE)
        except PolicyError as exc:
            model = Recorded(id=id, problems=_problems(exc))
            return _result(model, f"not recorded: {len(model.problems)} problem(s)")
        model = Recorded(**{k: out[k] for k in ("id", "version", "hash", "approval_hash", "approved")})
        state = "approved" if model.approved else "not approved"
        return _result(model, f"{model.id} is at version {model.version} ({state})")

    @tool(READ_ONLY, PolicyView)
    async def get_policy(id: str, ctx: Context, version: int | None = None) -> CallToolResult:
        """A policy's document (the current version, or ``version``), its hashes and approval."""
        s = resolve(ctx)
        out = await call(policies.get_policy, s.ws, s.caller, id, version)
        model = PolicyView(**{k: out.get(k) for k in PolicyView.model_fields})
        state = "approved" if model.approved else "not approved"
        return _result(model, f"{id} version {model.version}, current {model.latest_version} ({state})")

    @tool(READ_ONLY, PolicyList)
    async def list_policies(ctx: Context) -> CallToolResult:
        """Every policy: latest version, approved version, schedule summary and last run status."""
        s = resolve(ctx)
        found = await call(policies.list_policies, s.ws, s.caller)
        listed = [
            {
                "id": p["id"],
                "version": p["version"],
                "approved": p["approved"],
                "approved_version": p["approved_version"],
                "approval_hash": p["approval_hash"],
                "schedule": p["schedule"],
                "last_run": p["last_run"],
                "source": p["source"],
            }
            for p in found
        ]
        return _result(PolicyList(policies=listed), f"{len(listed)} polic{'y' if len(listed) == 1 else 'ies'}")

    @tool(READ_ONLY, Plan)
    async def plan_policy(
        ctx: Context, id: str | None = None, document: dict[str, Any] | str | None = None
    ) -> CallToolResult:
        """What a run would do, layer by layer (run, preview or skip, and why), with the approval
        hash: of a recorded policy (``id``) or of a document not recorded (``document``)."""
        s = resolve(ctx)
        if (id is None) == (document is None):
            raise ToolError("give either id (a recorded policy) or document (a policy to plan without recording)")
        if id is not None:
            out = await call(policies.plan, s.ws, s.caller, id)
            recorded = True
        else:
            assert document is not None
            out = await call(policies.plan_document, s.ws, s.caller, _document(document))
            recorded = False
        model = Plan(**{k: out.get(k) for k in ("policy_id", "layers", "steps", "approval")}, recorded=recorded)
        return _result(model, f"{len(model.steps)} steps in {len(model.layers)} layers")

    # -- previews -------------------------------------------------------------------------------------

    async def _finish(s: McpSession, run_id: str, wait_s: float) -> dict[str, Any] | None:
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            state = await call(runs.status_of, s.ws, run_id)
            if state["status"] != "RUNNING":
                return await call(runs.show, s.ws, s.caller, run_id)
            if asyncio.get_running_loop().time() >= deadline:
                return None
            await asyncio.sleep(0.1)

    async def _dry_run(s: McpSession, id: str, params: dict[str, Any] | None) -> dict[str, Any]:
        started = await call(runs.start_run, s.ws, s.caller, id, s.launch, params=params, dry_run=True, trigger="mcp")
        finished = await _finish(s, started["run_id"], MAX_WAIT_S)
        if finished is None:
            raise ToolError(f"dry run {started['run_id']} did not finish within {MAX_WAIT_S:g} s; see get_run")
        return finished

    @tool(_annotations(False, False, True), DryRun)
    async def dry_run(id: str, ctx: Context, params: dict[str, Any] | None = None) -> CallToolResult:
        """Run the policy with no side effects (no approval needed): each step's state and skip
        reason, and what it would have done: each email's recipients, subject, attachments (names,
        sizes) and plain-text body; each file's path."""
        s = resolve(ctx)
        run = await _dry_run(s, id, params)
        seen = previews.describe(run.get("preview_dir"))
        steps = [StepState(**{k: st.get(k) for k in StepState.model_fields}) for st in run["steps"]]
        model = DryRun(
            run_id=run["run_id"], status=run["status"], steps=steps, emails=seen["emails"], files=seen["files"]
        )
        summary = (
            f"dry run {model.run_id}: {model.status}; would send {len(model.emails)} email(s) and write "
            f"{len(model.files)} file(s)"
        )
        return _result(model, summary)

    @tool(_annotations(False, False, True), ReportPreview)
    async def preview_report(id: str, ctx: Context, params: dict[str, Any] | None = None) -> CallToolResult:
        """A dry run (no side effects: emails and files are only previewed) for the report: its
        headline values (metric cards; conditional sections shown or hidden and why) as data, the
        PDF's first page as a PNG image, and the PDF's URI."""
        s = resolve(ctx)
        run = await _dry_run(s, id, params)
        report, pdf, image = await call(_report_parts, s.ws, run)
        model = ReportPreview(run_id=run["run_id"], status=run["status"], report=report, pdf=pdf)
        blocks = [ImageContent(type="image", data=image, mime_type="image/png")] if image else []
        if report is None:
            summary = f"dry run {model.run_id}: {model.status}; the policy builds no report (report.build)"
        else:
            cards = ", ".join(f"{m['label']} {m['value']}" for m in report["metrics"][:6])
            summary = f"report {report['report_id']} version {report['version']}: {cards}"
        return _result(model, summary, *blocks)

    # -- runs ---------------------------------------------------------------------------------------

    @tool(_annotations(False, True, False, open_world=True), RunStarted)
    async def run_pipeline(
        id: str, ctx: Context, params: dict[str, Any] | None = None, wait_s: float = 0, slot: str | None = None
    ) -> CallToolResult:
        """Start a real run of the policy's current version. Refused unless a person approved its
        approval hash, over quota, or with a step type outside the allow-list. Returns the run id,
        and the final summary when the run ends within ``wait_s`` seconds (0 to 600).

        The run is for a schedule slot: ``slot`` (ISO 8601), by default the policy's most recent
        scheduled fire time when it has a schedule. Its emails and files go out once per slot:
        running it again for the same slot sends nothing new (``duplicate``)."""
        s = resolve(ctx)
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise ToolError(f"wait_s {wait_s}: between 0 and {MAX_WAIT_S:g} seconds")
        when = slot or await call(runs.latest_slot, s.ws, id)
        started = await call(
            runs.start_run, s.ws, s.caller, id, s.launch, params=params, trigger="mcp", scheduled_for=when
        )
        finished = await _finish(s, started["run_id"], wait_s) if wait_s else None
        model = RunStarted(
            run_id=started["run_id"],
            policy_id=id,
            version=started["version"],
            scheduled_for=started["scheduled_for"],
            status=finished["status"] if finished else "RUNNING",
            finished=finished is not None,
            run=finished,
        )
        return _result(model, f"run {model.run_id} of {id} version {model.version}: {model.status}")

    @tool(READ_ONLY, RunView)
    async def get_run(run_id: str, ctx: Context) -> CallToolResult:
        """One run, as 'engine show --json' prints it: steps, states, errors, approval, artifacts."""
        s = resolve(ctx)
        run = await call(runs.show, s.ws, s.caller, run_id)
        return _result(RunView(run=run), f"run {run['run_id']} of {run['policy_id']}: {run['status']}")

    @tool(READ_ONLY, History)
    async def get_pipeline_history(
        ctx: Context, id: str | None = None, limit: int = 20, status: str | None = None
    ) -> CallToolResult:
        """Recent runs, newest first (of one policy with ``id``; ``status`` to filter; ``limit`` 1 to 500)."""
        s = resolve(ctx)
        page = await call(runs.list_runs, s.ws, s.caller, policy=id, status=status, limit=limit)
        return _result(History(runs=page["runs"]), f"{len(page['runs'])} run(s)")

    # -- schedules and approval requests ---------------------------------------------------------------

    @tool(_annotations(False, False, True), ScheduleStatus)
    async def update_policy_schedule(id: str, schedule: dict[str, Any] | None, ctx: Context) -> CallToolResult:
        """Set a policy's ``schedule`` block (as in the policy document: cron, interval_minutes or
        window_time, timezone, enabled, catchup, params), or remove it with null: a new version
        differing only in its schedule (audited, no new approval needed)."""
        s = resolve(ctx)
        await call(schedules.set_schedule, s.ws, s.caller, id, schedule, SOURCE)
        found = await call(schedules.status, s.ws, s.caller, id) if schedule is not None else []
        state = found[0]["description"] if found else "no schedule"
        return _result(ScheduleStatus(schedules=found), f"{id}: {state}")

    @tool(READ_ONLY, ScheduleStatus)
    async def get_schedule_status(ctx: Context, id: str | None = None) -> CallToolResult:
        """Per scheduled policy (or one, ``id``): the schedule's description, the last run (time,
        status), the next 5 fires in UTC and local time, whether a slot is overdue, and recent
        scheduled runs and skipped slots with their reasons."""
        s = resolve(ctx)
        found = await call(schedules.status, s.ws, s.caller, id)
        return _result(
            ScheduleStatus(schedules=found), f"{len(found)} scheduled polic{'y' if len(found) == 1 else 'ies'}"
        )

    @tool(_annotations(False, False, False), ApprovalRequested)
    async def request_approval(id: str, hash: str, ctx: Context, note: str | None = None) -> CallToolResult:
        """Ask a person to approve a version by its approval hash (from create_policy or
        plan_policy): recorded, listed with the versions awaiting approval, and audited. An agent
        cannot approve; a person with the approver role does."""
        s = resolve(ctx)
        out = await call(approvals.request_approval, s.ws, s.caller, id, hash, note)
        how = f"{out['approve_command']} (or POST /api/v1/policies/{id}/approvals by an approver)"
        model = ApprovalRequested(
            **{k: out[k] for k in ApprovalRequested.model_fields if k != "how_to_approve"}, how_to_approve=how
        )
        return _result(model, f"approval of {id} (hash {model.hash[:12]}) requested; a person approves with: {how}")

    # -- resources ----------------------------------------------------------------------------------

    @mcp.resource("pipeline://policies", mime_type="application/schema+json", description="The policy JSON Schema.")
    def policies_schema() -> str:
        from ..schema import policy_schema

        return json.dumps(policy_schema(), indent=2)

    @mcp.resource("pipeline://policies/{id}", mime_type="application/json", description="A policy's current document.")
    def policy_document(id: str, ctx: Context) -> str:
        s = resolve(ctx)
        with _resource_errors():
            return json.dumps(policies.get_policy(s.ws, s.caller, id)["document"], indent=2, ensure_ascii=False)

    # a query variable makes it a template: the SDK gives Context (the caller) to templates only
    @mcp.resource(
        "pipeline://history{?limit}", mime_type="application/json", description="The most recent runs (limit: 50)."
    )
    def history(ctx: Context, limit: int = 50) -> str:
        s = resolve(ctx)
        with _resource_errors():
            return json.dumps(runs.list_runs(s.ws, s.caller, limit=limit)["runs"], indent=2)

    @mcp.resource(
        "pipeline://artifacts/{sha256}",
        mime_type="application/octet-stream",
        description="A file a run stored (a PDF, an HTML page, a chart) by its SHA-256; get_run lists each "
        "artifact's media type.",
    )
    def artifact(sha256: str, ctx: Context) -> bytes:
        s = resolve(ctx)
        with _resource_errors():
            path, _media_type = runs.artifact(s.ws, s.caller, sha256)
            return path.read_bytes()

    return mcp


def _report_parts(
    ws: Workspace, run: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """The report's headlines, its PDF (descriptor) and the PDF's first page as base64 PNG."""
    from steps.report.headlines import headlines

    outputs = runs.step_outputs(ws, run["run_id"])
    types = {st["id"]: st["type"] for st in run["steps"]}
    build = next((outputs[sid] for sid, kind in types.items() if kind == "report.build" and sid in outputs), None)
    report = headlines(build) if isinstance(build, dict) else None
    rendered = next((outputs[sid] for sid, kind in types.items() if kind == "render.pdf" and sid in outputs), None)
    if not isinstance(rendered, dict) or not isinstance(rendered.get("pdf"), dict):
        return report, None, None
    ref = rendered["pdf"]
    try:
        path, _ = runs.artifact(ws, Caller("mcp", "viewer", ws.name), ref["sha256"])
    except NotFound:
        return report, None, None
    from steps.render.thumbnail import first_page_png

    pdf = {
        "sha256": ref["sha256"],
        "name": ref.get("name"),
        "size": ref.get("size"),
        "pages": rendered.get("pages"),
        "uri": f"pipeline://artifacts/{ref['sha256']}",
        "url": f"/api/v1/artifacts/{ref['sha256']}",
    }
    return report, pdf, base64.b64encode(first_page_png(path, width=640)).decode()


# -- transports ---------------------------------------------------------------------------------------


def _session_of(ctx: Context) -> McpSession:
    """The session the bearer-token wrapper put in the HTTP request's scope."""
    request = getattr(ctx.request_context, "request", None)
    scope = getattr(request, "scope", None)
    session = scope.get("engine.session") if isinstance(scope, dict) else None
    if session is None:
        raise ToolError("not authenticated: send 'Authorization: Bearer <token>' ('engine token create')")
    return session


class _BearerAuth:
    """ASGI: the REST API's bearer tokens in front of the MCP endpoint; the session (caller,
    workspace, run launcher) is put in the request's scope for the tools to read."""

    def __init__(self, app: Any, server: Any) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from anyio.from_thread import run_sync as on_loop

        from ..governance import tokens
        from .errors import engine_error

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        presented = headers.get("authorization", "")
        token = presented[7:].strip() if presented.lower().startswith("bearer ") else None
        try:
            info = tokens.authenticate(self.server.tokens_store.engine, token)
        except EngineError as exc:
            await engine_error(None, exc)(scope, receive, send)  # type: ignore[arg-type]
            return
        executor = self.server.executor

        def launch(prepared: Any) -> None:
            on_loop(executor.submit, prepared)

        caller = Caller(actor=info.name, role=info.role, workspace=info.workspace)
        ws = await to_thread.run_sync(self.server.workspace, info.workspace)
        scope["engine.session"] = McpSession(caller, ws, launch)
        await self.app(scope, receive, send)


def http_endpoint(server: Any) -> tuple[Any, Any]:
    """``(ASGI endpoint for /mcp, the session manager to run in the application's lifespan)``:
    streamable HTTP, stateless (each request carries its token), JSON answers."""
    from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
    from mcp.server.transport_security import TransportSecuritySettings

    mcp = build(lambda ctx: _session_of(ctx))
    # every request must carry a bearer token, which a page of another origin cannot supply:
    # the SDK's DNS-rebinding check (Host header allow-list) would only refuse other host names
    mcp.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    manager = mcp.session_manager
    return _BearerAuth(StreamableHTTPASGIApp(manager), server), manager


async def serve_stdio(ws: Workspace, caller: Caller, max_runs: int = 4) -> None:
    """``engine mcp``: the tools over stdin/stdout for one local agent, runs executed here."""
    from anyio.from_thread import run_sync as on_loop

    from ..service.executor import RunExecutor

    executor = RunExecutor(max_runs)

    def launch(prepared: Any) -> None:
        on_loop(executor.submit, prepared)

    session = McpSession(caller, ws, launch)
    mcp = build(lambda ctx: session)
    try:
        await mcp.run_stdio_async()
    finally:
        await executor.shutdown(30.0, "engine mcp")
