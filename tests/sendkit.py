"""Step types for the send tests (``--plugin tests.sendkit``): a real PDF and an HTML page as artifacts."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel

from engine import ArtifactRef, Step, StepContext

REPORT_HTML = (
    "<html><head><title>t</title><style>h1 { color: #333 }</style></head><body>"
    "<h1>Daily sales</h1><p>Revenue was <b>1,234.50 EUR</b> &amp; rising.</p>"
    "<ul><li>emea: 800</li><li>apac: 434.50</li></ul>"
    '<p>Details: <a href="https://reports.example.com/daily">the dashboard</a></p></body></html>'
)


@lru_cache(maxsize=8)
def pdf_bytes(text: str) -> bytes:
    """A real PDF made by weasyprint (cached: rendering takes a moment)."""
    from weasyprint import HTML

    return HTML(string=f"<h1>{text}</h1>").write_pdf()


class Report(Step, type="test.report"):
    """Store an HTML page and a PDF of ``title`` as artifacts, as render steps do."""

    class Params(BaseModel):
        title: str = "Daily sales report"
        html: str = REPORT_HTML

    class Output(BaseModel):
        html: ArtifactRef
        pdf: ArtifactRef

    def run(self, params: Params, ctx: StepContext) -> Output:
        html = ctx.artifacts.put_bytes(params.html.encode(), "text/html", name="report.html")
        pdf = ctx.artifacts.put_bytes(pdf_bytes(params.title), "application/pdf", name="report.pdf")
        return self.Output(html=html, pdf=pdf)
