"""The document information of a PDF (title, author...), set by an incremental update.

Chromium writes only ``/Title`` (from ``<title>``), its own ``/Creator`` and dates. WeasyPrint also
writes ``/Author``, ``/Subject``, ``/Keywords``, ``/Creator`` and ``/CreationDate`` from the page's
``<meta>`` elements (``author``, ``description``, ``keywords``, ``generator``, ``dcterms.created``).
:func:`set_info` gives a Chromium PDF the same: it appends a new information dictionary, a
cross-reference section for it and a trailer pointing back at the old one (PDF 1.7, 7.5.6), so the
bytes Chromium wrote stay as they are.
"""

from __future__ import annotations

import datetime as dt
import re

INFO_KEYS = {
    "title": "Title",
    "author": "Author",
    "subject": "Subject",
    "keywords": "Keywords",
    "creator": "Creator",
    "created": "CreationDate",
    "modified": "ModDate",
}
"""The names :func:`set_info` takes, and the PDF keys they set."""

_KEPT = (b"Producer", b"CreationDate", b"ModDate")
"""Chromium's own entries kept when the page does not give them."""


def set_info(data: bytes, values: dict[str, str | None]) -> bytes:
    """``data`` with its information dictionary replaced by ``values`` (empty ones left out),
    keeping Chromium's ``/Producer`` and dates; ``data`` unchanged when it is not a PDF whose
    last trailer can be read (a cross-reference stream, which Chromium does not write)."""
    trailer = _last_trailer(data)
    if trailer is None:
        return data
    size, root, prev, ident = trailer
    entries = {key: value for key, value in _old_entries(data).items() if key in _KEPT}
    for name, key in INFO_KEYS.items():
        value = values.get(name)
        if not value:
            continue
        if name in ("created", "modified"):
            date = _pdf_date(value)
            if date is not None:
                entries[key.encode()] = b"(" + date.encode() + b")"
        else:
            entries[key.encode()] = _text(value)
    body = b"".join(b"/" + key + b" " + value for key, value in entries.items())
    start = len(data) + (0 if data.endswith(b"\n") else 1)
    obj = b"%d 0 obj\n<<%s>>\nendobj\n" % (size, body)
    xref_at = start + len(obj)
    update = (
        obj
        # object 0 first, as every writer's update does: readers take a table that does not start
        # at 0 for one numbered wrongly
        + b"xref\n0 1\n0000000000 65535 f \n%d 1\n%010d 00000 n \n" % (size, start)
        + b"trailer\n<</Size %d /Root %s /Info %d 0 R /Prev %d%s>>\n" % (size + 1, root, size, prev, ident)
        + b"startxref\n%d\n%%%%EOF\n" % xref_at
    )
    return data + (b"" if data.endswith(b"\n") else b"\n") + update


def _last_trailer(data: bytes) -> tuple[int, bytes, int, bytes] | None:
    """(/Size, /Root reference, offset of the last xref, /ID or b"") of the last classic trailer."""
    at = data.rfind(b"trailer")
    start = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data[-64:])
    if at < 0 or start is None:
        return None
    trailer = data[at : data.rfind(b"startxref")]
    size = re.search(rb"/Size\s+(\d+)", trailer)
    root = re.search(rb"/Root\s+(\d+\s+\d+\s+R)", trailer)
    if size is None or root is None:
        return None
    ident = re.search(rb"/ID\s*\[[^\]]*\]", trailer)
    return int(size.group(1)), root.group(1), int(start.group(1)), b" " + ident.group(0) if ident else b""


def _old_entries(data: bytes) -> dict[bytes, bytes]:
    """Chromium's information dictionary, entry by entry (its values are literal strings)."""
    at = data.rfind(b"trailer")
    info = re.search(rb"/Info\s+(\d+)\s+(\d+)\s+R", data[at:])
    if info is None:
        return {}
    obj = re.search(rb"(?:^|\s)%s\s+%s\s+obj\s*<<(.*?)>>\s*endobj" % info.groups(), data, re.S)
    if obj is None:
        return {}
    return {m.group(1): m.group(2) for m in re.finditer(rb"/(\w+)\s*(\((?:\\.|[^\\)])*\))", obj.group(1), re.S)}


def _text(value: str) -> bytes:
    """A PDF text string: UTF-16BE with its byte order mark, written in hex (any character, no escaping)."""
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode() + b">"


def _pdf_date(value: str) -> str | None:
    """``2026-12-02T09:12:55Z`` as ``D:20261202091255Z`` (as WeasyPrint writes it); None if unreadable."""
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    text = when.strftime("D:%Y%m%d%H%M%S")
    offset = when.utcoffset()
    if offset is None or offset == dt.timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}'{abs(minutes) % 60:02d}'"
