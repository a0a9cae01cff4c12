"""``send.file``: copy artifacts into a folder under templated names, atomically and idempotently."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine import Step, StepContext, StepError, sandbox_environment

from .content import Attachment, Blob, blob
from .deliveries import Deliveries, claim_blocking, content_hash, dedup_key, utc_now

# File names are not HTML: autoescaping would turn 'Q&A' into 'Q&amp;A'. The sandbox (no
# attribute tricks, no imports) and the path check below are what keep a name safe.
_names = sandbox_environment(undefined=jinja2.StrictUndefined, autoescape=False)

Action = Literal["written", "replaced", "unchanged", "skipped", "would_write", "would_replace", "conflict"]


class DeliveredFile(BaseModel):
    path: str = Field(description="Absolute path of the delivered file.")
    name: str = Field(description="The artifact's file name ({{ name }} in the template).")
    sha256: str
    size: int
    action: Action = Field(description="What happened to this file (see docs/steps/send.md).")


class SendFileOutput(BaseModel):
    status: Literal["sent", "duplicate", "preview"] = Field(
        description="sent; duplicate (delivered before: nothing written); preview (a dry run)."
    )
    dedup_key: str = Field(description="SHA-256 idempotency key, as for send.email.")
    folder: str = Field(description="The target folder, absolute.")
    files: list[DeliveredFile]
    sent_at: str | None = Field(None, description="When the files were written (UTC, ISO 8601).")


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


class SendFile(Step, type="send.file"):
    """Copy artifacts (a rendered PDF, a CSV) into a folder, named by a file-name template.

    Each file is written to a temporary file beside its target and renamed into place, so
    readers never see half a file. A different file already at the target is never replaced
    unless ``overwrite`` is true; a name that would leave the folder is refused. Deliveries are
    recorded in the ``deliveries`` table with the same idempotency rule as ``send.email``.
    """

    side_effects = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        artifacts: list[Attachment] = Field(
            min_length=1, description="Artifact refs (one or a list), or {artifact, filename} objects."
        )
        folder: str = Field(description="Target folder, created if missing; relative to the policy's folder.")
        filename: str = Field(
            "{{ name }}", description="File-name template (Jinja2, sandboxed), may contain sub-folders."
        )
        overwrite: bool = Field(False, description="Replace a different file already at the target.")
        force: bool = Field(False, description="Deliver again even if these files were already delivered.")

        _one_or_many = field_validator("artifacts", mode="before")(_as_list)

    Output = SendFileOutput

    def run(self, params: Params, ctx: StepContext) -> SendFileOutput:
        folder, plan, key = self._plan(params, ctx)
        records = Deliveries(ctx, "file")
        claim_blocking(records, key)  # one run at a time per dedup key
        try:
            return self._deliver(params, ctx, folder, plan, key, records)
        finally:
            records.release(key)

    def _deliver(
        self,
        params: Params,
        ctx: StepContext,
        folder: Path,
        plan: list[tuple[Path, Blob]],
        key: str,
        records: Deliveries,
    ) -> SendFileOutput:
        paths = [str(target) for target, _ in plan]
        if not params.force:
            earlier = records.find_sent(key)
            if earlier is not None:
                records.record(key, "duplicate", paths)
                ctx.log.info("send.file.duplicate", dedup_key=key, sent_by_run=earlier.run_id)
                return self._output(folder, plan, key, "duplicate", ["skipped"] * len(plan), earlier.sent_at)
        actions = [_action(target, item, params.overwrite, preview=False) for target, item in plan]
        conflicts = [str(target) for (target, _), action in zip(plan, actions, strict=True) if action == "conflict"]
        if conflicts:
            error = (
                f"{', '.join(conflicts)}: a different file is already there; nothing was written "
                "(set overwrite: true to replace it, or put a date in filename)"
            )
            records.record(key, "failed", paths, error=error)
            raise StepError(f"{ctx.pointer}/params/filename: {error}", retryable=False)
        try:
            for (target, item), action in zip(plan, actions, strict=True):
                if action != "unchanged":
                    _write_atomically(target, item.data, replace=action == "replaced")
        except OSError as exc:
            error = f"cannot write {exc.filename or folder}: {exc.strerror or exc}"
            records.record(key, "failed", paths, error=error)
            raise StepError(error) from exc
        sent_at = utc_now()
        records.record(key, "sent", paths, sent_at=sent_at)
        ctx.log.info("send.file.sent", folder=str(folder), files=len(plan))
        return self._output(folder, plan, key, "sent", actions, sent_at)

    def preview(self, params: Params, ctx: StepContext) -> SendFileOutput:
        """Where each file would go and what would happen there; nothing is written."""
        folder, plan, key = self._plan(params, ctx)
        actions = [_action(target, item, params.overwrite, preview=True) for target, item in plan]
        return self._output(folder, plan, key, "preview", actions, None)

    # -- the parts ---------------------------------------------------------------------------

    def _plan(self, params: Params, ctx: StepContext) -> tuple[Path, list[tuple[Path, Blob]], str]:
        where = f"{ctx.pointer}/params"
        folder = Path(params.folder).expanduser()
        if not folder.is_absolute() and ctx.policy_dir is not None:
            folder = ctx.policy_dir / folder
        folder = folder.resolve()
        plan: list[tuple[Path, Blob]] = []
        for i, artifact in enumerate(params.artifacts):
            item = blob(artifact, ctx, f"{where}/artifacts/{i}")
            target = _target(folder, _render(params.filename, ctx, item, i, f"{where}/filename"), where)
            if any(target == other for other, _ in plan):
                raise StepError(
                    f"{where}/filename: two artifacts would both be written to {target} "
                    "(use {{ name }} or {{ index }} in filename)",
                    retryable=False,
                )
            plan.append((target, item))
        content = content_hash({"files": [[str(t), item.sha256] for t, item in plan]})
        return folder, plan, dedup_key(ctx, {"files": [str(t) for t, _ in plan]}, content)

    @staticmethod
    def _output(
        folder: Path, plan: list[tuple[Path, Blob]], key: str, status: Any, actions: list[Any], sent_at: str | None
    ) -> SendFileOutput:
        files = [
            DeliveredFile(path=str(t), name=item.filename, sha256=item.sha256, size=len(item.data), action=action)
            for (t, item), action in zip(plan, actions, strict=True)
        ]
        return SendFileOutput(status=status, dedup_key=key, folder=str(folder), files=files, sent_at=sent_at)


def _render(template: str, ctx: StepContext, item: Blob, index: int, where: str) -> str:
    name = PurePosixPath(item.filename)
    variables = {
        "policy_id": ctx.policy_id,
        "step_id": ctx.step_id,
        "run": dict(ctx.run),
        "params": dict(ctx.params),
        "name": item.filename,
        "stem": name.stem,
        "suffix": name.suffix,
        "index": index,
        "sha256": item.sha256,
    }
    try:
        return _names.from_string(template).render(variables).strip()
    except jinja2.UndefinedError as exc:
        names = ", ".join(variables)
        raise StepError(f"{where}: {exc} (names available: {names})", retryable=False) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise StepError(f"{where}: syntax error on line {exc.lineno}: {exc.message}", retryable=False) from exc
    except jinja2.exceptions.SecurityError as exc:
        raise StepError(f"{where}: not allowed in the sandbox: {exc}", retryable=False) from exc
    except Exception as exc:  # anything else a user template raises while rendering
        raise StepError(f"{where}: {type(exc).__name__}: {exc}", retryable=False) from exc


def _target(folder: Path, name: str, where: str) -> Path:
    """``folder / name``, refused unless it stays inside ``folder`` (also through symlinks)."""
    relative = PurePosixPath(name.replace("\\", "/"))
    if not name or "\x00" in name or relative.is_absolute() or ".." in relative.parts or not relative.name:
        raise StepError(
            f"{where}/filename: {name!r} is not a file name inside the folder "
            "(no absolute paths, no '..'; sub-folders like 'daily/report.pdf' are fine)",
            retryable=False,
        )
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder) or target == folder:
        raise StepError(f"{where}/filename: {name!r} leads outside the folder {folder}", retryable=False)
    return target


def _action(target: Path, item: Blob, overwrite: bool, *, preview: bool) -> Any:
    if not target.exists():
        return "would_write" if preview else "written"
    if target.is_file() and target.stat().st_size == len(item.data) and target.read_bytes() == item.data:
        return "unchanged"
    if not overwrite or not target.is_file():
        return "conflict"
    return "would_replace" if preview else "replaced"


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new empty file beside ``target``, ``.NAME.XXXXXXXX.tmp``, with the umask's permissions.

    Not ``tempfile.mkstemp``: it always makes 0600 files, so a delivered report would be
    unreadable by the group a shared folder is for. Asking for 0666 lets the kernel apply the
    umask (0644 with the usual 022, 0600 with 077), as ``cp`` does, without reading or changing
    the process-wide umask.
    """
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _write_atomically(target: Path, data: bytes, *, replace: bool) -> None:
    """Write a temporary file beside ``target``, then rename (or, not replacing, link) it there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            # a hard link fails if a file appeared at the target meanwhile: never clobber it
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise StepError(f"{target}: a file appeared there while writing", retryable=True) from None
            finally:
                tmp.unlink(missing_ok=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
