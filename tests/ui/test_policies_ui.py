"""The policy pages in a real browser: the editor validating as one types, the side-by-side diff,
approving (and who may not), the keyboard, and a dry run's e-mail preview shown in place."""

from __future__ import annotations

import json
import re
import time

from engine.config import EngineConfig
from tests.server.conftest import hello

BAD = {
    "schema_version": 1,
    "id": "draft",
    "steps": [{"id": "a", "type": "core.nope", "params": {}}],
}
MAILER = {
    "schema_version": 1,
    "id": "mailer",
    "steps": [
        {
            "id": "mail",
            "type": "send.email",
            "params": {
                "from": "reports@example.com",
                "to": ["team@example.com"],
                "subject": "Numbers",
                "text": "Hello team",
                "allowed_domains": ["example.com"],
            },
        }
    ],
}


def csrf_of(page) -> str:
    return page.locator("input[name=csrf_token]").first.get_attribute("value")


def test_an_author_writes_a_policy_in_the_editor_checked_as_they_type(start_server, page_of):
    live = start_server(scheduler=False)
    page = page_of(live, live.token("ann", "author"))
    page.goto("/policies")
    page.get_by_role("link", name="New policy").click()
    page.wait_for_url("**/policies/new")
    editor = page.get_by_label("Policy document (JSON)")
    text = json.dumps(BAD, indent=2)
    assert text.splitlines()[6].strip().startswith('"type": "core.nope"')  # line 7

    editor.fill(text)
    editor.press("End")  # a key typed: the check runs (keyup, 400 ms later)
    problem = page.locator("#problems li.problem")
    problem.first.wait_for()
    assert "line 7" in problem.first.inner_text() and "unknown step type 'core.nope'" in problem.first.inner_text()
    assert "/steps/0/type" in problem.first.inner_text()

    editor.fill(text.replace("core.nope", "core.value"))
    editor.press("End")
    page.locator("#problems .notice").wait_for()
    assert "Valid: policy draft" in page.locator("#problems").inner_text()
    assert page.locator("#problems li.problem").count() == 0

    page.get_by_role("button", name="Create policy").click()
    page.wait_for_url(re.compile(r"/policies/draft\?saved=1$"))
    assert page.get_by_role("heading", name="Policy draft").is_visible()
    assert page.get_by_text("Saved version 1.").is_visible()
    assert page.get_by_text("awaiting approval").first.is_visible()
    assert page.get_by_role("button", name="Approve").count() == 0  # an author does not approve
    assert page.get_by_role("button", name="Dry run").is_visible()
    assert page.locator("svg.graph g.node[data-step=a]").count() == 1

    # a new version through the editor; an invalid one is shown again with its problems (422)
    page.get_by_role("link", name="Edit").click()
    page.wait_for_url("**/policies/draft/edit")
    editor = page.get_by_label("Policy document (JSON)")
    editor.fill(text.replace("core.nope", "core.value").replace('"params": {}', '"params": {"value": 2}'))
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/policies/draft")) as saved:
        page.get_by_role("button", name="Save a new version").click()
    assert saved.value.status == 303
    page.wait_for_url(re.compile(r"/policies/draft\?saved=2$"))
    page.goto("/policies/draft/edit")
    page.get_by_label("Policy document (JSON)").fill('{"schema_version": 1, "id": "draft", "steps": [}')
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/policies/draft")) as refused:
        page.get_by_role("button", name="Save a new version").click()
    assert refused.value.status == 422
    assert "invalid JSON" in page.locator("#problems").inner_text()
    assert live.as_role("viewer").get("/policies/draft").json()["latest_version"] == 2
    # without JavaScript, the Check button shows the editor again with the problems
    checked = page.request.post("/policies/validate", form={"csrf_token": csrf_of(page), "document": text})
    assert checked.status == 200 and "<textarea" in checked.text() and "line 7, column 7" in checked.text()


def test_an_approver_compares_two_versions_and_approves_with_the_keyboard(start_server, page_of):
    live = start_server(scheduler=False)
    admin = live.as_role("admin")
    assert admin.post("/policies", json=hello("greet", value="hi")).status_code == 201
    assert admin.put("/policies/greet", json=hello("greet", value="hello there")).status_code == 200
    page = page_of(live, live.token("bob", "approver"))
    page.goto("/policies/greet")
    assert page.get_by_text("v2, created").is_visible()

    page.get_by_role("button", name="Show the differences").click()  # v1 with v2, the defaults
    page.locator("#diff table.sbs").wait_for()
    removed = page.locator("#diff td.del").all_inner_texts()
    added = page.locator("#diff td.add").all_inner_texts()
    assert any('"value": "hi"' in line for line in removed) and not any("hello there" in line for line in removed)
    assert any('"value": "hello there"' in line for line in added)
    assert page.locator("#h-diff").inner_text() == "v1 → v2"

    # forged without the session's CSRF token: refused, nothing approved
    refused = page.request.post(
        "/policies/greet/approvals", form={"csrf_token": "wrong", "hash": page.locator("#approval-hash").inner_text()}
    )
    assert refused.status == 403

    page.goto("/policies/greet")
    page.locator("body").focus()
    for _ in range(40):  # keyboard only: Tab from the top reaches the Approve button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "approve":
            break
    assert page.evaluate("document.activeElement.textContent.trim()") == "Approve"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/policies/greet\?approved=1$"))
    assert page.locator("#approval-state").inner_text().startswith("approved by bob")
    assert admin.get("/policies/greet").json()["approved"] is True
    page.get_by_label("Note").fill("not yet")
    page.get_by_role("button", name="Revoke approval").click()
    page.wait_for_url(re.compile(r"/policies/greet\?revoked=1$"))
    assert page.locator("#approval-state").inner_text().startswith("awaiting approval")
    assert admin.get("/policies/greet").json()["approved"] is False


