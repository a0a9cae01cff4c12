"""What a dry run would have done, read back from its previews: for each e-mail the recipients,
subject, attachments (names and sizes) and plain-text body; for each file the path it would write.

A side-effect step's dry run writes a ``<step>.json`` preview (and, for e-mail, the whole message
as ``<step>.eml``); these are read here by their content, whichever stage wrote them."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from typing import Any


def _email(step_id: str, meta: dict[str, Any], folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "step_id": step_id,
        "from": meta.get("from"),
        "to": meta.get("to", []),
        "cc": meta.get("cc", []),
        "bcc": meta.get("bcc", []),
        "recipients": meta.get("recipients", []),
        "subject": meta.get("subject"),
        "attachments": [{"name": name, "size": None} for name in meta.get("attachments", [])],
        "text": None,
        "eml": None,
    }
    eml = folder / f"{step_id}.eml"
    if eml.is_file():
        out["eml"] = eml.name
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        body = message.get_body(("plain",))
        if body is not None:
            out["text"] = body.get_content()
        out["attachments"] = [
            {
                "name": part.get_filename(),
                "media_type": part.get_content_type(),
                "size": len(part.get_payload(decode=True) or b""),
            }
            for part in message.iter_attachments()
        ]
    return out


def describe(preview_dir: str | Path | None) -> dict[str, Any]:
    """``{"emails": [...], "files": [...], "previews": [names]}`` of a dry run's preview folder."""
    emails: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    names: list[str] = []
    if not preview_dir or not Path(preview_dir).is_dir():
        return {"emails": emails, "files": files, "previews": names}
    folder = Path(preview_dir)
    names = sorted(p.name for p in folder.rglob("*") if p.is_file())
    for meta_file in sorted(folder.glob("*.json")):
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict):
            continue
        step_id = meta_file.stem
        if "recipients" in meta and "subject" in meta:
            emails.append(_email(step_id, meta, folder))
        elif isinstance(meta.get("files"), list):
            for item in meta["files"]:
                if isinstance(item, dict) and item.get("path"):
                    files.append(
                        {
                            "step_id": step_id,
                            "path": item["path"],
                            "name": item.get("name"),
                            "size": item.get("size"),
                            "action": item.get("action"),
                        }
                    )
    return {"emails": emails, "files": files, "previews": names}
