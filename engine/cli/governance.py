"""``engine policy``, ``engine approve``/``revoke`` and ``engine audit``: the registry, approvals and
the audit chain on the command line. Every rule is in :mod:`engine.governance`; this module
parses, calls and prints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import PolicyError, UsageError
from . import _dump, _store, cli, state_dir_option, stderr, stdout

if TYPE_CHECKING:
    from ..store import Store


def _actor() -> str:
    from ..governance import current_actor

    return current_actor()


# -- engine policy ------------------------------------------------------------------------------


@cli.group()
def policy() -> None:
    """The policy registry: versions of each policy by content, who made them, their approval."""


@policy.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE_OR_FOLDER...")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded versions as JSON.")
@state_dir_option
@click.pass_context
def policy_add(ctx: click.Context, paths: tuple[Path, ...], as_json: bool, state_dir: Path | None) -> None:
    """Validate policies and record each as a version (a new one only if its content changed).

    An invalid file is refused with its problems and recorded nowhere (exit 2); a folder's *.json
    files are all validated before any is recorded. Counts toward [quotas] policy_versions_per_day."""
    from ..config import EngineConfig
    from ..folders import load_folder
    from ..governance import approval, registry
    from ..validate import validate_file
    from . import render

    config = EngineConfig.load()
    files = [p for p in paths if not p.is_dir()]
    missing = [p for p in files if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(map(str, missing))}")
    valid_ones = []
    bad = False
    for path in files:
        try:
            valid_ones.append(validate_file(path, config))
        except PolicyError as exc:
            render.print_problems(stderr, str(path), exc.problems)
            bad = True
    folders = [p for p in paths if p.is_dir()]
    if folders:
        scan = load_folder(folders, config)
        for path, problems in scan.problems().items():
            render.print_problems(stderr, str(path), problems)
            bad = True
        valid_ones += [found.valid for found in scan.files.values() if found.valid is not None and not found.problems]
    if bad:
        stderr.print("nothing recorded: fix the problems above first", markup=False)
        raise click.exceptions.Exit(2)
    store = _store(ctx, state_dir)
    actor = _actor()
    recorded = []
    for valid in valid_ones:
        version = registry.record_version(
            store.engine,
            valid.document,
            actor=actor,
            source=f"file:{valid.path.resolve()}",
            config=config,
            on_purpose=True,
        )
        state = approval.approval_of(store.engine, version.policy_id, version.approval_hash)
        recorded.append((valid.path, version, state))
    if as_json:
        _dump(
            {
                "versions": [
                    {**v.to_dict(), "path": str(path), "new": v.new, "approval": s.to_dict()} for path, v, s in recorded
                ]
            }
        )
        return
    for path, v, s in recorded:
        what = "recorded as" if v.new else "unchanged:"
        state = "approved" if s.approved else "not approved"
        stdout.print(
            f"{path}: {v.policy_id} {what} version {v.version} (approval hash {v.approval_hash}, {state})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@policy.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the policies as JSON.")
@state_dir_option
@click.pass_context
def policy_list(ctx: click.Context, as_json: bool, state_dir: Path | None) -> None:
    """Every policy in the registry: latest version, hash, approved version, schedule, last run."""
    from ..governance import approval, registry

    store = _store(ctx, state_dir)
    entries = []
    for policy_id in registry.policy_ids(store.engine):
        known = registry.versions(store.engine, policy_id)
        latest = known[-1]
        approved = approval.approved_hashes(store.engine, policy_id)
        approved_version = next((v.version for v in reversed(known) if v.approval_hash in approved), None)
        runs = store.list_runs(policy_id, None, 1)
        last = runs[0] if runs else None
        entries.append(
            {
                "id": policy_id,
                "policy_id": policy_id,
                "latest_version": latest.version,
                "hash": latest.hash,
                "approval_hash": latest.approval_hash,
                "approved": latest.approval_hash in approved,
                "approved_version": approved_version,
                "schedule": latest.document.get("schedule"),
                "approval_requests": (
                    []
                    if latest.approval_hash in approved
                    else approval.requests_for(store.engine, policy_id, latest.approval_hash)
                ),
                "last_run": (
                    {"run_id": last["id"], "status": last["status"], "started_at": last["started_at"]} if last else None
                ),
            }
        )
    if as_json:
        _dump({"policies": entries})
        return
    if not entries:
        stdout.print(
            "no policies recorded yet: 'engine policy add FILE' or 'engine run FILE' records one", markup=False
        )
        return
    for e in entries:
        schedule = e["schedule"]["cron"] if isinstance(e["schedule"], dict) and "cron" in e["schedule"] else "-"
        approved = f"v{e['approved_version']}" if e["approved_version"] else "none"
        last = f"{e['last_run']['status']} {e['last_run']['started_at'][:19]}" if e["last_run"] else "never run"
        asked = e["approval_requests"]
        requested = f"  approval requested by {asked[-1]['requested_by']}" if asked else ""
        stdout.print(
            f"{e['policy_id']}  v{e['latest_version']}  {e['approval_hash'][:12]}  "
            f"{'approved' if e['approved'] else 'NOT APPROVED'} (approved: {approved})  schedule: {schedule}  {last}"
            f"{requested}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@policy.command("show")
@click.argument("policy_id")
@click.option("--version", "version", type=click.IntRange(min=1), help="This version (default: the latest).")
@click.option("--json", "as_json", is_flag=True, help="Print the version, its document and approval as JSON.")
@state_dir_option
@click.pass_context
def policy_show(ctx: click.Context, policy_id: str, version: int | None, as_json: bool, state_dir: Path | None) -> None:
    """One version of a policy: who made it, its hashes, its approval, its document."""
    import json

    from ..governance import approval, registry

    store = _existing(ctx, state_dir)
    v = registry.get_version(store.engine, policy_id, version)
    state = approval.approval_of(store.engine, policy_id, v.approval_hash)
    if as_json:
        _dump({**v.to_dict(with_document=True), "approval": state.to_dict()})
        return
    lines = [
        f"policy {v.policy_id} version {v.version}",
        f"  created    {v.created_at} by {v.created_by} ({v.source})",
        f"  hash       {v.hash}",
        f"  approval   {v.approval_hash}  "
        + (f"approved by {state.approved_by} at {state.approved_at}" if state.approved else "NOT APPROVED"),
    ]
    if not state.approved:
        lines.append(f"  approve    {approval.approve_command(v.policy_id, v.approval_hash)}")
    for line in lines:
        stdout.print(line, markup=False, highlight=False, soft_wrap=True)
    click.echo(json.dumps(v.document, indent=2, sort_keys=True, ensure_ascii=False))


@policy.command("diff")
@click.argument("policy_id")
@click.argument("v1", required=False, type=click.IntRange(min=1))
@click.argument("v2", required=False, type=click.IntRange(min=1))
@state_dir_option
@click.pass_context
def policy_diff(ctx: click.Context, policy_id: str, v1: int | None, v2: int | None, state_dir: Path | None) -> None:
    """A unified diff of the canonical JSON of two versions.

    Default: the latest approved version against the latest (against nothing when none is
    approved); one number: that version against the latest."""
    from ..governance import approval, registry

    store = _existing(ctx, state_dir)
    new = registry.get_version(store.engine, policy_id, v2)
    if v1 is not None:
        old = registry.get_version(store.engine, policy_id, v1)
    else:
        approved = approval.approved_hashes(store.engine, policy_id)
        old = next(
            (v for v in reversed(registry.versions(store.engine, policy_id)) if v.approval_hash in approved), None
        )
    text = registry.diff(old, new)
    click.echo(
        text if text else f"no difference between version {old.version if old else '-'} and {new.version}", nl=not text
    )


@policy.command("history")
@click.argument("policy_id")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@state_dir_option
@click.pass_context
def policy_history(ctx: click.Context, policy_id: str, as_json: bool, state_dir: Path | None) -> None:
    """Every version of a policy, oldest first, with its actor and approval state."""
    from ..governance import approval, registry

    store = _existing(ctx, state_dir)
    registry.get_version(store.engine, policy_id)  # an unknown id: the error says what to do
    rows = []
    for v in registry.versions(store.engine, policy_id):
        state = approval.approval_of(store.engine, policy_id, v.approval_hash)
        rows.append({**v.to_dict(), "approval": state.to_dict()})
    if as_json:
        _dump({"policy_id": policy_id, "versions": rows})
        return
    for r in rows:
        a = r["approval"]
        state = f"approved by {a['approved_by']}" if a["approved"] else "not approved"
        stdout.print(
            f"v{r['version']}  {r['created_at'][:19]}  {r['created_by']}  {r['source']}  "
            f"approval {r['approval_hash'][:12]}  {state}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _existing(ctx: click.Context, state_dir: Path | None, workspace: str | None = None) -> Store:
    from . import _state_path

    path = _state_path(ctx, state_dir)
    if path is not None and not (path / "engine.db").exists():
        raise UsageError(f"no policies recorded: there is no state in {path}/ ('engine policy add FILE' records one)")
    return _store(ctx, state_dir)


# -- engine approve / revoke --------------------------------------------------------------------


@cli.command()
@click.argument("policy_id")
@click.option(
    "--hash", "hash_text", required=True, metavar="HASH", help="The approval hash you reviewed (>= 12 hex digits)."
)
@click.option("--note", help="Why, or what was checked (recorded and audited).")
@click.option("--json", "as_json", is_flag=True, help="Print the approval as JSON.")
@state_dir_option
@click.pass_context
def approve(
    ctx: click.Context, policy_id: str, hash_text: str, note: str | None, as_json: bool, state_dir: Path | None
) -> None:
    """Approve the version of POLICY_ID whose approval hash is HASH (see `engine policy show`)."""
    from ..config import EngineConfig
    from ..governance import approval

    store = _existing(ctx, state_dir)
    state = approval.approve(store.engine, EngineConfig.load(), policy_id, hash_text, _actor(), note)
    if as_json:
        _dump({"policy_id": policy_id, **state.to_dict()})
        return
    stdout.print(
        f"approved {policy_id} {state.hash} (by {state.approved_by} at {state.approved_at})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@cli.command()
@click.argument("policy_id")
@click.option("--hash", "hash_text", required=True, metavar="HASH", help="The approval hash to withdraw.")
@click.option("--note", help="Why (recorded and audited).")
@state_dir_option
@click.pass_context
def revoke(ctx: click.Context, policy_id: str, hash_text: str, note: str | None, state_dir: Path | None) -> None:
    """Withdraw the approval of a policy version: its real runs are refused again."""
    from ..governance import approval

    store = _existing(ctx, state_dir)
    state = approval.revoke(store.engine, policy_id, hash_text, _actor(), note)
    stdout.print(f"revoked {policy_id} {state.hash}", markup=False, highlight=False, soft_wrap=True)


# -- engine audit ------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit log: an append-only hash chain of versions, approvals, runs, deliveries, refusals."""


