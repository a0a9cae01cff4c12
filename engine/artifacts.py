"""Content-addressed artifact files under ``<state dir>/artifacts/ab/abcdef...``.

A file is stored once per SHA-256; writes go to a temporary file that is renamed into place,
so a crash never leaves a half-written artifact under its final name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class ArtifactRef(BaseModel):
    """A stored file: where it is, what it is, how big, and its SHA-256."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    path: str
    media_type: str
    size: int
    name: str | None = None


class ArtifactStore:
    """The artifacts folder ``root``; ``shared_dir`` is where files every host of the engine must
    see besides artifacts live (the delivery journal): the state directory, by default the
    artifacts folder's parent, or the artifacts folder itself when ``ENGINE_ARTIFACTS_DIR`` puts
    it on a shared mount."""

    def __init__(self, root: Path, shared_dir: Path | None = None) -> None:
        self.root = root
        self.shared_dir = shared_dir if shared_dir is not None else root.parent

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def put_bytes(
        self, data: bytes, media_type: str = "application/octet-stream", name: str | None = None
    ) -> ArtifactRef:
        sha = hashlib.sha256(data).hexdigest()
        target = self.path_for(sha)
        if not target.exists():
            _install(target, lambda tmp: tmp.write_bytes(data))
        return ArtifactRef(sha256=sha, path=str(target), media_type=media_type, size=len(data), name=name)

    def put_file(
        self, source: Path, media_type: str = "application/octet-stream", name: str | None = None
    ) -> ArtifactRef:
        digest = hashlib.sha256()
        with source.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        sha = digest.hexdigest()
        target = self.path_for(sha)
        if not target.exists():
            _install(target, lambda tmp: shutil.copyfile(source, tmp))
        return ArtifactRef(
            sha256=sha, path=str(target), media_type=media_type, size=target.stat().st_size, name=name or source.name
        )

    def read_bytes(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()


def _install(target: Path, write: Callable[[Path], object]) -> None:
    """Write through ``write`` into a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
