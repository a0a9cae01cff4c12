"""Browser tests of the web UI: Playwright for Python driving Debian's chromium (never a
downloaded browser: ``executable_path``), against a real ``engine server`` application on
127.0.0.1 (the server fixtures of tests/server)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.conftest import LiveServer, start_server  # noqa: F401 - the fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.fail("the UI tests need Debian's chromium: bash scripts/setup installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def page_of(browser: Any) -> Iterator[Any]:
    """``page_of(live, token)``: a new browser context logged in with ``token`` (or not, with None)."""
    contexts: list[Any] = []

    def open_page(live: LiveServer, token: str | None) -> Any:
        context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        if token is not None:
            login(page, token)
        return page

    yield open_page
    for context in contexts:
        context.close()


def login(page: Any, token: str, then: str = "/") -> None:
    page.goto(f"/login?next={then}")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{then}")
