"""Charts: the built-in chart kinds as Plotly figures, and static images through one Kaleido browser.

Each kind turns the chart's frozen data into Plotly traces; :func:`figure` adds the shared
layout (fonts, colours, axis labels). :class:`ImageRenderer` starts Kaleido's browser once and
draws every chart of a report with it.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import subprocess
from typing import Any

from engine import StepError

from .formats import SYMBOLS
from .registry import chart_kind, chart_kinds, get_chart

FONT = "Liberation Sans, Arial, Helvetica, DejaVu Sans, sans-serif"
COLORWAY = ["#1f4e79", "#e07a1f", "#2e8b57", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d"]
WIDTH = 760  # px: the A4 text column at 96 dpi, a little wider so fonts print at about 9 pt
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "Kaleido draws the PDF's charts with Chromium, and no browser was found "
    "(looked for BROWSER_PATH, the render config's browser_path, then {names} on PATH). "
    "Install it with `apt-get install chromium` (Debian/Ubuntu), or set BROWSER_PATH to a Chromium binary"
)


def columns(frozen: dict[str, Any]) -> dict[str, list[Any]]:
    return dict(zip(frozen["columns"], frozen["values"], strict=True))


def _series(data: dict[str, list[Any]], spec: dict[str, Any]) -> list[tuple[str, list[Any], list[Any]]]:
    """(name, x, y) per trace: one per y column, or one per value of the series column."""
    x = data[spec["x"]]
    if not spec.get("series"):
        return [(name, x, data[name]) for name in spec["y"]]
    groups: dict[Any, tuple[list[Any], list[Any]]] = {}
    for xv, yv, sv in zip(x, data[spec["y"][0]], data[spec["series"]], strict=True):
        gx, gy = groups.setdefault(sv, ([], []))
        gx.append(xv)
        gy.append(yv)
    return [(str(k), gx, gy) for k, (gx, gy) in groups.items()]


@chart_kind("line")
def _line(data: dict[str, list[Any]], spec: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    import plotly.graph_objects as go

    traces = []
    for name, x, y in _series(data, spec):
        mode = "lines+markers" if len(x) <= 40 else "lines"
        traces.append(go.Scatter(x=x, y=y, name=name, mode=mode, line={"width": 2.5}))
    return traces, {}


@chart_kind("area")
def _area(data: dict[str, list[Any]], spec: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    import plotly.graph_objects as go

    return [
        go.Scatter(x=x, y=y, name=name, mode="lines", stackgroup="one", line={"width": 1.5})
        for name, x, y in _series(data, spec)
    ], {}


@chart_kind("scatter")
def _scatter(data: dict[str, list[Any]], spec: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    import plotly.graph_objects as go

    return [
        go.Scatter(x=x, y=y, name=name, mode="markers", marker={"size": 7, "opacity": 0.8})
        for name, x, y in _series(data, spec)
    ], {}


@chart_kind("bar")
def _bar(data: dict[str, list[Any]], spec: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    import plotly.graph_objects as go

    return [go.Bar(x=x, y=y, name=name) for name, x, y in _series(data, spec)], {"barmode": "group"}


@chart_kind("stacked_bar")
def _stacked_bar(data: dict[str, list[Any]], spec: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    traces, _ = _bar(data, spec)
    return traces, {"barmode": "stack"}


@chart_kind("pie")
def _pie(data: dict[str, list[Any]], spec: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    import plotly.graph_objects as go

    pie = go.Pie(
        labels=data[spec["x"]],
        values=data[spec["y"][0]],
        hole=0.45,
        sort=False,
        textinfo="label+percent",
        marker={"colors": COLORWAY},
    )
    return [pie], {"showlegend": False}


@chart_kind("candlestick")
def _candlestick(data: dict[str, list[Any]], spec: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    import plotly.graph_objects as go

    o, h, low, c = (data[name] for name in spec["y"])
    return [go.Candlestick(x=data[spec["x"]], open=o, high=h, low=low, close=c, name=spec["y"][3])], {
        "xaxis_rangeslider_visible": False
    }


def figure(spec: dict[str, Any], frozen: dict[str, Any], where: str) -> Any:
    """The Plotly figure of a chart section."""
    import plotly.graph_objects as go

    build = get_chart(spec["kind"])
    if build is None:
        raise StepError(
            f"chart at {where}: no renderer for chart kind {spec['kind']!r} (kinds: {', '.join(chart_kinds())}); "
            "is the plugin that adds it loaded?",
            retryable=False,
        )
    traces, overrides = build(columns(frozen["data"]), spec)
    fig = go.Figure(data=traces)
    fig.update_layout(
        template="plotly_white",
        title={"text": spec.get("title") or "", "x": 0, "xanchor": "left", "font": {"size": 15}},
        font={"family": FONT, "size": 12, "color": "#222"},
        colorway=COLORWAY,
        height=spec.get("height", 340),
        width=WIDTH,
        margin={"l": 60, "r": 20, "t": 50 if spec.get("title") else 20, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        xaxis_title=spec.get("x_label"),
        yaxis_title=spec.get("y_label"),
        **overrides,
    )
    fig.update_xaxes(showgrid=False)
    _y_format(fig, spec.get("y_format"))
    return fig


def _y_format(fig: Any, fmt: dict[str, Any] | None) -> None:
    if not fmt:
        return
    kind, places = fmt.get("type"), fmt.get("decimals")
    if kind == "percent":
        fig.update_yaxes(tickformat=f".{max(places or 0, tick_decimals(fig, 100))}%")
    elif kind == "currency":
        symbol = SYMBOLS.get(fmt.get("currency", "USD"), fmt.get("currency", "") + " ")
        fig.update_yaxes(tickprefix=symbol, tickformat=f",.{max(places or 0, tick_decimals(fig))}f")
    elif kind in ("number", "integer"):
        fig.update_yaxes(tickformat=f",.{max(places or 0, tick_decimals(fig))}f")


def tick_decimals(fig: Any, scale: float = 1) -> int:
    """Decimals that tell every y tick Plotly can draw apart, for values shown times ``scale``.

    Plotly draws at most 10 ticks: its step is 1, 2 or 5 times a power of ten and at least a tenth
    of the axis range, and ticks are multiples of it. With the decimals of a tenth of the values'
    span, no two ticks print alike: 0.571 to 0.583 as percents gives 1 (57.2%, 57.4%...), not
    "57%, 57%, 58%". ``decimals`` in ``y_format`` is a minimum.
    """
    values = [
        v * scale
        for trace in fig.data
        for name in ("y", "open", "high", "low", "close")
        for v in (getattr(trace, name, None) or ())
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]
    if not values:
        return 0
    low, high = min(values), max(values)
    if any(trace.type == "bar" or getattr(trace, "stackgroup", None) for trace in fig.data):
        low, high = min(low, 0), max(high, 0)  # bars and areas start at zero: the axis does too
    span = high - low or 2 * scale  # one value v: Plotly's axis runs from v - 1 to v + 1
    return max(0, -math.floor(math.log10(span / 10)))


def points(fig: Any) -> int:
    return sum(len(getattr(t, "x", None) or []) for t in fig.data)


def browser_path(configured: str | None = None, hint: str = INSTALL_HINT) -> str:
    """The Chromium binary to use, or a StepError that says how to install it (``hint``, formatted
    with the names looked for on PATH)."""
    for candidate in (os.environ.get("BROWSER_PATH"), configured):
        if candidate:
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
            raise StepError(
                f"the browser {candidate!r} does not exist or is not executable. "
                + hint.format(names=", ".join(BROWSERS)),
                retryable=False,
            )
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise StepError(hint.format(names=", ".join(BROWSERS)), retryable=False)


async def _abandon_on_cancel(work: Any) -> Any:
    """Await ``work`` in a task of its own, and stop waiting for it at once when cancelled.

    Kaleido returns its tab in a ``finally`` that awaits the browser without a time limit; awaited
    directly, a cancellation would wait on a browser that answers nothing. The task is cancelled
    and left to end when ``_close`` kills the browser."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_ignore_outcome)
        raise


