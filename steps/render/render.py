"""``render.html`` and ``render.pdf``: a report snapshot to an HTML page or a PDF, through the cache."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import ArtifactRef, CheckContext, ConfigError, Problem, Step, StepContext, StepError

from . import cache, charts, document, pdf, reach

RENDERER_VERSION = "6"
"""Bumped when a change to this package changes what the same snapshot renders to."""

_LIBRARIES = ("jinja2", "plotly", "kaleido", "weasyprint", "markdown-it-py")
DENSE_POINTS = 2000
CHROMIUM_HINT = (
    'render.pdf\'s engine "chromium" prints the PDF with Chromium, and no browser was found '
    "(looked for BROWSER_PATH, the render config's browser_path, then {names} on PATH). "
    "Install it with `apt-get install chromium` (Debian/Ubuntu), set BROWSER_PATH to a Chromium binary, "
    'or use engine: "weasyprint"'
)


class RenderParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    report: Any = Field(description="The report.build output: a ref such as {'ref': 'ctx.build'}.")
    template_dir: str | None = Field(
        None, description="Your templates, overriding built-ins by name (policy-relative)."
    )
    file_name: str | None = Field(None, description="Name of the artifact; default REPORT_ID-vVERSION.html/.pdf.")
    cache: bool = Field(True, description="Reuse an earlier render of the same inputs.")


class _Render(Step):
    """Shared by the render steps: params, the cache, template lookup."""

    kind: ClassVar[str]
    media_type: ClassVar[str]

    @classmethod
    def check(cls, params: dict[str, Any], where: CheckContext) -> list[Problem]:
        value = params.get("template_dir")
        if not isinstance(value, str):  # null, or an expression: checked when the step runs
            return []
        allowed = reach.allowed_template_dirs(where.config)
        found = reach.refusal(value, where.policy_dir, allowed, reach.state_dirs())
        return [Problem("/template_dir", *found)] if found else []

    async def run(self, params: Any, ctx: StepContext) -> Any:
        where = f"{ctx.pointer}/params"
        report = _report(params.report, where)
        # [governance] audit_head_in_reports: the audit chain's head at render time, in the footer
        head = await asyncio.to_thread(ctx.audit_head)
        report["audit_head"] = f"{head[0]} {head[1]}" if head else None
        params = await asyncio.to_thread(self.prepare, params, ctx)
        dirs = document.template_dirs(_template_dir(params.template_dir, ctx, where))
        templates = await asyncio.to_thread(document.templates_digest, dirs)
        key = cache.key(
            {
                "renderer": self.type,
                "renderer_version": RENDERER_VERSION,
                "libraries": {name: package_version(name) for name in _LIBRARIES},
                "spec": report["spec"],
                "snapshot_hash": report["hash"],
                "report_version": [report["version"], report["created_at"]],
                "audit_head": report["audit_head"],
                "templates": templates,
                "options": self.options(params),
            }
        )
        db = await asyncio.to_thread(_database, ctx)
        if params.cache:
            hit = await asyncio.to_thread(cache.lookup, db, key)
            if hit is not None:
                ctx.log.info("render.cache_hit", renderer=self.type, cache_key=key[:16])
                return self.Output.model_validate({**hit["output"], "cache_status": "hit", "cache_key": key})
        started = time.perf_counter()
        data, extra = await self.render(report, params, ctx, document.environment(dirs), where)
        name = params.file_name or f"{report['report_id']}-v{report['version']}.{self.kind}"
        ref = await asyncio.to_thread(ctx.artifacts.put_bytes, data, self.media_type, name)
        output = {self.kind: ref.model_dump(), **extra}
        ctx.log.info("render.done", renderer=self.type, size=ref.size, seconds=round(time.perf_counter() - started, 3))
        if params.cache:
            stored = {"output": output, "artifacts": [ref.model_dump()]}
            await asyncio.to_thread(cache.store, db, key, self.type, report, stored)
        status = "miss" if params.cache else "disabled"
        return self.Output.model_validate({**output, "cache_status": status, "cache_key": key})

    def options(self, params: Any) -> dict[str, Any]:
        return {"file_name": params.file_name}

    def prepare(self, params: Any, ctx: StepContext) -> Any:
        """The params as the render will use them (in a thread: it may look at files)."""
        return params

    async def render(
        self, report: dict[str, Any], params: Any, ctx: StepContext, env: Any, where: str
    ) -> tuple[bytes, dict[str, Any]]:
        raise NotImplementedError


class RenderHtml(_Render, type="render.html"):
    """Render a report snapshot to one self-contained HTML page with interactive Plotly charts.

    plotly.js is inlined once per page (no CDN), so the page works offline. Renders are cached by
    spec, snapshot hash, template files and renderer version; ``cache_status`` says hit or miss.
    """

    kind = "html"
    media_type = "text/html"

    class Params(RenderParams):
        pass

    class Output(BaseModel):
        html: ArtifactRef = Field(description="The page: path, media_type, size, sha256, name.")
        cache_status: Literal["hit", "miss", "disabled"] = Field(description="hit: returned from the cache.")
        cache_key: str = Field(description="SHA-256 of everything the render depends on.")

    async def render(
        self, report: dict[str, Any], params: Any, ctx: StepContext, env: Any, where: str
    ) -> tuple[bytes, dict[str, Any]]:
        doc = document.Document(report, "html", where, images={}, env=env)
        html = await asyncio.to_thread(document.render_html, env, doc)
        return html.encode("utf-8"), {}


class RenderPdf(_Render, type="render.pdf"):
    """Render a report snapshot to a PDF, printed by Chromium or laid out by WeasyPrint.

    ``engine: "chromium"`` (the default when a Chromium is found) loads the report page with
    plotly.js drawing the charts in it and prints it through the DevTools protocol; the run's
    render steps share one browser. ``engine: "weasyprint"`` lays the page out with WeasyPrint,
    the charts drawn first by Kaleido as SVG or PNG. Either way the text is selectable, the
    document title and metadata are set, pages carry the title and "Page N of M", and the page
    may load only the files of its template folders. Renders are cached like ``render.html``'s.
    """

    kind = "pdf"
    media_type = "application/pdf"

    class Params(RenderParams):
        engine: Literal["chromium", "weasyprint"] | None = Field(
            None,
            description="chromium (fast; charts drawn by plotly.js in the page) or weasyprint (charts by Kaleido); "
            "null: chromium when a Chromium is found, else weasyprint.",
        )
        chart_format: Literal["svg", "png", "auto"] = Field(
            "svg",
            description="weasyprint only: svg (sharp, selectable text), png, or auto: png for charts over 2,000 "
            "points. Chromium always draws charts as SVG.",
        )
        png_scale: float = Field(2.0, ge=1, le=4, description="Pixel density of PNG charts (weasyprint only).")
        page_size: Literal["A4", "A3", "A5", "Letter", "Legal"] = "A4"
        orientation: Literal["portrait", "landscape"] = "portrait"

    class Output(BaseModel):
        pdf: ArtifactRef = Field(description="The PDF: path, media_type, size, sha256, name.")
        pages: int = Field(description="Number of pages.")
        engine: Literal["chromium", "weasyprint"] = Field(description="The backend that made the PDF.")
        cache_status: Literal["hit", "miss", "disabled"] = Field(description="hit: returned from the cache.")
        cache_key: str = Field(description="SHA-256 of everything the render depends on.")

    def options(self, params: Any) -> dict[str, Any]:
        return {
            "file_name": params.file_name,
            "engine": params.engine,  # resolved by prepare: the backend that will render
            "chart_format": params.chart_format,
            "png_scale": params.png_scale,
            "page": [params.page_size, params.orientation],
        }

    def prepare(self, params: Any, ctx: StepContext) -> Any:
        """Choose the engine before the cache key is made: the backend is part of it."""
        if params.engine == "weasyprint":
            return params
        if params.engine is None:
            try:
                _browser_path(ctx)
            except StepError:
                return params.model_copy(update={"engine": "weasyprint"})
        _browser_path(ctx, CHROMIUM_HINT)  # named in the error when engine: "chromium" has none
        return params.model_copy(update={"engine": "chromium"})

    async def render(
        self, report: dict[str, Any], params: Any, ctx: StepContext, env: Any, where: str
    ) -> tuple[bytes, dict[str, Any]]:
        if params.engine == "chromium":
            data, pages = await self._chromium(report, params, ctx, env, where)
        else:
            data, pages = await self._weasyprint(report, params, ctx, env, where)
        return data, {"pages": pages, "engine": params.engine}

    async def _chromium(
        self, report: dict[str, Any], params: Any, ctx: StepContext, env: Any, where: str
    ) -> tuple[bytes, int]:
        from . import chromium

        doc = document.Document(report, "pdf", where, images={}, env=env, native_charts=True)
        started = time.perf_counter()
        path = await asyncio.to_thread(_browser_path, ctx, CHROMIUM_HINT)
        # the browser starts (or is found running) while the page is written
        opening = asyncio.ensure_future(chromium.shared_browser(ctx, path))
        try:
            html = await asyncio.to_thread(document.render_html, env, doc)
        except BaseException:
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            raise
        html_done = time.perf_counter()
        browser = await opening
        browser_ready = time.perf_counter()
        page_css = page_size_css(params.page_size, params.orientation)
        data, pages = await chromium.write_pdf(browser, html, page_css, env_dirs(env), ctx.pointer, doc.chart_count)
        ctx.log.info(
            "render.pdf_timings",
            engine="chromium",
            charts=doc.chart_count,
            html_s=round(html_done - started, 3),
            browser_wait_s=round(browser_ready - html_done, 3),
            print_s=round(time.perf_counter() - browser_ready, 3),
            pages=pages,
        )
        return data, pages

    async def _weasyprint(
        self, report: dict[str, Any], params: Any, ctx: StepContext, env: Any, where: str
    ) -> tuple[bytes, int]:
        doc = document.Document(report, "pdf", where, images={}, env=env)
        wanted = doc.chart_sections()
        started = time.perf_counter()
        if wanted:
            browser = await asyncio.to_thread(_browser_path, ctx)
            async with charts.ImageRenderer(browser) as images:
                for pointer, spec, frozen in wanted:
                    fig = charts.figure(spec, frozen, where + pointer)
                    fmt = params.chart_format
                    if fmt == "auto":
                        fmt = "png" if charts.points(fig) > DENSE_POINTS else "svg"
                    scale = params.png_scale if fmt == "png" else 1.0
                    media_type = "image/svg+xml" if fmt == "svg" else "image/png"
                    doc.images[pointer] = (media_type, await images.image(fig, fmt, scale, where + pointer))
        charts_done = time.perf_counter()
        html = await asyncio.to_thread(document.render_html, env, doc)
        page_css = page_size_css(params.page_size, params.orientation)
        data, pages = await asyncio.to_thread(pdf.write_pdf, html, page_css, env_dirs(env), ctx.pointer)
        ctx.log.info(
            "render.pdf_timings",
            engine="weasyprint",
            charts=len(wanted),
            charts_s=round(charts_done - started, 3),
            layout_s=round(time.perf_counter() - charts_done, 3),
            pages=pages,
        )
        return data, pages


def page_size_css(size: str, orientation: str) -> str:
    """The paper of ``render.pdf``'s params, over any ``@page`` size a template's CSS sets.

    WeasyPrint cascades this stylesheet as a *user* stylesheet, below the page's own ``<style>``:
    only ``!important`` lets the params win over a ``size`` in ``report.css``. (Chromium lets the
    first ``!important`` size win whatever comes after it: there, the page's own sizes are taken
    out before this is added, see ``chromium._PREPARE_JS``.)
    """
    return f"@page {{ size: {size} {orientation} !important; }}"


def _browser_path(ctx: StepContext, hint: str = charts.INSTALL_HINT) -> str:
    return charts.browser_path(ctx.config.section("render").get("browser_path"), hint)


_tables_lock = threading.Lock()


def _database(ctx: StepContext) -> Any:
    """The engine's database with the cache table; render steps running side by side in one
    process take turns creating it, instead of racing for SQLite's write lock."""
    with _tables_lock:
        return ctx.database(cache.metadata)


