"""The PDF: WeasyPrint lays out the print HTML (``@page`` rules in ``report.css``) into pages.

A relative URL (``fonts/LiberationSans-Regular.ttf``, ``logo.svg``) is looked up in the template
folders in order, like a template: your ``template_dir`` first, then the built-in folder.
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
    # relative URLs resolve in your template_dir, then in the built-in folder (as templates do)
    base = template_dirs[0]
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
                if not path.exists() and path.is_relative_to(allowed[0]):
                    # not in the first folder: the same relative path in the next ones, first found wins
                    relative = path.relative_to(allowed[0])
                    path = next((r / relative for r in allowed[1:] if (r / relative).exists()), path)
                    url = path.as_uri()
                if any(path.is_relative_to(root) for root in allowed):
                    return super().fetch(url, headers)
            raise ValueError(f"not loaded: {url[:80]} (only data: URLs and files of the template folders)")

    return LocalOnly(allowed_protocols=("data", "file"))
