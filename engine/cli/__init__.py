"""The ``engine`` command: parse arguments, call the library, render, map errors to exit codes.

Exit codes: 0 SUCCESS (or valid), 1 FAILED/CANCELLED, 2 invalid policy or usage, 3 PARTIAL.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import __version__
from ..errors import EngineError, PolicyError, UsageError
from ..plugins import load_plugins
from ..states import RunState
from . import interrupts
from .consoles import LazyConsole

if TYPE_CHECKING:  # commands import what they use when they run: `engine --help` stays fast
    from ..api import RunResult
    from ..runner import Runner
    from ..store import Store
    from ..validate import ValidPolicy

EXIT_BY_STATUS = {
    RunState.SUCCESS.value: 0,
    RunState.FAILED.value: 1,
    RunState.CANCELLED.value: 1,
    RunState.PARTIAL.value: 3,
}

# after the first Ctrl-C a run cancels its steps (waiting at most runner.CANCEL_GRACE_S for them),
# records itself CANCELLED and ends; if it has not ended by then, the process exits anyway
STOP_DEADLINE_S = 4.5

# off a terminal, rich would wrap at 80 columns; keep lines whole for logs and pipes
stdout = LazyConsole(stderr=False)
stderr = LazyConsole(stderr=True)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point.

    The garbage collector is off while the command starts: importing the libraries allocates
    hundreds of thousands of objects, and the full collections that triggers scan them again and
    again (about a tenth of a one-step ``engine run``). Commands that work for long (``run``,
    ``resume``, ``serve``, ``due``, ``server``, ``mcp``) turn it back on when they start working
    (:func:`interrupts.collect_garbage`), with what start-up made frozen out of its scans; the
    others are short reads that end before garbage matters."""
    import gc

    gc.disable()
    try:
        code = cli.main(args=argv, prog_name="engine", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = 2
    except click.Abort:
        stderr.print("aborted")
        code = 1
    except EngineError as exc:
        _report(exc, as_json="--json" in (argv if argv is not None else sys.argv[1:]))
        code = exc.exit_code
    interrupts.exit_process(code or 0)


def _report(exc: EngineError, as_json: bool = False) -> None:
    from . import render

    if as_json:  # whoever asked for JSON gets JSON, errors included
        problems = [p.to_dict() for p in exc.problems] if isinstance(exc, PolicyError) else []
        status = "INVALID" if isinstance(exc, PolicyError) else "ERROR"
        _dump({"status": status, "error": str(exc), "error_type": type(exc).__name__, "problems": problems})
    elif isinstance(exc, PolicyError):
        render.print_problems(stderr, exc.source, exc.problems)
    else:
        from rich.markup import escape

        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


class _LazyGroup(click.Group):
    """The command group, with the commands of ``scheduling.py`` and ``governance.py`` imported only
    when one of them is called (or the command list is shown): ``engine run`` does not load them."""

    LAZY = {
        **dict.fromkeys(("serve", "due", "schedule", "export", "prune"), "scheduling"),
        **dict.fromkeys(("policy", "approve", "revoke", "audit", "token"), "governance"),
        "server": "server",
        "mcp": "mcp",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in set(self.LAZY.values()):
            _load_commands(module)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            _load_commands(self.LAZY[cmd_name])
        return super().get_command(ctx, cmd_name)


def _load_commands(module: str) -> None:
    import importlib

    importlib.import_module(f"{__name__}.{module}")  # its @cli.command()s register themselves


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="engine")
@click.option("--plugin", "plugins", multiple=True, metavar="MODULE", help="Import a step plugin module (repeatable).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="ENGINE_STATE_DIR",
    help="Where run state lives (default ./.engine; env ENGINE_STATE_DIR).",
)
@click.pass_context
def cli(ctx: click.Context, plugins: tuple[str, ...], state_dir: Path | None) -> None:
    """Run declarative DAG policies: validate, plan, run, resume and inspect them."""
    load_plugins(plugins)
    ctx.obj = {"state_dir": state_dir}


state_dir_option = click.option(
    "--state-dir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where run state lives (overrides the global option and ENGINE_STATE_DIR).",
)
grace_option = click.option(
    "--grace-s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM/SIGINT, how long running steps may go on before they are cancelled.",
)
policy_argument = click.argument("policy", type=click.Path(dir_okay=False, path_type=Path))


def format_option(help_text: str) -> Any:
    """``--format text|json|mermaid|dot`` (plan, show)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json", "mermaid", "dot"]),
        default="text",
        show_default=True,
        help=help_text,
    )


def _store(ctx: click.Context, state_dir: Path | None, workspace: str | None = None) -> Store:
    """The store of the workspace (``ENGINE_WORKSPACE``, default ``default``) under the state directory."""
    from ..store import Store
    from ..workspaces import artifacts_dir_for, current_workspace, db_url_for, root_state_dir, state_dir_for

    workspace = workspace or current_workspace()
    root = root_state_dir(state_dir or ctx.obj["state_dir"])
    store = Store(state_dir_for(root, workspace), db_url_for(workspace), artifacts_dir_for(workspace))
    store.mark_interrupted()
    return store


def _state_path(ctx: click.Context, state_dir: Path | None) -> Path | None:
    """The state directory a reading command would open, or None when the workspace's state is in
    the database of ENGINE_DB_URL (its own schema there on PostgreSQL)."""
    from ..workspaces import current_workspace, db_url_for, root_state_dir, state_dir_for

    workspace = current_workspace()
    if db_url_for(workspace) is not None:
        return None
    return state_dir_for(root_state_dir(state_dir or ctx.obj["state_dir"]), workspace)


def _no_state(path: Path) -> str:
    return (
        f"there is no run state in {path}/ (runs are recorded in ./.engine where 'engine run' was started, "
        "or in --state-dir / ENGINE_STATE_DIR)"
    )


def _existing_store(ctx: click.Context, state_dir: Path | None, run_id: str) -> Store:
    """The store of a command that reads a run: never creates an empty state directory."""
    path = _state_path(ctx, state_dir)
    if path is not None and not (path / "engine.db").exists():
        raise UsageError(f"no run {run_id!r}: {_no_state(path)}")
    return _store(ctx, state_dir)


def _approval_now(ctx: click.Context, valid: ValidPolicy, state_dir: Path | None) -> dict[str, Any]:
    """The policy's approval hash, and whether it is approved in the state database (if there is one)."""
    from ..governance import approval, registry

    digest = registry.approval_hash(valid.document)
    path = _state_path(ctx, state_dir)
    if path is not None and not (path / "engine.db").exists():
        return approval.ApprovalState(digest, False).to_dict()
    store = _store(ctx, state_dir)
    try:
        return approval.approval_of(store.engine, valid.id, digest).to_dict()
    finally:
        store.close()


def _param_strings(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# -- validate, plan, schema, steps ----------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="POLICY_OR_FOLDER...")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(paths: tuple[Path, ...], as_json: bool) -> None:
    """Check policies and report every problem with its location (exit 2 if any).

    Each argument is a policy file or a folder: a folder's *.json files are checked as
    `engine serve` loads them, and a policy id used by more than one file is a problem for
    every one of them."""
    from ..validate import validate_file

    if len(paths) == 1 and not paths[0].is_dir():
        _validate_one(paths[0], as_json)
        return
    from ..folders import load_folder
    from . import render

    files = [p for p in paths if not p.is_dir()]
    missing = [p for p in files if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(map(str, missing))}")
    scan = load_folder([p for p in paths if p.is_dir()])
    results = []
    for path in [*files, *scan.files]:
        if path in scan.files:
            found = scan.files[path]
            problems = scan.problems().get(path, [])
            valid = found.valid if not found.problems else None
            shared = [str(p) for p in scan.shared_with(path)] if len(scan.shared_with(path)) > 1 else None
        else:
            shared = None
            try:
                valid, problems = validate_file(path), []
            except PolicyError as exc:
                valid, problems = None, list(exc.problems)
        results.append((path, valid, problems, shared))
    ok = all(not problems for _, _, problems, _ in results)
    if as_json:
        _dump(
            {
                "valid": ok,
                "policies": [
                    {
                        "valid": not problems,
                        "policy": str(path),
                        "policy_id": valid.id if valid else None,
                        "steps": len(valid.position_of) if valid else None,
                        "problems": [p.to_dict() for p in problems],
                        **({"files": shared} if shared else {}),
                    }
                    for path, valid, problems, shared in results
                ],
            }
        )
    else:
        for path, valid, problems, _ in results:
            if problems:
                render.print_problems(stderr, str(path), problems)
            elif valid is not None:
                stdout.print(f"{path}: valid ({len(valid.main_ids)} steps, {len(valid.failure_ids)} on_failure)")
        bad = sum(1 for _, _, problems, _ in results if problems)
        summary = (
            f"{len(results)} policy files, {bad} with problems" if bad else f"{len(results)} policy files, all valid"
        )
        (stderr if bad else stdout).print(summary)
    if not ok:
        raise click.exceptions.Exit(2)


def _validate_one(policy: Path, as_json: bool) -> None:
    from ..validate import validate_file

    try:
        valid = validate_file(policy)
    except PolicyError as exc:
        from . import render

        if as_json:
            _dump({"valid": False, "policy": str(policy), "problems": [p.to_dict() for p in exc.problems]})
        else:
            render.print_problems(stderr, str(policy), exc.problems)
        raise click.exceptions.Exit(2) from None
    if as_json:
        _dump(
            {
                "valid": True,
                "policy": str(policy),
                "policy_id": valid.id,
                "steps": len(valid.position_of),
                "problems": [],
            }
        )
    else:
        # plain text (no rich, whose import a valid policy does not need; a '[' in a path stays as it is)
        click.echo(f"{policy}: valid ({len(valid.main_ids)} steps, {len(valid.failure_ids)} on_failure)")


@cli.command()
@policy_argument
@format_option("text: layers in words; json: the plan as JSON; mermaid or dot: a diagram of the graph.")
@click.option("--dry-run", is_flag=True, help="Show which steps a dry run would preview.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Set a run parameter.")
@state_dir_option
@click.pass_context
def plan(
    ctx: click.Context, policy: Path, fmt: str, dry_run: bool, params: tuple[str, ...], state_dir: Path | None
) -> None:
    """Show the execution layers and what each step would do, without running anything."""
    from ..api import run_params
    from ..plan import make_plan
    from ..validate import validate_file
    from . import diagrams

    valid = validate_file(policy)
    result = make_plan(valid, run_params(valid, _param_strings(params)), dry_run)
    result.approval = _approval_now(ctx, valid, state_dir)
    if fmt == "json":
        _dump(result.to_dict())
        return
    if fmt in ("mermaid", "dot"):
        nodes = [(s.id, f"{s.type} · {s.action}", s.action) for s in result.steps]
        deps = {s.id: s.depends_on for s in result.steps}
        text = (
            diagrams.mermaid(nodes, deps, valid.failure_ids)
            if fmt == "mermaid"
            else diagrams.dot(valid.id, nodes, deps, valid.failure_ids)
        )
        click.echo(text, nl=False)
        return
    main_layers = len({s.layer for s in result.steps if s.phase == "main"})
    stdout.print(
        f"policy {valid.id}: {len(valid.main_ids)} steps in {main_layers} layers "
        f"(max_concurrency {result.max_concurrency}){' - dry run' if dry_run else ''}"
    )
    current = None
    id_width = max((len(s.id) for s in result.steps), default=0)
    type_width = max((len(s.type) for s in result.steps), default=0)
    action_width = max((len(s.action) for s in result.steps), default=0)
    for step in result.steps:
        if step.layer != current:
            current = step.layer
            label = "on_failure" if step.phase == "on_failure" else "layer"
            stdout.print(f"{label} {step.layer}")
        note = f"  ({step.reason})" if step.reason else ""
        after = f"  after {', '.join(step.depends_on)}" if step.depends_on else ""
        line = f"  {step.id:<{id_width}}  {step.type:<{type_width}}  {step.action:<{action_width}}{after}{note}"
        stdout.print(line.rstrip(), markup=False)
    approval = result.approval
    state = f"approved by {approval['approved_by']}" if approval["approved"] else "not approved"
    stdout.print(f"approval hash {approval['hash']} ({state})", markup=False, highlight=False, soft_wrap=True)


@cli.command()
def schema() -> None:
    """Print the policy JSON Schema (Draft 2020-12), with params typed per step type."""
    from ..schema import policy_schema

    _dump(policy_schema())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the manifest: each type's Params/Output JSON Schemas.")
def steps(as_json: bool) -> None:
    """List the registered step types."""
    from rich.markup import escape

    from ..schema import manifest
    from ..step import registry
    from . import render

    if as_json:
        _dump({"steps": manifest()})
        return
    for cls in registry.types():
        aliases = f" (alias: {', '.join(cls.aliases)})" if cls.aliases else ""
        effects = " [side effects]" if cls.side_effects else ""
        stdout.print(f"[bold]{cls.type}[/]{aliases}{escape(effects)}")
        summary = " ".join(cls.description().split("\n\n")[0].split())  # the first paragraph, on one line
        stdout.print(render.code_spans(f"    {summary}"))


# -- run, resume ------------------------------------------------------------------------------


@cli.command()
@policy_argument
@click.option("--dry-run", is_flag=True, help="Preview steps with side effects instead of running them.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Set a run parameter (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as one JSON object.")
@state_dir_option
@click.pass_context
def run(
    ctx: click.Context, policy: Path, dry_run: bool, params: tuple[str, ...], as_json: bool, state_dir: Path | None
) -> None:
    """Run a policy."""
    from ..api import run_params, run_policy
    from ..validate import validate_file

    valid = validate_file(policy)
    strings = _param_strings(params)
    run_params(valid, strings)  # bad params are exit 2, before anything is recorded
    store = _store(ctx, state_dir)

    async def go(observer: Any, on_runner: Any) -> RunResult:
        return await run_policy(
            valid,
            store=store,
            param_strings=strings,
            dry_run=dry_run,
            observer=observer,
            on_runner=on_runner,
            trigger="manual",
        )

    result = _execute(store, valid, go, as_json, "run")
    _finish(result, as_json)


@cli.command()
@click.argument("run_id")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Resume with this edited policy file (same id): changed steps and their dependents run again. "
    "Without it the policy as the run recorded it is used, and edits to the file are ignored.",
)
@click.option(
    "--rerun",
    "rerun",
    multiple=True,
    metavar="STEP",
    help="Run STEP again (and what depends on it) though its earlier result would be kept, "
    "e.g. a side-effect step downstream of a change (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as one JSON object.")
@state_dir_option
@click.pass_context
def resume(
    ctx: click.Context,
    run_id: str,
    policy_path: Path | None,
    rerun: tuple[str, ...],
    as_json: bool,
    state_dir: Path | None,
) -> None:
    """Continue a FAILED, PARTIAL or CANCELLED run without redoing what succeeded.

    RUN_ID may be a unique prefix of the run id. Edits to the policy file need --policy FILE:
    without it the resume runs the policy as the run recorded it."""
    from rich.markup import escape

    from ..api import plan_resume, resume_run
    from ..validate import validate_file

    store = _existing_store(ctx, state_dir, run_id)
    valid = validate_file(policy_path) if policy_path else None
    plan = plan_resume(run_id, store=store, policy_path=policy_path, rerun=rerun)
    for warning in plan.warnings():
        stderr.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)

    async def go(observer: Any, on_runner: Any) -> RunResult:
        return await resume_run(
            plan.run_id, store=store, policy_path=policy_path, rerun=rerun, observer=observer, on_runner=on_runner
        )

    result = _execute(store, valid or plan.valid, go, as_json, "resume")
    _finish(result, as_json)


