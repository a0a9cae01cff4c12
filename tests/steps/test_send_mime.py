"""The message send.email builds: the plain-text alternative and the MIME structure, parsed back."""

from __future__ import annotations

import email
import email.policy

from steps.send.content import Blob
from steps.send.mime import Letter, build
from steps.send.plaintext import html_to_text


def letter(**changes):
    base = dict(
        sender="Reports <reports@example.com>",
        to=["ann@example.com"],
        cc=[],
        bcc=["audit@example.com"],
        reply_to=[],
        subject="Umsatz für Köln – März",
        text="Hallo\n",
        html=None,
    )
    return Letter(**{**base, **changes})


def parsed(msg):
    return email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)


def test_plain_text_from_html_keeps_the_structure_a_reader_needs():
    html = (
        "<html><head><style>p { color: red }</style><script>alert(1)</script></head><body>"
        "<h2>Top  regions</h2><table><tr><th>region</th><th>revenue</th></tr>"
        "<tr><td>emea</td><td>1&nbsp;200</td></tr></table>"
        "<p>Line one<br>line two &amp; more</p><hr><img src='x.png' alt='chart'><svg><text>axis</text></svg>"
        "<p><a href='#top'>top</a> <a href='mailto:a@b.c'>mail us</a></p></body></html>"
    )
    assert html_to_text(html) == (
        "Top regions\n\nregion | revenue\nemea | 1 200\n\nLine one\nline two & more\n\n----\n\n[chart]\n\ntop mail us\n"
    )


def test_a_text_only_message_is_mixed_around_one_text_part_and_has_no_bcc_header():
    msg = parsed(build(letter()))
    assert [p.get_content_type() for p in msg.walk()] == ["multipart/mixed", "text/plain"]
    assert msg["Subject"] == "Umsatz für Köln – März"  # RFC 2047 on the wire, the same text back
    assert msg["Bcc"] is None
    assert msg.get_payload()[0].get_content().replace("\r\n", "\n") == "Hallo\n"


def test_attachments_keep_their_names_types_and_bytes():
    files = [Blob("data.csv", "text/csv", b"a,b\n1,2\n", "x"), Blob("r.pdf", "application/pdf", b"%PDF-1.7", "y")]
    msg = parsed(build(letter(html="<p>hi</p>", attachments=files), message_id="<id@example.com>"))
    assert msg["Message-ID"] == "<id@example.com>"
    parts = list(msg.iter_attachments())
    assert [(p.get_filename(), p.get_content_type(), p.get_payload(decode=True)) for p in parts] == [
        ("data.csv", "text/csv", b"a,b\n1,2\n"),
        ("r.pdf", "application/pdf", b"%PDF-1.7"),
    ]
