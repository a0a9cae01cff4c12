"""Logging in and out of the web UI with an API token, in a real browser."""

from __future__ import annotations

from tests.ui.conftest import login


def test_login_shows_home_and_logout_ends_the_session(start_server, page_of):
    live = start_server(scheduler=False)
    token = live.token("ann", "author")
    page = page_of(live, None)
    page.goto("/audit")
    assert "/login?next=/audit" in page.url  # not logged in: to the login page, and back after it
    login(page, token, then="/")
    assert page.get_by_role("heading", name="Home").is_visible()
    assert page.get_by_text("ann · author · default").is_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "engine_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and token not in cookie["value"]
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto("/")
    assert "/login" in page.url


def test_a_wrong_token_is_refused_on_the_login_page(start_server, page_of):
    live = start_server(scheduler=False)
    page = page_of(live, None)
    page.goto("/login")
    page.get_by_label("API token").fill("eng_wrong")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "invalid token"
