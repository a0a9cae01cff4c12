"""Render stage: turn a report snapshot into HTML and PDF (``render.html``, ``render.pdf``).

Plugins add section types and chart kinds with :func:`section_renderer` and :func:`chart_kind`
(see ``steps.render.registry`` and docs/steps/render.md).
"""

from . import sections as _sections  # noqa: F401  (registers the built-in section renderers)
from .registry import chart_kind as chart_kind
from .registry import section_renderer as section_renderer
from .render import RenderHtml as RenderHtml
from .render import RenderPdf as RenderPdf

__all__ = ["RenderHtml", "RenderPdf", "chart_kind", "section_renderer"]
