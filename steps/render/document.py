"""From a report snapshot to an HTML page: the Jinja2 environment and the document's sections.

Templates are looked up in the policy's ``template_dir`` first, then in the built-in
``templates/`` folder, so a file of the same name overrides the built-in one. The environment is
sandboxed and autoescaped (``.html`` and ``.xml``; ``.css`` is included as written).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jinja2
from jinja2.loaders import split_template_path
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from engine import StepError, sandbox_environment

from . import charts
from .formats import format_value
from .reach import inside, realpath
from .registry import get_section, section_types

BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
"""The built-in templates: ``templates/`` at the top of the repository, installed beside ``steps/``."""


def template_dirs(template_dir: Path | None) -> list[Path]:
    dirs = [template_dir] if template_dir is not None else []
    if not BUILTIN_TEMPLATES.is_dir():  # pragma: no cover - a broken install
        raise StepError(f"the built-in templates are missing: {BUILTIN_TEMPLATES} does not exist", retryable=False)
    return [*dirs, BUILTIN_TEMPLATES]


def templates_digest(dirs: list[Path]) -> dict[str, str]:
    """SHA-256 of every template file, by name, the first folder winning (as the loader does)."""
    found: dict[str, str] = {}
    for folder in dirs:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix()
            if name not in found and not name.startswith(".") and "__pycache__" not in name:
                real = realpath(path)
                if not inside(real, realpath(folder)):  # never read: the loader refuses it
                    found[name] = f"link to {real}"
                    continue
                found[name] = hashlib.sha256(real.read_bytes()).hexdigest()
    return found


class FolderLoader(jinja2.FileSystemLoader):
    """One template folder whose files stay inside it: a symlink out of it is refused, not followed."""

    def get_source(self, environment: jinja2.Environment, template: str) -> Any:
        folder = realpath(self.searchpath[0])
        path = os.path.join(self.searchpath[0], *split_template_path(template))
        if os.path.lexists(path) and not inside(real := realpath(path), folder):
            raise StepError(
                f"template {template!r} in {folder} is a link to {real}, outside the template folder; "
                "only files inside it can be used",
                retryable=False,
            )
        return super().get_source(environment, template)


def environment(dirs: list[Path]) -> SandboxedEnvironment:
    env = sandbox_environment(
        False,
        loader=jinja2.ChoiceLoader([FolderLoader(str(d)) for d in dirs]),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"], default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    return env


class Document:
    """One render of one report: its sections prepared for the templates, and its charts.

    ``mode`` is ``"html"`` (interactive Plotly charts, plotly.js inlined once) or ``"pdf"``:
    static chart images from ``images``, by section pointer, or with ``native_charts`` charts
    that plotly.js draws in the page for a browser to print (see :func:`native_chart_html`).
    """

    def __init__(
        self,
        report: dict[str, Any],
        mode: str,
        where: str,
        images: dict[str, tuple[str, bytes]],
        env: SandboxedEnvironment | None = None,
        native_charts: bool = False,
    ) -> None:
        self.report = report
        self.env = env
        self.mode = mode
        self.where = where
        self.images = images
        self.native_charts = native_charts
        self.pointer = ""
        self._chart_count = 0

    def sections(self, specs: list[dict[str, Any]], pointer: str = "/sections") -> list[dict[str, Any]]:
        frozen_by_pointer = self.report["snapshot"]["sections"]
        out: list[dict[str, Any]] = []
        for index, spec in enumerate(specs):
            at = f"{pointer}/{index}"
            frozen = frozen_by_pointer.get(at)
            if frozen is None or (spec["type"] == "conditional_section" and not frozen.get("shown")):
                continue  # inside or at a hidden conditional section
            renderer = get_section(spec["type"])
            if renderer is None:
                raise StepError(
                    f"section at {self.where}{at}: no renderer for section type {spec['type']!r} "
                    f"(types: {', '.join(section_types())}); is the plugin that adds it loaded?",
                    retryable=False,
                )
            self.pointer = at
            item = {"type": spec["type"], "title": spec.get("title"), "pointer": at, "template": renderer.template}
            item.update(renderer.prepare(spec, frozen, self))
            out.append(item)
        return _group_cards(out)

    @property
    def chart_count(self) -> int:
        """How many charts the rendered page holds (known once it is rendered)."""
        return self._chart_count

    def render_string(self, source: str) -> str:
        """A text section's template, over the snapshot: ``metrics``, ``values``, ``report``."""
        snapshot = self.report["snapshot"]
        env = self.env or environment([BUILTIN_TEMPLATES])
        try:
            return env.from_string(source).render(
                metrics=snapshot["metrics"], values=snapshot["values"], report=self._report_vars()
            )
        except jinja2.TemplateError as exc:
            raise StepError(f"text template at {self.where}{self.pointer}/template: {exc}", retryable=False) from exc

    def _report_vars(self) -> dict[str, Any]:
        report, snapshot = self.report, self.report["snapshot"]
        return {
            "report_id": report["report_id"],
            "title": snapshot["title"],
            "subtitle": snapshot.get("subtitle"),
            "author": snapshot.get("author"),
            "version": report["version"],
            "hash": report["hash"],
            "created_at": report["created_at"],
            "generated": report["created_at"][:16].replace("T", " ") + " UTC",
            "audit_head": report.get("audit_head"),
        }

    def chart_html(self, spec: dict[str, Any], frozen: dict[str, Any]) -> Markup:
        self._chart_count += 1
        dom_id = f"chart-{self._chart_count}"
        label = spec.get("title") or f"{spec['kind']} chart"
        if self.mode == "pdf" and self.native_charts:
            return native_chart_html(dom_id, label, charts.figure(spec, frozen, self.where + self.pointer))
        if self.mode == "pdf":
            media_type, data = self.images[self.pointer]
            uri = f"data:{media_type};base64,{base64.b64encode(data).decode()}"
            return Markup('<img class="chart-image" alt="{}" src="{}">').format(label, uri)
        fig = charts.figure(spec, frozen, self.where + self.pointer)
        fig.update_layout(width=None, autosize=True)
        payload = _script_json(fig.to_plotly_json())
        config = _script_json({"displaylogo": False, "responsive": True})
        return Markup(
            '<div class="chart-interactive" id="{id}" style="height:{h}px" role="img" aria-label="{label}"></div>'
            "<script>(function(){{var f={payload};Plotly.newPlot({jid},f.data,f.layout,{config});}})();</script>"
        ).format(
            id=dom_id,
            h=spec.get("height", 340),
            label=label,
            payload=Markup(payload),
            jid=Markup(json.dumps(dom_id)),
            config=Markup(config),
        )

    def context(self) -> dict[str, Any]:
        report = self.report
        snapshot = report["snapshot"]
        context = {
            "mode": self.mode,
            "report": self._report_vars(),
            "metrics": snapshot["metrics"],
            "values": snapshot["values"],
            "sections": self.sections(report["spec"]["sections"]),
            "plotly_js": None,
        }
        if self._chart_count and (self.mode == "html" or self.native_charts):
            context["plotly_js"] = Markup(plotly_script(self.native_charts))
        return context

    def chart_sections(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(pointer, spec, frozen) of every chart that is shown, for drawing images first."""
        found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        frozen_by_pointer = self.report["snapshot"]["sections"]

        def visit(specs: list[dict[str, Any]], pointer: str) -> None:
            for index, spec in enumerate(specs):
                at = f"{pointer}/{index}"
                frozen = frozen_by_pointer.get(at)
                if frozen is None:
                    continue
                if spec["type"] == "chart":
                    found.append((at, spec, frozen))
                elif spec["type"] == "conditional_section" and frozen.get("shown"):
                    visit(spec["sections"], f"{at}/sections")

        visit(self.report["spec"]["sections"], "/sections")
        return found


@functools.cache
def plotly_script(native_charts: bool) -> str:
    """plotly.js from the Plotly package, to inline in a ``<script>`` (with ``NATIVE_CHARTS_JS`` for a
    page Chromium prints). Read once per process: 4.8 MB."""
    from plotly.offline import get_plotlyjs

    script = get_plotlyjs() + (NATIVE_CHARTS_JS if native_charts else "")
    return script.replace("</script", "<\\/script")


NATIVE_CHARTS_JS = """
;(function () {
  // Charts drawn for print: each chart is drawn once the bundled font is loaded (plotly measures
  // its text), then its SVG layers are scaled to the column like an <img> of the same chart.
  // window.engineChartsDrawn resolves when every chart is drawn: the browser waits for it.
  var drawing = [];
  var fonts = Promise.all(["12px 'Liberation Sans'", "bold 12px 'Liberation Sans'"].map(function (f) {
    return document.fonts.load(f).catch(function () { return []; });
  }));
  window.engineChart = function (id, fig, width, height) {
    drawing.push(fonts.then(function () {
      return Plotly.newPlot(id, fig.data, fig.layout, {staticPlot: true, displayModeBar: false});
    }).then(function (gd) {
      gd.querySelectorAll("svg.main-svg").forEach(function (svg) {
        svg.setAttribute("viewBox", "0 0 " + width + " " + height);
        svg.setAttribute("width", "100%");
        svg.setAttribute("height", "100%");
      });
      var box = gd.querySelector(".svg-container");
      box.style.width = "100%";
      box.style.height = "auto";
      box.style.aspectRatio = width + " / " + height;
    }));
  };
  window.engineChartsDrawn = function () {
    return Promise.all(drawing).then(function () { return document.fonts.ready; }).then(function () {
      return drawing.length;
    });
  };
})();
"""
"""Appended to plotly.js in a page printed by Chromium: ``engineChart`` draws, ``engineChartsDrawn`` waits."""


def native_chart_html(dom_id: str, label: str, fig: Any) -> Markup:
    """A chart that plotly.js draws in the page as SVG, at the size Kaleido would draw it, scaled
    to the column: a ``<div>`` and the script that draws it (no mode bar, no interaction)."""
    width, height = fig.layout.width, fig.layout.height
    return Markup(
        '<div class="chart-native" id="{id}" role="img" aria-label="{label}"></div>'
        "<script>engineChart({jid},{payload},{w},{h});</script>"
    ).format(
        id=dom_id,
        label=label,
        jid=Markup(json.dumps(dom_id)),
        payload=Markup(_script_json(fig.to_plotly_json())),
        w=int(width),
        h=int(height),
    )


def _group_cards(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive metric cards share one row (the ``card_row.html`` partial)."""
    out: list[dict[str, Any]] = []
    for item in items:
        if item["type"] == "metric_card" and not item.get("title"):
            if out and out[-1]["type"] == "card_row":
                out[-1]["cards"].append(item)
                continue
            out.append({"type": "card_row", "template": "sections/card_row.html", "cards": [item], "title": None})
        else:
            out.append(item)
    return out


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no '</' or '<!--' can close or confuse it."""
    from plotly.utils import PlotlyJSONEncoder

    text = json.dumps(value, cls=PlotlyJSONEncoder, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(env: SandboxedEnvironment, doc: Document) -> str:
    try:
        return env.get_template("base.html").render(doc.context())
    except jinja2.TemplateNotFound as exc:
        raise StepError(
            f"template {exc.name!r} not found (looked in the template_dir and built-ins)", retryable=False
        ) from exc
    except jinja2.TemplateError as exc:
        name = getattr(exc, "filename", None) or getattr(exc, "name", None) or "a template"
        line = getattr(exc, "lineno", None)
        at = f" line {line}" if line else ""
        raise StepError(f"template error in {name}{at}: {exc.message or exc}", retryable=False) from exc
