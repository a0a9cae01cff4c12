"""[governance] audit_head_in_reports: the rendered report carries the audit chain's head."""

from __future__ import annotations

from engine import EngineConfig
from engine.governance import audit
from tests.steps.test_render_sections import BOTH_ENGINES, html_of, pdf_text, report_policy

SECTIONS = [{"type": "text", "body": "Sales were fine."}]
ON = EngineConfig({"governance": {"audit_head_in_reports": True}}, None, {})


@BOTH_ENGINES
def test_the_pdf_and_the_page_carry_the_head_at_render_time(run, store, engine):
    result = run(report_policy(SECTIONS, engine=engine), config=ON, actor="user:ada")
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    hashes = {e.seq: e.hash for e in audit.entries(store.engine)}
    text = " ".join(pdf_text(store, result)).replace("\n", "")
    assert "Audit log head when rendered:" in text
    seq = int(text.split("Audit log head when rendered:")[1].split()[0])
    assert hashes[seq] in text.replace(" ", "")  # the hash may wrap across lines
    assert f"Audit log head when rendered: {seq} {hashes[seq]}" in html_of(store, result)


def test_off_by_default(run, store):
    result = run(report_policy(SECTIONS, render=("html",)))
    assert result.status == "SUCCESS"
    assert "Audit log head" not in html_of(store, result)