@audit.command("log")
@click.option("--policy", "policy_id", metavar="ID", help="Only entries about this policy and its runs.")
@click.option("--since", metavar="TIME", help="Only entries at or after TIME (ISO 8601; UTC if no offset).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N entries.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@state_dir_option
@click.pass_context
def audit_log(
    ctx: click.Context,
    policy_id: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
    state_dir: Path | None,
) -> None:
    """List audit entries, oldest first."""
    from ..governance import audit as chain
    from . import _utc_text

    store = _existing(ctx, state_dir)
    found = chain.entries(store.engine, policy_id=policy_id, since=_utc_text("--since", since), limit=limit)
    if as_json:
        _dump({"entries": [e.to_dict() for e in found]})
        return
    for e in found:
        details = " ".join(f"{k}={_short(v)}" for k, v in e.details.items())
        stdout.print(
            f"{e.seq:>6}  {e.at[:19]}  {e.actor}  {e.action}  {e.subject}  {details}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _short(value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:12] if isinstance(value, str) and len(value) == 64 else text


@audit.command("verify")
@click.option("--head", "expected_head", metavar="HASH", help="A head hash kept elsewhere: the chain must contain it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@state_dir_option
@click.pass_context
def audit_verify(ctx: click.Context, expected_head: str | None, as_json: bool, state_dir: Path | None) -> None:
    """Recompute the hash chain from the first entry: exit 0 when whole, 1 at the first bad entry."""
    from ..governance import audit as chain

    store = _existing(ctx, state_dir)
    result = chain.verify(store.engine, expected_head)
    if as_json:
        _dump(result.to_dict())
    elif result.ok:
        stdout.print(f"verified {result.count} entries, head {result.head_hash}", markup=False, highlight=False)
    else:
        where = f"first bad entry: seq {result.first_bad_seq}; " if result.first_bad_seq else ""
        stderr.print(f"audit chain BROKEN: {where}{result.count} entries read", markup=False, highlight=False)
        for problem in result.problems:
            stderr.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
    if not result.ok:
        raise click.exceptions.Exit(1)


@audit.command("head")
@click.option("--json", "as_json", is_flag=True, help="Print seq and hash as JSON.")
@state_dir_option
@click.pass_context
def audit_head(ctx: click.Context, as_json: bool, state_dir: Path | None) -> None:
    """Print the newest entry's seq and hash: keep it outside this machine to prove the history later."""
    from ..governance import audit as chain

    store = _existing(ctx, state_dir)
    seq, digest = chain.head(store.engine)
    if as_json:
        _dump({"seq": seq, "hash": digest})
    else:
        click.echo(f"{seq} {digest}")


# -- engine token ------------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """API tokens for `engine server`: each has a name, a role and a workspace."""


@token.command("create")
@click.option("--name", required=True, help="Who uses it: the actor of everything done with it.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "author", "approver", "admin"]),
    help="viewer reads; author writes policies and runs approved ones; approver approves; admin all.",
)
@click.option("--workspace", default="default", show_default=True, help="The workspace it sees.")
@click.option("--expires", metavar="DURATION", help="Expire after DURATION: 90d, 12h, 30m, 2w (default: never).")
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
@state_dir_option
@click.pass_context
def token_create(
    ctx: click.Context,
    name: str,
    role: str,
    workspace: str,
    expires: str | None,
    as_json: bool,
    state_dir: Path | None,
) -> None:
    """Make a token and print it once: only its SHA-256 is stored, it cannot be shown again."""
    from ..governance import tokens
    from ..workspaces import check_name

    check_name(workspace, "--workspace")
    duration = tokens.parse_duration(expires) if expires else None
    store = _store(ctx, state_dir, "default")  # tokens live at the top: looked up before their workspace
    text, info = tokens.create(
        store.engine, name=name, role=role, workspace=workspace, actor=_actor(), expires=duration
    )
    if as_json:
        _dump({"token": text, **info.to_dict()})
        return
    click.echo(text)
    until = f", expires {info.expires_at}" if info.expires_at else ""
    stderr.print(
        f"token {name!r} ({role}, workspace {workspace}{until}): shown once, keep it secret",
        markup=False,
        highlight=False,
    )


@token.command("list")
@click.option("--workspace", help="Only this workspace's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print the tokens (never their text) as JSON.")
@state_dir_option
@click.pass_context
def token_list(ctx: click.Context, workspace: str | None, as_json: bool, state_dir: Path | None) -> None:
    """The tokens: name, role, workspace, created, expires, state (never the tokens themselves)."""
    from ..governance import audit as chain
    from ..governance import tokens

    store = _store(ctx, state_dir, "default")
    now = chain.utc_now()
    found = [t.to_dict(now) for t in tokens.tokens(store.engine, workspace)]
    if as_json:
        _dump({"tokens": found})
        return
    if not found:
        stdout.print("no tokens: 'engine token create --name NAME --role ROLE' makes one", markup=False)
    for t in found:
        expires = t["expires_at"][:19] if t["expires_at"] else "never"
        stdout.print(
            f"{t['name']}  {t['role']}  {t['workspace']}  created {t['created_at'][:19]} by {t['created_by']}  "
            f"expires {expires}  {t['state']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@token.command("revoke")
@click.argument("name")
@state_dir_option
@click.pass_context
def token_revoke(ctx: click.Context, name: str, state_dir: Path | None) -> None:
    """Revoke the active token called NAME: requests that carry it are refused from now on."""
    from ..governance import tokens

    store = _store(ctx, state_dir, "default")
    info = tokens.revoke(store.engine, name, _actor())
    stdout.print(f"revoked token {info.name!r} ({info.role}, workspace {info.workspace})", markup=False)