_PAGE_NOT_READY = "kaleido_scopes is not defined"
_PAGE_RACE_TRIES = 3
CLOSE_TIMEOUT_S = 2.0
"""How long closing Kaleido's browser may take before it is killed."""


class ImageRenderer:
    """One Kaleido browser for every chart of a render: ``async with ImageRenderer(path) as r``.

    Cancelling the task that draws (Ctrl-C, a run timeout) raises ``CancelledError`` out of it,
    never a StepError, and leaving the ``async with`` never hangs: the browser is asked to close
    and, when it has not within ``CLOSE_TIMEOUT_S``, its process group is killed.
    """

    def __init__(self, browser: str) -> None:
        self.browser = browser
        self.pid: int | None = None
        """The browser's process id (Kaleido starts it as the leader of its own process group)."""
        self._kaleido: Any = None

    async def __aenter__(self) -> ImageRenderer:
        try:
            await self._open()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _open(self) -> None:
        import kaleido
        from choreographer.errors import BrowserFailedError, ChromeNotFoundError

        try:
            self._kaleido = kaleido.Kaleido(mathjax=False, path=self.browser, timeout=120)
            await self._kaleido.open()
        except ChromeNotFoundError as exc:
            _raise_if_cancelling(exc)
            raise StepError(INSTALL_HINT.format(names=", ".join(BROWSERS)), retryable=False) from exc
        except BrowserFailedError as exc:
            # choreographer reports a cancelled start as "the browser seemed to close immediately"
            _raise_if_cancelling(exc)
            raise StepError(f"Chromium ({self.browser}) failed to start for Kaleido: {exc}") from exc
        finally:
            process = getattr(self._kaleido, "subprocess", None)
            self.pid = process.pid if process is not None else self.pid

    async def _close(self) -> None:
        """Close the browser within CLOSE_TIMEOUT_S, or kill it; also when cancelled meanwhile."""
        browser, self._kaleido = self._kaleido, None
        if browser is None:
            return
        closing = asyncio.ensure_future(browser.close())
        closing.add_done_callback(_ignore_outcome)
        try:
            # shielded: a timeout or a second cancellation must not stop choreographer's close half-way
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_TIMEOUT_S)
        except Exception:  # it timed out, or choreographer could not close it: killed below
            pass
        finally:
            _kill(browser)

    async def image(self, fig: Any, fmt: str, scale: float = 1.0, where: str = "") -> bytes:
        opts = {"format": fmt, "width": fig.layout.width, "height": fig.layout.height, "scale": scale}
        for attempt in range(1, _PAGE_RACE_TRIES + 1):
            try:
                data: bytes = await _abandon_on_cancel(self._kaleido.calc_fig(fig, opts=opts))
                return data
            except Exception as exc:  # one boundary: Kaleido's and the browser's errors become step errors
                _raise_if_cancelling(exc)  # e.g. the browser was killed because the run is stopping
                if _PAGE_NOT_READY in str(exc) and attempt < _PAGE_RACE_TRIES:
                    # Kaleido can take the blank page's JavaScript context for its own when the
                    # machine is busy: its script is then "not defined". A new browser fixes it.
                    await self._close()
                    await self._open()
                    continue
                raise StepError(f"Kaleido could not draw the chart at {where}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover


def _raise_if_cancelling(exc: BaseException) -> None:
    """Our task is being cancelled: whatever went wrong meanwhile is that cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from exc


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" at exit


def _kill(browser: Any) -> None:
    """SIGKILL the browser's process group (the wrapper, Chromium and its helpers) and reap the wrapper."""
    process = getattr(browser, "subprocess", None)
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)  # choreographer starts it with start_new_session=True
    except (ProcessLookupError, PermissionError):
        process.kill()
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
        pass
