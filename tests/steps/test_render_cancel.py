"""Cancelling a render.pdf while Kaleido starts or draws (Ctrl-C): CancelledError, promptly, and no browser left.

The charts are drawn by the real Kaleido with the real Chromium; the process table is read from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from steps.render import charts

ROWS = {"columns": ["x", "y"], "values": [list(range(300)), [i * i % 97 for i in range(300)]]}


def figures(n: int) -> list:
    spec = {"kind": "scatter", "x": "x", "y": ["y"], "title": "Points"}
    return [charts.figure({**spec, "title": f"Chart {i}"}, {"data": ROWS}, f"/sections/{i}") for i in range(n)]


def processes_of(group: int) -> list[str]:
    """What is left of Kaleido's browser, which leads its own process group: its running processes,
    and any that ended but that this process, their parent, did not reap. As 'pid state name'."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name_end = text.rindex(")")
        pid, name = text[: text.index(" (")], text[text.index("(") + 1 : name_end]
        state, ppid, pgrp = text[name_end + 2 :].split()[:3]
        ours = int(ppid) == os.getpid()
        if (int(pgrp) == group and (state != "Z" or ours)) or (ours and "chrom" in name):
            found.append(f"{pid} {state} {name}")
    return found


async def drawing(renderer: charts.ImageRenderer, started: asyncio.Event, n: int = 8) -> None:
    async with renderer as images:
        for fig in figures(n):
            await images.image(fig, "svg")
            started.set()


@pytest.fixture
def renderer():
    """An ImageRenderer whose browser is killed after the test, whatever the test left."""
    made = charts.ImageRenderer(charts.browser_path())
    yield made
    if made.pid is not None and processes_of(made.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(made.pid, signal.SIGKILL)


@pytest.mark.parametrize("when", ["starting", "drawing", "hung"])
def test_a_cancelled_render_ends_cancelled_within_3_s_and_leaves_no_browser(renderer, when):
    async def scenario() -> tuple[BaseException | None, float]:
        started = asyncio.Event()
        task = asyncio.create_task(drawing(renderer, started))
        if when == "starting":
            await asyncio.sleep(1.0)  # the browser takes 2-4 s to start
        else:
            await asyncio.wait_for(started.wait(), 60)  # the first chart is drawn
            await asyncio.sleep(0.2)
            if when == "hung":  # a browser that answers nothing any more, not even Browser.close
                os.killpg(renderer.pid, signal.SIGSTOP)
        assert not task.done()
        clock = time.monotonic()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        elapsed = time.monotonic() - clock
        assert done, "the render did not stop within 10 s"
        return None if task.cancelled() else task.exception(), elapsed

    error, elapsed = asyncio.run(scenario())
    assert error is None  # cancelled, not turned into a StepError
    assert elapsed < 3.0
    assert renderer.pid is not None
    assert processes_of(renderer.pid) == []


def test_a_browser_that_does_not_close_is_killed(renderer):
    async def draw_then_hang() -> float:
        async with renderer as images:
            await images.image(figures(1)[0], "svg")
            os.killpg(renderer.pid, signal.SIGSTOP)
            clock = time.monotonic()
        return time.monotonic() - clock

    elapsed = asyncio.run(draw_then_hang())
    assert charts.CLOSE_TIMEOUT_S <= elapsed < charts.CLOSE_TIMEOUT_S + 1.0
    assert processes_of(renderer.pid) == []


def test_a_render_that_is_not_cancelled_closes_its_browser(renderer):
    asyncio.run(drawing(renderer, asyncio.Event(), n=1))
    assert renderer.pid is not None
    assert processes_of(renderer.pid) == []
