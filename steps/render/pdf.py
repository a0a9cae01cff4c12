"""WeasyPrint's PDF: WeasyPrint lays out the print HTML (``@page`` rules in ``report.css``) into pages.

A relative URL (``fonts/LiberationSans-Regular.ttf``, ``logo.svg``) is looked up in the template
folders in order, like a template: your ``template_dir`` first, then the built-in folder.
WeasyPrint's URL fetcher serves only ``data:`` URLs and the files inside those folders, compared
after resolving symlinks and ``..``. Any other URL (another file however written, ``http:`` and
``https:``) is never opened, and fails the step with a message that names it: a stylesheet, an
image or an attachment left out would be a wrong PDF. The run's own artifacts are never
referenced (charts are embedded as ``data:`` URLs), so none are served. ``engine: "chromium"``
holds its page's requests to the same rule, with :func:`local_file` and :func:`raise_refused`
(see ``steps.render.chromium``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from engine import StepError

from .document import BUILTIN_TEMPLATES
from .reach import inside, realpath


def write_pdf(html: str, page_css: str, template_dirs: list[Path], pointer: str) -> tuple[bytes, int]:
    """Lay out ``html`` and return (PDF bytes, number of pages); ``pointer`` is the step's, for errors."""
    import weasyprint

    # WeasyPrint logs every CSS property it does not support at WARNING; they are not our errors
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    fetcher = _fetcher(template_dirs)
    try:
        # relative URLs resolve in your template_dir, then in the built-in folder (as templates do)
        doc = weasyprint.HTML(string=html, base_url=fetcher.base_url, url_fetcher=fetcher).render(
            stylesheets=[weasyprint.CSS(string=page_css)]
        )
        data = doc.write_pdf()  # attachments are fetched here
    except Exception as exc:  # one boundary: WeasyPrint's errors become step errors
        raise_refused(fetcher.refused, fetcher.folders, pointer)  # a refused URL explains the failure best
        raise StepError(f"WeasyPrint could not write the PDF: {type(exc).__name__}: {exc}") from exc
    raise_refused(fetcher.refused, fetcher.folders, pointer)
    return data, len(doc.pages)


def raise_refused(refused: list[str], template_dirs: list[Path], pointer: str) -> None:
    """The step's error for the URLs a page asked for and was refused (both engines), if any."""
    if not refused:
        return
    # sorted: a browser asks for a page's files in no fixed order
    urls = ", ".join(url if len(url) <= 200 else url[:199] + "…" for url in sorted(refused))
    folders = ", ".join(
        "built-in templates" if folder == realpath(BUILTIN_TEMPLATES) else str(folder) for folder in template_dirs
    )
    raise StepError(
        f"render.pdf at {pointer}: the template asks for {urls}, outside the template folders ({folders}); "
        "only files inside them and data: URLs can be used, nothing is fetched from the network",
        retryable=False,
    )


def local_file(url: str, folders: list[Path]) -> Path | None:
    """The real path of a ``file:`` URL inside one of ``folders`` (the first one's relative path
    falls back to the next folders, first found wins), or None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    try:
        path = realpath(url2pathname(parts.path))
    except ValueError:  # a NUL byte
        return None
    if not path.is_absolute():
        return None
    if not path.exists() and path != folders[0] and inside(path, folders[0]):
        relative = path.relative_to(folders[0])
        path = next((real for f in folders[1:] if (real := realpath(f / relative)).exists()), path)
    return path if any(inside(path, folder) for folder in folders) else None


def _fetcher(roots: list[Path]) -> Any:
    from weasyprint.urls import URLFetcher

    class TemplateFolders(URLFetcher):  # type: ignore[misc]
        """Serves ``data:`` URLs and the files of the template folders; records every URL it refuses."""

        def __init__(self, folders: list[Path]) -> None:
            super().__init__(allowed_protocols=("data", "file"), allow_redirects=False)
            self.folders = folders
            self.base_url = folders[0].as_uri() + "/"
            self.refused: list[str] = []

        def fetch(self, url: str, headers: Any = None) -> Any:
            if url[:5].lower() == "data:":
                return super().fetch(url, headers)
            path = local_file(url, self.folders)
            if path is None:
                if url not in self.refused:
                    self.refused.append(url)
                raise ValueError(f"refused (outside the template folders): {url[:200]}")
            return super().fetch(path.as_uri(), headers)

    return TemplateFolders([realpath(root) for root in roots])
