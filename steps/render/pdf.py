"""The PDF: WeasyPrint lays out the print HTML (``@page`` rules in ``report.css``) into pages.

Only ``data:`` URLs and files inside the template folders can be loaded: a template or a snapshot
value can never make the renderer fetch from the network or read other files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine import StepError


def write_pdf(html: str, page_css: str, template_dirs: list[Path]) -> tuple[bytes, int]:
    """Lay out ``html`` and return (PDF bytes, number of pages)."""
    import weasyprint

    # WeasyPrint logs every CSS property it does not support at WARNING; they are not our errors
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    base = template_dirs[0]  # relative URLs in your templates resolve in your template_dir
    try:
        doc = weasyprint.HTML(string=html, base_url=str(base), url_fetcher=_fetcher(template_dirs)).render(
            stylesheets=[weasyprint.CSS(string=page_css)]
        )
        return doc.write_pdf(), len(doc.pages)
    except Exception as exc:  # one boundary: WeasyPrint's errors become step errors
        raise StepError(f"WeasyPrint could not write the PDF: {type(exc).__name__}: {exc}") from exc


def _fetcher(roots: list[Path]) -> Any:
    from weasyprint.urls import URLFetcher

    allowed = [r.resolve() for r in roots]

    class LocalOnly(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("data:"):
                return super().fetch(url, headers)
            if url.startswith("file://"):
                from urllib.request import url2pathname

                path = Path(url2pathname(url[len("file://") :].split("?")[0])).resolve()
                if any(path.is_relative_to(root) for root in allowed):
                    return super().fetch(url, headers)
            raise ValueError(f"not loaded: {url[:80]} (only data: URLs and files of the template folders)")

    return LocalOnly(allowed_protocols=("data", "file"))