def _execute(store: Store, valid: ValidPolicy | None, go: Any, as_json: bool, verb: str) -> RunResult:
    from .. import logs

    live = sys.stdout.isatty() and not as_json  # the live table; rich is imported only then
    logs.configure(store.state_dir, console_level=30 if live else 20)
    table: Any = None
    runners: list[Runner] = []

    def stop(sig: signal.Signals) -> None:
        for runner in runners:
            runner.cancel(f"cancelled by {sig.name}")

    async def main() -> RunResult:
        return await go(table.observe if table else None, runners.append)

    try:
        if live:
            ids = (valid.main_ids + valid.failure_ids) if valid else []
            title = f"{verb} {valid.id}" if valid else verb
            from . import render

            with render.LiveTable(stdout, ids, title) as table:
                return interrupts.run_async(main, stop, deadline_s=STOP_DEADLINE_S)
        return interrupts.run_async(main, stop, deadline_s=STOP_DEADLINE_S)
    finally:
        logs.close()


def _finish(result: RunResult, as_json: bool) -> None:
    if as_json:
        _dump(result.to_dict())
    elif sys.stdout.isatty():
        from . import render

        render.print_run_summary(stdout, result)
    else:  # to stderr, plain: rich is not even imported
        from .summary import write_run_summary

        write_run_summary(sys.stderr, result)
    raise click.exceptions.Exit(EXIT_BY_STATUS.get(result.status, 1))


