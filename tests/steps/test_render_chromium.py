"""render.pdf with ``engine: "chromium"``: the choice of engine, what the page may load, one browser per run,
and no browser left behind (by a closed run, a browser that hangs, or Ctrl-C on the real ``engine run``).

The real Debian Chromium prints; pypdf reads the PDFs back; the process table is read from /proc.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pypdf
import pytest

from steps.render import cdp, chromium
from steps.render.charts import BROWSERS
from steps.render.document import BUILTIN_TEMPLATES
from tests.cli.test_cli import _wait_for_state
from tests.cli.test_interrupts import descendants, pid_alive, start, stop
from tests.steps.test_render_reach import SECRET, base_html, error_of, stored_files, tpl
from tests.steps.test_render_sections import output, pdf_text, report_policy

TEXT = [{"type": "text", "body": "Hello"}]
NAMES = ", ".join(BROWSERS)


def browser_processes(marker: str) -> list[int]:
    """Running processes (not zombies) whose command line holds ``marker``: give a browser's profile
    folder, which every process of that browser names (its crash handler too, which leaves the group)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and pid_alive(int(entry)):
                found.append(int(entry))
    return found


def still_running(profile: str, within: float = 1.0) -> list[int]:
    """The processes of the browser with this profile folder still running after ``within`` seconds:
    a browser that closed normally leaves its crash handlers (in sessions of their own) to end a
    moment after it; a killed one has them killed too."""
    deadline = time.monotonic() + within
    while (left := browser_processes(profile)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def our_browsers() -> list[int]:
    """This test process's own Chromium processes still running (other test runs may have theirs)."""
    return [p for p in descendants(os.getpid()) if pid_alive(p) and b"chrom" in _cmdline(p)]


def profile_of(pid: int) -> str:
    """The profile folder a Chromium process names (``--user-data-dir=``)."""
    return _cmdline(pid).split(b"--user-data-dir=", 1)[1].split(b"\0", 1)[0].decode()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# -- the engine: chosen, recorded, explained -------------------------------------------------------


def test_with_a_chromium_found_the_default_engine_is_chromium(run, store):
    result = run(report_policy(TEXT, render=("pdf",)))
    out = output(store, result, "pdf")
    assert (out["engine"], out["cache_status"]) == ("chromium", "miss")
    assert "Hello" in pdf_text(store, result)[0]


def test_without_a_chromium_the_default_engine_is_weasyprint(run, store, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no browser on PATH
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    result = run(report_policy(TEXT, render=("pdf",)))
    assert output(store, result, "pdf")["engine"] == "weasyprint"
    assert "Hello" in pdf_text(store, result)[0]


def test_engine_chromium_without_a_browser_says_how_to_install_one(run, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    result = run(report_policy(TEXT, render=("pdf",), engine="chromium"))
    assert result.status == "FAILED"
    assert error_of(result) == (
        'render.pdf\'s engine "chromium" prints the PDF with Chromium, and no browser was found (looked for '
        f"BROWSER_PATH, the render config's browser_path, then {NAMES} on PATH). Install it with "
        "`apt-get install chromium` (Debian/Ubuntu), set BROWSER_PATH to a Chromium binary, or use "
        'engine: "weasyprint"'
    )


def test_engine_chromium_with_a_browser_path_that_does_not_exist_names_it(run, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nope/chromium")
    result = run(report_policy(TEXT, render=("pdf",), engine="chromium"))
    assert error_of(result).startswith(
        "the browser '/nope/chromium' does not exist or is not executable. "
        'render.pdf\'s engine "chromium" prints the PDF with Chromium'
    )


# -- what the page may load ------------------------------------------------------------------------


def test_the_page_loads_nothing_outside_the_template_folders(run, state_dir, tmp_path, server):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    head = (
        f'<link rel="stylesheet" href="{server.url}/x.css">\n'
        f"<style>@import url({secret.as_uri()}); .bg {{ background: url({server.url}/bg.png); }}</style>"
    )
    body = (
        f'<img src="file://localhost{secret}"><iframe src="{secret.as_uri()}"></iframe>'
        f'<object data="../secret.txt"></object><div class="bg">x</div>'
        f'<script>fetch("{server.url}/fetch").catch(function () {{}});\n'
        # not a request the page's checks see: it is the browser's proxy that leads nowhere
        f'new WebSocket("ws://{server.host}:{server.port}/ws");</script>'
    )
    folder = tpl(tmp_path, {"base.html": base_html(head, body)})
    result = run(report_policy(TEXT, render=("pdf",), render_params={"template_dir": "tpl"}, engine="chromium"))
    assert result.status == "FAILED"
    urls = [f"{server.url}/x.css", f"{server.url}/bg.png", f"{server.url}/fetch", f"file://localhost{secret}"]
    urls = sorted([*urls, secret.as_uri()])  # @import, the iframe and ../secret.txt are the same file
    assert error_of(result) == (
        f"render.pdf at /steps/2: the template asks for {', '.join(urls)}, outside the template folders "
        f"({folder.resolve()}, built-in templates); only files inside them and data: URLs can be used, "
        "nothing is fetched from the network"
    )
    assert [s.path for s in server.seen] == []  # nothing was asked of the network
    assert all(SECRET not in p.read_bytes() for p in stored_files(state_dir))


def test_a_template_folders_own_files_and_the_builtin_fonts_are_loaded(run, store, tmp_path):
    # logo.png and css/extra.css from the template_dir; fonts/LiberationMono-Regular.ttf is not there,
    # so it comes from the built-in folder
    from tests.steps.test_render_reach import PNG

    head = (
        '<link rel="stylesheet" href="css/extra.css">\n'
        "<style>@font-face { font-family: Mine; src: url(fonts/LiberationMono-Regular.ttf); }</style>"
    )
    files = {
        "base.html": base_html(head, '<img src="logo.png" alt="logo">'),
        "css/extra.css": "h1 { font-family: Mine; font-weight: normal; color: rgb(200, 0, 0); }",
        "logo.png": PNG,
    }
    tpl(tmp_path, files)
    result = run(report_policy(TEXT, render=("pdf",), render_params={"template_dir": "tpl"}, engine="chromium"))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    reader = pypdf.PdfReader(output(store, result, "pdf")["pdf"]["path"])
    assert [image.image.size for image in reader.pages[0].images] == [(1, 1)]
    fonts = {str(f.get("/BaseFont", "")).split("+")[-1] for f in _fonts(reader.pages[0])}
    assert "LiberationMono" in fonts  # the h1, in the built-in folder's font named by the template's CSS


def _fonts(page: pypdf.PageObject) -> list[dict]:
    return [font.get_object() for font in page["/Resources"]["/Font"].values()]


# -- one browser per run, closed however the run ends ------------------------------------------------


def test_two_pdfs_in_one_run_share_one_browser_which_is_closed_at_the_end(run, store):
    doc = report_policy(TEXT, render=())
    for paper in ("A4", "A5"):
        params = {"report": {"ref": "ctx.build"}, "engine": "chromium", "page_size": paper}
        doc["steps"].append({"id": f"pdf_{paper.lower()}", "type": "render.pdf", "params": params})
    before = cdp.launches
    result = run(doc)
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    assert cdp.launches - before == 1
    assert [output(store, result, s)["engine"] for s in ("pdf_a4", "pdf_a5")] == ["chromium", "chromium"]
    assert our_browsers() == []


def test_a_browser_that_does_not_close_is_killed_with_its_whole_group():
    async def scenario() -> tuple[float, int, Path]:
        async with cdp.Chromium(chromium_path()) as browser:
            profile = browser.profile
            data, pages = await chromium.write_pdf(browser, "<title>t</title><p>Hi</p>", "", [BUILTIN_TEMPLATES], "", 0)
            assert data.startswith(b"%PDF") and pages == 1
            os.killpg(browser.pid, signal.SIGSTOP)  # answers nothing, not even Browser.close
            clock = time.monotonic()
        return time.monotonic() - clock, browser.pid, profile

    elapsed, pid, profile = asyncio.run(scenario())
    assert cdp.CLOSE_TIMEOUT_S <= elapsed < cdp.CLOSE_TIMEOUT_S + 1.0
    assert not pid_alive(pid)
    assert browser_processes(str(profile)) == []  # at once: killed, crash handlers too
    assert not profile.exists()


def test_a_print_cancelled_midway_leaves_no_browser_once_the_run_closes_it(tmp_path):
    from engine.resources import RunResources

    # a page whose charts never finish drawing: the print waits for them until cancelled
    page = "<title>t</title><script>window.engineChartsDrawn = () => new Promise(() => {});</script>"

    async def scenario() -> tuple[BaseException | None, str]:
        resources = RunResources()
        browser = await resources.get(chromium.BROWSER_KEY, lambda: cdp.Chromium(chromium_path()))
        task = asyncio.create_task(chromium.write_pdf(browser, page, "", [BUILTIN_TEMPLATES], "", 1))
        await asyncio.sleep(1.5)
        assert not task.done()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, "the print did not stop"
        profile = str(browser.profile)
        await resources.aclose()
        return (None if task.cancelled() else task.exception()), profile

    error, profile = asyncio.run(scenario())
    assert error is None  # cancelled, not turned into a StepError
    assert still_running(profile) == []
    assert our_browsers() == []


def test_a_renderer_that_crashes_mid_print_fails_the_step_at_once():
    from engine import StepError

    page = "<title>t</title><script>window.engineChartsDrawn = () => new Promise(() => {});</script>"

    async def scenario() -> tuple[str, float]:
        async with chromium.warm_browser(chromium_path()) as browser:
            task = asyncio.create_task(chromium.write_pdf(browser, page, "", [BUILTIN_TEMPLATES], "", 1))
            await asyncio.sleep(1.5)  # the page waits for its charts
            renderers = [p for p in browser_processes(str(browser.profile)) if b"--type=renderer" in _cmdline(p)]
            assert renderers
            for pid in renderers:
                os.kill(pid, signal.SIGKILL)
            clock = time.monotonic()
            with pytest.raises(StepError) as info:
                await asyncio.wait_for(task, 10)
            return str(info.value), time.monotonic() - clock

    message, elapsed = asyncio.run(scenario())
    assert message == "Chromium could not print the PDF: the page's renderer crashed"
    assert elapsed < 2.0


def test_ctrl_c_during_a_chromium_print_ends_the_run_and_leaves_no_browser(write_policy, state_dir, tmp_path):
    # the page's charts never finish drawing: the step is inside the print when SIGINT comes
    forever = "<script>window.engineChartsDrawn = function () { return new Promise(function () {}); };</script>"
    tpl(tmp_path, {"base.html": base_html(forever)})
    doc = report_policy(TEXT, render=("pdf",), render_params={"template_dir": "tpl"}, engine="chromium")
    proc = start(write_policy(doc), state_dir, tmp_path)
    _wait_for_state(state_dir, "pdf", "RUNNING", timeout=60)
    deadline = time.monotonic() + 20
    browsers: list[int] = []
    while time.monotonic() < deadline and not browsers:  # the run's browser is up
        browsers = [p for p in descendants(proc.pid) if b"--user-data-dir=" in _cmdline(p)]
        time.sleep(0.1)
    assert browsers, "render.pdf never started a browser"
    profile = profile_of(browsers[0])
    time.sleep(1.0)  # into the print: the page is loaded and waits for its charts
    out, err, took = stop(proc, signal.SIGINT)
    assert took < 5, err
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["status"] == "CANCELLED"
    (pdf,) = [s for s in data["steps"] if s["id"] == "pdf"]
    assert (pdf["status"], pdf["error"]) == ("FAILED", "cancelled by SIGINT")
    assert still_running(profile) == []  # every process of that browser, its crash handlers too
    assert not Path(profile).exists()


def chromium_path() -> str:
    from steps.render.charts import browser_path

    return browser_path()


def test_a_base_html_without_plotly_js_says_why_its_charts_are_missing(run, tmp_path):
    tpl(tmp_path, {"base.html": base_html(body="{% for section in sections %}{{ section.html }}{% endfor %}")})
    chart = {"type": "chart", "kind": "bar", "data": {"ref": "ctx.rows"}, "x": "region", "y": "revenue"}
    result = run(report_policy([chart], render=("pdf",), render_params={"template_dir": "tpl"}, engine="chromium"))
    assert error_of(result) == (
        "render.pdf at /steps/2: the page drew 0 of its 1 charts "
        "(Uncaught ReferenceError: engineChart is not defined); "
        "a base.html of your own must include {{ plotly_js }} in a <script> as the built-in one does"
    )
