"""``render.pdf`` with ``engine: "chromium"``: the report page, charts drawn by plotly.js, printed by Chromium.

The page is the same HTML as WeasyPrint's (``base.html`` in PDF mode, the bundled fonts), except
that each chart is a ``<div>`` that plotly.js (inlined) draws as SVG in the page. It is loaded in
a new tab of the run's browser (:mod:`steps.render.cdp`, shared by every render of the run),
the tab waits for the charts' own promise (``engineChartsDrawn()``) and for the fonts, then
``Page.printToPDF`` prints it with the ``@page`` size and margins of the stylesheets
(``preferCSSPageSize``), over which the params' paper wins as in WeasyPrint.

What the page may load is WeasyPrint's rule (see ``steps.render.pdf``): every request of the tab
is stopped by the DevTools ``Fetch`` domain and let through only when it is a ``data:`` URL or a
file inside the template folders (:func:`steps.render.pdf.local_file`; a relative URL is looked
up in your ``template_dir``, then in the built-in folder). Any other URL is refused before it is
opened, and fails the step with a message that names it. The browser has no route to the network
besides (see ``cdp.FLAGS``).

Chromium lacks two things WeasyPrint has, filled in here: ``string-set``/``string()`` (the
running header's title) and the document information beyond ``/Title`` (:mod:`.pdfinfo`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from engine import StepError

from .cdp import BrowserError, Chromium
from .pdf import raise_refused
from .reach import realpath

PRINT_TIMEOUT_S = 120.0
"""How long one page may take from opening its tab to the printed PDF."""

PRINT_OPTIONS = {
    "preferCSSPageSize": True,  # the @page size and margins of the page's stylesheets
    "printBackground": True,  # cards, table headers and stripes, as WeasyPrint draws them
    "displayHeaderFooter": False,  # the header and footer are the stylesheet's @page margin boxes
    "transferMode": "ReturnAsBase64",
}

_PREPARE_JS = r"""
(function (pageCss) {
  // 1. string-set: NAME content() and string(NAME) (the running header), which Chromium lacks: each
  // string(NAME) in a <style> becomes the text of the first element that a rule setting NAME selects
  // (plotly.js adds a <style> of 83 kB that sets none: only the styles that do are read)
  var styles = Array.prototype.slice.call(document.querySelectorAll("style"));
  var css = styles.map(function (s) { return s.textContent; })
    .filter(function (text) { return text.indexOf("string-set") >= 0; })
    .join("\n").replace(/\/\*[\s\S]*?\*\//g, "");
  var values = {}, rule = /([^{};]+)\{[^{}]*?string-set\s*:\s*([-\w]+)\s+content\(\s*\)/g, found;
  while ((found = rule.exec(css))) {
    var element = null;
    try { element = document.querySelector(found[1].trim()); } catch (e) { /* not a selector */ }
    if (element && !(found[2] in values)) values[found[2]] = element.textContent.replace(/\s+/g, " ").trim();
  }
  function quoted(text) { return '"' + text.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"'; }
  styles.forEach(function (style) {
    if (style.textContent.indexOf("string(") < 0) return;
    style.textContent = style.textContent.replace(/string\(\s*([-\w]+)\s*\)/g, function (all, name) {
      return name in values ? quoted(values[name]) : '""';
    });
  });
  // 2. the paper of the params. Chromium keeps the first !important size it meets, so the page's
  // own @page sizes are taken out first (a stylesheet whose rules it may not read keeps them)
  function dropSizes(rules) {
    for (var i = 0; i < rules.length; i++) {
      if (rules[i].type === CSSRule.PAGE_RULE) rules[i].style.removeProperty("size");
      else if (rules[i].cssRules) dropSizes(rules[i].cssRules);
    }
  }
  for (var s = 0; s < document.styleSheets.length; s++) {
    try { dropSizes(document.styleSheets[s].cssRules); } catch (e) { /* another origin's */ }
  }
  var paper = document.createElement("style");
  paper.textContent = pageCss;
  document.documentElement.appendChild(paper);
  // 3. the print layout asks for the fonts it uses; then the document information for the PDF
  if (document.body) document.body.getBoundingClientRect();
  function meta(name) {
    var element = document.querySelector('meta[name="' + name + '"]');
    return element ? element.getAttribute("content") : null;
  }
  return document.fonts.ready.then(function () {
    return {title: document.title, author: meta("author"), subject: meta("description"),
            keywords: meta("keywords"), creator: meta("generator"), created: meta("dcterms.created"),
            modified: meta("dcterms.modified")};
  });
})
"""

BROWSER_KEY = "render.browser"
"""The run's browser, in ``ctx.shared``: every render.pdf step of a run prints in it."""

_ERRORS_JS = """
window.engineErrors = [];
window.addEventListener("error", function (event) { window.engineErrors.push(event.message); });
"""
"""Run in each page before its own scripts: the errors of its scripts, for the step's message."""

_pages = itertools.count(1)


async def shared_browser(ctx: Any, path: str) -> Chromium:
    """The run's browser: started by the first render that asks, closed when the run ends."""
    try:
        browser: Chromium = await ctx.shared(BROWSER_KEY, lambda: warm_browser(path))
    except BrowserError as exc:
        _raise_if_cancelling(exc)
        raise StepError(f"Chromium ({path}) failed to start: {exc}") from exc
    return browser


@contextlib.asynccontextmanager
async def warm_browser(path: str) -> AsyncIterator[Chromium]:
    """A browser with one more tab, open until it closes, on an empty page of our own.

    The tabs of a browser share one renderer process (``--process-per-site``), which lives as long
    as one of them: that tab keeps it, and with it plotly.js as the first page compiled it, from
    one print to the next (a page then loads in 0.2 s instead of 0.8 s).
    """
    async with Chromium(path) as browser:
        page = browser.profile / "keep.html"
        await asyncio.to_thread(page.write_text, "<!DOCTYPE html><title>keep</title>")
        await browser.send("Target.createTarget", {"url": page.as_uri()})
        yield browser


async def write_pdf(
    browser: Chromium, html: str, page_css: str, template_dirs: list[Path], pointer: str, charts: int
) -> tuple[bytes, int]:
    """Print ``html`` in a new tab of ``browser``; (PDF bytes, number of pages).

    ``charts`` is how many charts the page draws; ``pointer`` is the step's, for errors.
    """
    from . import pdfinfo

    page = _Page(browser, [realpath(folder) for folder in template_dirs], pointer)
    try:
        async with asyncio.timeout(PRINT_TIMEOUT_S):
            data, info = await page.print(html, page_css, charts)
    except TimeoutError:
        raise StepError(f"Chromium did not print the PDF within {PRINT_TIMEOUT_S:.0f} s") from None
    except BrowserError as exc:  # one boundary: the browser's errors become step errors
        _raise_if_cancelling(exc)  # the browser was closed because the run is stopping
        page.raise_refused()
        raise StepError(f"Chromium could not print the PDF: {exc}") from exc
    finally:
        page.close()
    return pdfinfo.set_info(data, info), len(re.findall(rb"/Type\s*/Page\b", data))


class _Page:
    """One tab: the rule for its requests, its events, and the steps of one print."""

    def __init__(self, browser: Chromium, folders: list[Path], pointer: str) -> None:
        self.browser = browser
        self.folders = folders
        self.pointer = pointer
        self.url = folders[0].as_uri() + "/"  # the base of relative URLs, as WeasyPrint's base_url
        self.file = browser.profile / f"page-{next(_pages)}.html"
        self.target = ""
        self.session = ""
        self.loaded = asyncio.Event()
        self.refused: list[str] = []
        self._served = False
        self._routing: set[asyncio.Task[None]] = set()
        # the tab's renderer crashed, or the tab went: what the print waits for never comes
        self._broken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def print(self, html: str, page_css: str, charts: int) -> tuple[bytes, dict[str, Any]]:
        send = self.browser.send
        writing = asyncio.ensure_future(asyncio.to_thread(self.file.write_text, html, "utf-8"))
        self.target = (await send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        attached = await send("Target.attachToTarget", {"targetId": self.target, "flatten": True})
        self.session = attached["sessionId"]
        self.browser.on(self.session, self._event)
        # not Runtime.enable: with it, compiling plotly.js takes twice as long; the page keeps its
        # own errors instead
        await asyncio.gather(
            self.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}),
            self.call("Page.enable"),
            self.call("Page.addScriptToEvaluateOnNewDocument", {"source": _ERRORS_JS}),
            writing,
        )
        navigated = await self.call("Page.navigate", {"url": self.url})
        if navigated.get("errorText"):
            self.raise_refused()
            raise BrowserError(f"the page did not load: {navigated['errorText']}")
        await self.until(self.loaded.wait())
        drawn = await self.evaluate("window.engineChartsDrawn ? engineChartsDrawn() : 0")
        if drawn != charts:
            self.raise_refused()
            errors = await self.evaluate("window.engineErrors || []")
            raise StepError(
                f"render.pdf at {self.pointer}: the page drew {drawn} of its {charts} charts"
                + (f" ({str(errors[0])[:300]})" if errors else "")
                + "; a base.html of your own must include {{ plotly_js }} in a <script> as the built-in one does",
                retryable=False,
            )
        await self.call("Emulation.setEmulatedMedia", {"media": "print"})
        info = await self.evaluate(f"{_PREPARE_JS}({json.dumps(page_css)})")
        self.raise_refused()
        printed = await self.call("Page.printToPDF", PRINT_OPTIONS)
        self.raise_refused()
        return base64.b64decode(printed["data"]), info

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A command of the tab's session, given up when the tab breaks (a crashed renderer never answers)."""
        return await self.until(self.browser.send(method, params, self.session))

    async def until(self, work: Any) -> Any:
        """``await work``, or the BrowserError of the tab breaking first."""
        task = asyncio.ensure_future(work)
        try:
            await asyncio.wait([task, self._broken], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                task.add_done_callback(_retrieve)
        if task.done() and not task.cancelled():
            return task.result()
        return self._broken.result()  # raises

    async def evaluate(self, expression: str) -> Any:
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        result = await self.call("Runtime.evaluate", params)
        if "exceptionDetails" in result:
            raise StepError(f"render.pdf at {self.pointer}: a script of the page failed: {_describe(result)}")
        return result["result"].get("value")

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Fetch.requestPaused":
            task = asyncio.ensure_future(self._route(params))
            self._routing.add(task)
            task.add_done_callback(self._routing.discard)
        elif method == "Page.loadEventFired":
            self.loaded.set()
        elif method in ("Inspector.targetCrashed", "Inspector.detached") and not self._broken.done():
            why = "crashed" if method == "Inspector.targetCrashed" else f"was detached ({params.get('reason')})"
            self._broken.set_exception(BrowserError(f"the page's renderer {why}"))

    async def _route(self, params: dict[str, Any]) -> None:
        """Let a request through to a file of the template folders (or ours), or refuse it."""
        from .pdf import local_file

        url: str = params["request"]["url"]
        request = {"requestId": params["requestId"]}
        if url == self.url and not self._served and params.get("resourceType") == "Document":
            self._served = True  # the page itself, from the file written for it
            request["url"] = self.file.as_uri()
        elif url[:5].lower() != "data:":
            path = await asyncio.to_thread(local_file, url, self.folders)
            if path is None:
                if url not in self.refused:
                    self.refused.append(url)
                request["errorReason"] = "AccessDenied"
            else:
                request["url"] = path.as_uri()
        method = "Fetch.failRequest" if "errorReason" in request else "Fetch.continueRequest"
        with contextlib.suppress(BrowserError):  # the tab was closed meanwhile
            await self.browser.send(method, request, self.session)

    def raise_refused(self) -> None:
        raise_refused(self.refused, self.folders, self.pointer)

    def close(self) -> None:
        """Close the tab without waiting (the browser may be gone, or the step cancelled)."""
        _retrieve(self._broken)
        for task in self._routing:
            task.cancel()
        self.browser.on(self.session, None)
        if self.target:
            with contextlib.suppress(BrowserError):
                self.browser.post("Target.closeTarget", {"targetId": self.target})
        self.file.unlink(missing_ok=True)


def _describe(details: dict[str, Any]) -> str:
    found = details["exceptionDetails"]
    exception = found.get("exception") or {}
    return str(exception.get("description") or found.get("text") or "unknown error").splitlines()[0][:300]


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (no "exception was never retrieved" when nobody awaits it)."""
    if future.done() and not future.cancelled():
        future.exception()


def _raise_if_cancelling(exc: BaseException) -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from exc