def test_separate_approver_shows_approve_disabled_to_the_versions_author(start_server, page_of):
    live = start_server(scheduler=False, config=EngineConfig({"governance": {"separate_approver": True}}, None, {}))
    token = live.token("root", "admin")
    assert live.client(token).post("/policies", json=hello("own")).status_code == 201
    page = page_of(live, token)
    page.goto("/policies/own")
    button = page.get_by_role("button", name="Approve")
    assert button.is_visible() and button.is_disabled()
    reason = page.locator("#approve-reason").inner_text()
    assert reason == "you created this version; [governance] separate_approver needs another person"
    forced = page.request.post(
        "/policies/own/approvals",
        form={"csrf_token": csrf_of(page), "hash": page.locator("#approval-hash").inner_text()},
    )
    assert forced.status == 403 and "separate_approver" in forced.text()  # the server's rule, not the page's


def test_a_viewer_sees_no_write_buttons_and_a_forged_approval_is_refused(start_server, page_of):
    live = start_server(scheduler=False)
    assert live.as_role("admin").post("/policies", json=hello("look")).status_code == 201
    page = page_of(live, live.token("val", "viewer"))
    page.goto("/policies")
    assert page.get_by_role("link", name="look").is_visible()
    assert page.get_by_role("link", name="New policy").count() == 0
    page.goto("/policies/look")
    for name in ("Approve", "Revoke approval", "Dry run"):
        assert page.get_by_role("button", name=name).count() == 0
    assert page.get_by_role("link", name="Edit").count() == 0
    csrf, digest = csrf_of(page), page.locator("#approval-hash").inner_text()
    forged = page.request.post("/policies/look/approvals", form={"csrf_token": csrf, "hash": digest})
    assert forged.status == 403 and "may not approve" in forged.text()
    assert page.request.post("/policies/look/dry-run", form={"csrf_token": csrf}).status == 403
    editor = page.request.post("/policies", form={"csrf_token": csrf, "document": json.dumps(hello("more"))})
    assert editor.status == 403
    assert live.as_role("viewer").get("/policies/look").json()["approved"] is False


def test_a_dry_run_shows_its_email_preview_in_place(start_server, page_of):
    live = start_server(scheduler=False)
    assert live.as_role("admin").post("/policies", json=MAILER).status_code == 201
    page = page_of(live, live.token("ann", "author"))
    page.goto("/policies/mailer")
    page.get_by_role("button", name="Dry run").click()
    mail = page.locator("#dry-run article.mail")
    mail.wait_for()
    text = mail.inner_text()
    assert "Numbers" in text and "team@example.com" in text and "Hello team" in text
    assert page.locator("#dry-run .badge").first.inner_text() == "SUCCESS"
    run_link = page.locator("#dry-run h3 a").get_attribute("href")
    assert run_link.startswith("/runs/")
    assert page.url.endswith("/policies/mailer")  # in place: the page did not change

    # without JavaScript the form posts and the browser goes to the run's page
    posted = page.request.post("/policies/mailer/dry-run", form={"csrf_token": csrf_of(page)}, max_redirects=0)
    assert posted.status == 303 and posted.headers["location"].startswith("/runs/")


def test_a_file_backed_policy_is_changed_in_its_file(start_server, page_of, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "daily.json").write_text(json.dumps(hello("daily")))
    live = start_server(folders=[folder], scheduler=False)
    viewer = live.as_role("viewer")
    deadline = time.monotonic() + 10
    while not viewer.get("/policies").json()["policies"] and time.monotonic() < deadline:
        time.sleep(0.1)
    page = page_of(live, live.token("ann", "author"))
    page.goto("/policies")
    assert "daily.json" in page.locator("table.policies").inner_text()
    page.goto("/policies/daily")
    assert page.get_by_role("link", name="Edit").count() == 0
    assert page.get_by_text("To change it, edit the file").is_visible()
    page.goto("/policies/daily/edit")
    assert page.get_by_text("This policy is file-backed: edit the file").is_visible()
    assert page.locator("textarea").count() == 0
    refused = page.request.post(
        "/policies/daily", form={"csrf_token": csrf_of(page), "document": json.dumps(hello("daily", value=2))}
    )
    assert refused.status == 409 and "edit that file" in refused.text()


def test_creating_an_existing_id_keeps_the_typed_document(start_server, page_of):
    import json as _json

    live = start_server(scheduler=False)
    author = live.token("ann", "author")
    live.client(author).post(
        "/policies",
        content=_json.dumps(
            {"schema_version": 1, "id": "taken", "steps": [{"id": "a", "type": "core.value", "params": {"value": 1}}]}
        ),
    )
    page = page_of(live, author)
    page.goto("/policies/new")
    typed = _json.dumps(
        {"schema_version": 1, "id": "taken", "steps": [{"id": "b", "type": "core.value", "params": {"value": 2}}]},
        indent=2,
    )
    page.get_by_label("Policy document (JSON)").fill(typed)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/policies")) as answer:
        page.get_by_role("button", name="Create policy").click()
    assert answer.value.status == 409
    assert "policy 'taken' exists" in page.content() and "/policies/taken/edit" in page.content()
    assert '"value": 2' in page.get_by_label("Policy document (JSON)").input_value()