# -- runs, show ------------------------------------------------------------------------------


TRIGGERS = ("manual", "schedule", "resume", "api")


@cli.command()
@click.option("--policy", "policy_id", metavar="POLICY_ID", help="Only runs of this policy id.")
@click.option(
    "--status", type=click.Choice([s.value for s in RunState], case_sensitive=False), help="Only runs in this state."
)
@click.option(
    "--trigger",
    type=click.Choice(TRIGGERS),
    help="Only runs started this way (manual, schedule, api); resume: only runs that were resumed.",
)
@click.option(
    "--since",
    "--from",
    "since",
    metavar="TIME",
    help="Only runs started at or after TIME (ISO 8601; UTC if no offset).",
)
@click.option(
    "--until", "--to", "until", metavar="TIME", help="Only runs started before TIME (ISO 8601; UTC if no offset)."
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@state_dir_option
@click.pass_context
def runs(
    ctx: click.Context,
    policy_id: str | None,
    status: str | None,
    trigger: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    state_dir: Path | None,
) -> None:
    """List recent runs, newest first."""
    from . import render

    bounds = {name: _utc_text(name, value) for name, value in (("--since", since), ("--until", until))}
    path = _state_path(ctx, state_dir)
    if path is not None and not (path / "engine.db").exists():
        if as_json:
            _dump({"runs": []})
        else:
            stdout.print(f"no runs yet: {_no_state(path)}", markup=False)
        return
    store = _store(ctx, state_dir)
    rows = store.list_runs(policy_id, status, limit, trigger=trigger, since=bounds["--since"], until=bounds["--until"])
    if status in (None, "SKIPPED") and trigger in (None, "schedule"):
        rows = _with_refused_slots(store, rows, policy_id, limit, bounds["--since"], bounds["--until"])
    if as_json:
        keys = (
            "id",
            "policy_id",
            "status",
            "attempt",
            "dry_run",
            "trigger",
            "scheduled_for",
            "started_at",
            "finished_at",
            "error",
        )
        _dump(
            {
                "runs": [
                    {("run_id" if k == "id" else k): (bool(r[k]) if k == "dry_run" else r[k]) for k in keys}
                    for r in rows
                ]
            }
        )
    else:
        render.print_runs(
            stdout, rows, filtered=bool(policy_id or status or trigger or since or until), where=store.state_dir
        )


def _with_refused_slots(
    store: Store, rows: list[dict[str, Any]], policy_id: str | None, limit: int, since: str | None, until: str | None
) -> list[dict[str, Any]]:
    """Runs plus the scheduled slots that governance refused (not approved, over a quota): they ran
    nothing, but a person looking for this morning's report must see why there is none."""
    refused = [
        {
            "id": None,
            "policy_id": slot["policy_id"],
            "status": "SKIPPED",
            "attempt": 0,
            "dry_run": False,
            "trigger": "schedule",
            "scheduled_for": slot["scheduled_for"],
            "started_at": slot["claimed_at"],
            "finished_at": slot["finished_at"],
            "error": f"skipped: {slot['reason']}",
        }
        for slot in store.list_slots(policy_id, "SKIPPED")
        if (slot["reason"] or "").startswith(("not approved", "quota"))
        and (since is None or slot["claimed_at"] >= since)
        and (until is None or slot["claimed_at"] < until)
    ]
    if not refused:
        return rows
    merged = sorted([*rows, *refused], key=lambda r: r["started_at"], reverse=True)
    return merged[:limit]


def _utc_text(option: str, value: str | None) -> str | None:
    """An ISO 8601 time as the stored UTC text (``2026-12-01`` is midnight UTC)."""
    if value is None:
        return None
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {value!r}: expected an ISO 8601 time such as 2026-12-01T07:00 or 2026-12-01"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON (same as --format json).")
@format_option("text: a table of the steps; json: the run as JSON; mermaid or dot: the graph coloured by state.")
@state_dir_option
@click.pass_context
def show(ctx: click.Context, run_id: str, as_json: bool, fmt: str, state_dir: Path | None) -> None:
    """Show one run: its steps, states, attempts and errors (RUN_ID may be a unique prefix)."""
    from ..api import get_run
    from . import diagrams, render

    store = _existing_store(ctx, state_dir, run_id)
    result = get_run(store, run_id)
    if as_json or fmt == "json":
        _dump(result.to_dict())
        return
    if fmt in ("mermaid", "dot"):
        row = store.get_run(result.run_id)
        assert row is not None
        doc = json.loads(row["policy_json"])
        deps = _declared_deps(doc, result)
        nodes = [(s.id, f"{s.type} · {s.status}", s.status) for s in result.steps]
        failure = [s.id for s in result.steps if s.phase == "on_failure"]
        text = (
            diagrams.mermaid(nodes, deps, failure)
            if fmt == "mermaid"
            else diagrams.dot(result.policy_id, nodes, deps, failure)
        )
        click.echo(text, nl=False)
        return
    render.print_run_detail(stdout, result)


def _declared_deps(doc: dict[str, Any], result: RunResult) -> dict[str, list[str]]:
    """The run's graph edges, recomputed from its stored policy snapshot."""
    from ..validate import validate_document

    try:
        return validate_document(doc).deps
    except PolicyError:  # a step type that is no longer installed: fall back to depends_on
        return {s.get("id"): list(s.get("depends_on", [])) for s in doc.get("steps", []) + doc.get("on_failure", [])}


# scheduling.py (serve, due, schedule, export, prune) and governance.py (policy, approve, revoke,
# audit, token) register their commands when _LazyGroup imports them