def env_dirs(env: Any) -> list[Path]:
    return [Path(loader.searchpath[0]) for loader in env.loader.loaders]


def _template_dir(value: str | None, ctx: StepContext, where: str) -> Path | None:
    if value is None:
        return None
    try:
        allowed = reach.allowed_template_dirs(ctx.config)
    except ConfigError as exc:
        raise StepError(str(exc), retryable=False) from exc
    found = reach.refusal(value, ctx.policy_dir, allowed, reach.state_dirs(ctx.artifacts.shared_dir))
    if found is not None:
        message, hint = found
        raise StepError(f"{message} at {where}/template_dir; {hint}", retryable=False)
    path = (ctx.policy_dir or Path.cwd()) / value
    if not path.is_dir():
        raise StepError(
            f"template_dir {value!r} ({path}) is not a folder at {where}/template_dir; "
            "give a folder of templates, relative to the policy file",
            retryable=False,
        )
    return reach.realpath(path)


def _report(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    needed = ("report_id", "version", "hash", "created_at", "spec", "snapshot")
    if not isinstance(value, dict) or any(k not in value for k in needed):
        got = ", ".join(sorted(value)) if isinstance(value, dict) else type(value).__name__
        raise StepError(
            f"report at {where}/report must be a report.build output such as {{'ref': 'ctx.build'}} "
            f"(with {', '.join(needed)}); got {got}",
            retryable=False,
        )
    text = json.dumps(value["snapshot"], sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if hashlib.sha256(text.encode()).hexdigest() != value["hash"]:
        raise StepError(
            f"report at {where}/report: the snapshot does not match its hash {value['hash'][:12]}...; "
            "pass report.build's output unchanged",
            retryable=False,
        )
    return value
