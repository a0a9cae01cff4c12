#!/usr/bin/env python3
"""A local SMTP sink for trying send.email: every message it receives becomes a file.

    .venv/bin/python scripts/smtp_sink.py --port 2525 --out mail/
    .venv/bin/python scripts/smtp_sink.py --port 0 --port-file sink.port --out mail/   # a free port

It listens on 127.0.0.1 only (no TLS, no login: point send.email at it with
``"security": "none"``), writes each message as ``OUT/NNNN-<time>.eml`` and the message's
attachments beside it in ``OUT/NNNN-<time>/``, prints one line per message, and stops on
SIGTERM or Ctrl-C. Files appear atomically (written under a temporary name, then renamed), and
the attachments are in place before the .eml file appears.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email
import email.policy
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(name, path)


def _safe_name(name: str, index: int) -> str:
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(name.replace("\\", "/")).name).strip(" .")
    return base or f"attachment-{index}"


class FolderHandler:
    """aiosmtpd handler: save every message (and its attachments) into ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.count = len(list(out.glob("*.eml"))) if out.exists() else 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        stem = f"{self.count:04d}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode("utf-8")
        message = email.message_from_bytes(data, policy=email.policy.default)
        names = []
        for i, part in enumerate(message.iter_attachments(), start=1):  # type: ignore[attr-defined]
            name = _safe_name(part.get_filename() or "", i)
            _write(self.out / stem / name, part.get_payload(decode=True) or b"")
            names.append(name)
        eml = self.out / f"{stem}.eml"
        _write(eml, data)
        recipients = ", ".join(envelope.rcpt_tos)
        print(
            f"received {eml} from {envelope.mail_from} to {recipients}"
            + (f"; attachments in {self.out / stem}: {', '.join(names)}" if names else ""),
            flush=True,
        )
        return "250 2.0.0 OK: saved"


async def serve(host: str, port: int, out: Path, port_file: Path | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    handler = FolderHandler(out)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink", enable_SMTPUTF8=True), host=host, port=port
    )
    bound = server.sockets[0].getsockname()[1]
    if port_file is not None:
        _write(port_file, f"{bound}\n".encode())
    print(f"smtp sink listening on {host}:{bound}, saving mail to {out}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
    print("smtp sink stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=2525, help="port to listen on; 0 picks a free one (default 2525)")
    parser.add_argument("--port-file", type=Path, help="write the port number into this file once listening")
    parser.add_argument("--out", type=Path, default=Path("mail"), help="folder for received messages (default ./mail)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    args: Any = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.out, args.port_file))
    except OSError as exc:
        print(f"smtp sink: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
