"""Building the message: multipart/mixed around multipart/alternative (text, HTML) and attachments.

    multipart/mixed
    ├── multipart/alternative
    │   ├── text/plain        (generated from the HTML unless given)
    │   └── text/html
    └── application/pdf ...   (one part per attachment, Content-Disposition: attachment)

``Bcc`` is never a header: those addresses are only in the SMTP envelope.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from .content import Blob


@dataclass(frozen=True)
class Letter:
    sender: str
    to: Sequence[str]
    cc: Sequence[str]
    bcc: Sequence[str]
    reply_to: Sequence[str]
    subject: str
    text: str
    html: str | None
    attachments: Sequence[Blob] = field(default_factory=tuple)

    @property
    def envelope(self) -> list[str]:
        """Every address the message goes to, each once, in to, cc, bcc order."""
        return list(dict.fromkeys([*self.to, *self.cc, *self.bcc]))


def build(letter: Letter, message_id: str | None = None, date: dt.datetime | None = None) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = letter.sender
    if letter.to:
        msg["To"] = ", ".join(letter.to)
    if letter.cc:
        msg["Cc"] = ", ".join(letter.cc)
    if letter.reply_to:
        msg["Reply-To"] = ", ".join(letter.reply_to)
    msg["Subject"] = letter.subject
    msg["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = message_id or new_message_id(letter.sender)
    msg["MIME-Version"] = "1.0"

    body = MIMEPart(policy=SMTP)
    body.set_content(letter.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if letter.html is not None:
        body.add_alternative(letter.html, subtype="html", charset="utf-8", cte="quoted-printable")

    msg.make_mixed()
    msg.attach(body)  # quoted-printable: safe through servers without 8BITMIME, and for long lines
    for item in letter.attachments:
        part = MIMEPart(policy=SMTP)
        maintype, _, subtype = item.media_type.partition("/")
        part.set_content(item.data, maintype=maintype, subtype=subtype or "octet-stream", filename=item.filename)
        msg.attach(part)
    return msg


def new_message_id(sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(" >") or "localhost"
    return make_msgid(domain=domain)
