"""Render stage: turn a report snapshot into HTML and PDF (``render.html``, ``render.pdf``)."""
