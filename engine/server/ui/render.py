"""Jinja2 pages (autoescaped; our own templates, never policy text as a template)."""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

HERE = Path(__file__).parent
STATUS_CLASS = {
    "SUCCESS": "ok",
    "RUNNING": "running",
    "PENDING": "pending",
    "FAILED": "bad",
    "PARTIAL": "warn",
    "CANCELLED": "warn",
    "SKIPPED": "skip",
    "RETRYING": "running",
    "sent": "ok",
    "failed": "bad",
    "duplicate": "skip",
    "sending": "running",
}


def _short_time(value: str | None) -> str:
    if not value:
        return ""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@lru_cache(maxsize=1)
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["time"] = _short_time
    env.filters["status_class"] = lambda s: STATUS_CLASS.get(str(s), "")
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, sort_keys=True)
    return env


def page(request: Request, template: str, who: Any = None, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page (or a fragment: the template decides) rendered with the visitor and the path."""
    html = environment().get_template(template).render(request=request, who=who, path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code)
