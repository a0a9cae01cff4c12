"""The first page of a PDF as a PNG (pypdfium2: PDFium, the PDF engine of Chromium, as a wheel)."""

from __future__ import annotations

import io
from pathlib import Path


def first_page_png(pdf: Path | bytes, width: int = 800) -> bytes:
    """Page 1 rendered ``width`` pixels wide (the height follows the page), as PNG bytes."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf if isinstance(pdf, bytes) else str(pdf))
    try:
        page = document[0]
        scale = width / page.get_width()
        image = page.render(scale=scale).to_pil()
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
        return out.getvalue()
    finally:
        document.close()
