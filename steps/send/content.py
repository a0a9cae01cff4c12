"""What a send step delivers: artifact refs (and named attachments) read back from the store."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import ArtifactRef, StepContext, StepError

from .addresses import LINE_BREAK


class Attachment(BaseModel):
    """An artifact with the file name (and media type) it is delivered under.

    A bare artifact (what ``{"ref": "ctx.pdf.pdf"}`` resolves to) is accepted too and keeps its
    own name. (One model rather than a union, so validation errors keep plain JSON pointers.)
    """

    model_config = ConfigDict(extra="forbid")
    artifact: ArtifactRef = Field(description="An artifact ref, e.g. {'ref': 'ctx.pdf.pdf'}.")
    filename: str | None = Field(None, description="The file name shown to the reader; default the artifact's name.")
    media_type: str | None = Field(None, description="Overrides the artifact's media type.")

    @model_validator(mode="before")
    @classmethod
    def _bare_artifact(cls, value: Any) -> Any:
        if isinstance(value, ArtifactRef) or (isinstance(value, dict) and "sha256" in value):
            return {"artifact": value}
        return value


@dataclass(frozen=True)
class Blob:
    """An artifact's bytes with the name and media type it is delivered under."""

    filename: str
    media_type: str
    data: bytes
    sha256: str


def read_artifact(ref: ArtifactRef, ctx: StepContext, where: str) -> bytes:
    """The artifact's bytes, from this state directory's store (else its recorded path), checked."""
    for path in (ctx.artifacts.path_for(ref.sha256), Path(ref.path)):
        if path.is_file():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != ref.sha256:
                raise StepError(f"{where}: {path} does not match its sha256 {ref.sha256[:12]}...", retryable=False)
            return data
    raise StepError(
        f"{where}: artifact {ref.name or ref.sha256[:12]} not found (neither {ref.path} nor the artifact store "
        "has it): give a ref to a step output, e.g. {'ref': 'ctx.pdf.pdf'}",
        retryable=False,
    )


def blob(item: Attachment, ctx: StepContext, where: str) -> Blob:
    ref, filename, media_type = item.artifact, item.filename, item.media_type
    name = filename or ref.name or _default_name(ref)
    if "\r" in name or "\n" in name:  # the name goes into a Content-Disposition header
        if filename:
            raise StepError(f"{where}/filename: {LINE_BREAK}", retryable=False)
        raise StepError(f"{where}: file name {name!r} {LINE_BREAK}", retryable=False)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise StepError(f"{where}: file name {name!r} must not contain a path", retryable=False)
    media = media_type or ref.media_type or "application/octet-stream"
    if media == "application/octet-stream":
        media = mimetypes.guess_type(name)[0] or media
    return Blob(filename=name, media_type=media, data=read_artifact(ref, ctx, where), sha256=ref.sha256)


def _default_name(ref: ArtifactRef) -> str:
    extension = mimetypes.guess_extension(ref.media_type or "") or ""
    return f"{ref.sha256[:12]}{extension}"
