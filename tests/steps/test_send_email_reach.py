"""What a policy's send.email may reach: the SMTP server is the machine's choice unless
``[smtp] allow_policy_host`` says otherwise, and no header-ish param may carry a line break."""

from __future__ import annotations

import pytest

import tests.sendkit  # noqa: F401  (test.report: a real PDF and an HTML page as artifacts)
from engine import EngineConfig, PolicyError, StepContext, StepError
from steps.send.email import SendEmail
from tests.conftest import policy
from tests.smtpserver import *  # noqa: F403  (the SMTP server fixtures)

HOST_MESSAGE = "a policy may not choose the SMTP server on this machine"


def host_hint(name):
    return (
        f"set it in engine.toml [smtp] {name} (or ENGINE_SMTP_{name.upper()}) instead, "
        "or set [smtp] allow_policy_host = true to let policies choose"
    )


def mail(**params):
    send = {"from": "reports@example.com", "to": ["ann@example.com"], "subject": "Daily", "text": "Hi", **params}
    return policy({"id": "report", "type": "test.report"}, {"id": "mail", "type": "send.email", "params": send})


def problems(exc):
    return [(p.pointer, p.message, p.hint) for p in exc.value.problems]


def test_a_policy_may_not_choose_the_smtp_host_or_port_by_default(run, smtp_server, monkeypatch):
    monkeypatch.delenv("ENGINE_SMTP_ALLOW_POLICY_HOST")  # the default: false
    with pytest.raises(PolicyError) as exc:
        run(mail(host="10.0.0.7", port=6379, security="none"))
    assert problems(exc) == [
        ("/steps/1/params/host", HOST_MESSAGE, host_hint("host")),
        ("/steps/1/params/port", HOST_MESSAGE, host_hint("port")),
    ]
    with pytest.raises(PolicyError) as exc:  # an expression is refused too: its value is any host
        run(mail(host={"template": "{{ run.policy_id }}.internal"}, security="none"))
    assert problems(exc) == [("/steps/1/params/host", HOST_MESSAGE, host_hint("host"))]
    assert smtp_server.handler.connections == 0

    # the machine's own setting reaches the server
    for name, value in smtp_server.env().items():
        monkeypatch.setenv(name, value)
    assert run(mail()).status == "SUCCESS"
    assert len(smtp_server.handler.messages) == 1


def test_allow_policy_host_lets_a_policy_choose(run, smtp_server, monkeypatch):
    monkeypatch.delenv("ENGINE_SMTP_ALLOW_POLICY_HOST")
    config = EngineConfig({"smtp": {"allow_policy_host": True}})
    assert run(mail(**smtp_server.params()), config=config).status == "SUCCESS"
    assert len(smtp_server.handler.messages) == 1
    with pytest.raises(PolicyError) as exc:
        run(mail(**smtp_server.params()), config=EngineConfig({"smtp": {"allow_policy_host": "yes"}}))
    assert problems(exc) == [
        (
            "/steps/1/params",
            "engine config [smtp] (or ENGINE_SMTP_* variables): allow_policy_host: must be true or false, not 'yes'",
            "set allow_policy_host = true or false",
        )
    ]


def test_the_host_is_refused_when_the_step_runs_too(tmp_path):
    """The same rule at run time: the configuration may have changed since validation."""
    params = SendEmail.Params.model_validate({"subject": "s", "host": "10.0.0.7", "port": 25})
    ctx = StepContext(
        run_id="r",
        step_id="mail",
        attempt=1,
        run={},
        params={},
        dry_run=False,
        log=None,
        artifacts=None,  # type: ignore[arg-type]
        pointer="/steps/4",
        config=EngineConfig({}, environ={}),
    )
    with pytest.raises(StepError) as exc:
        SendEmail()._settings(params, ctx)
    assert str(exc.value) == f"/steps/4/params/host: {HOST_MESSAGE} ({host_hint('host')})"
    assert exc.value.retryable is False
    ctx.config = EngineConfig({"smtp": {"allow_policy_host": True}}, environ={})
    assert SendEmail()._settings(params, ctx).address == "10.0.0.7:25"


LINE_BREAK = "must not contain a line break (CR or LF)"


def test_line_breaks_in_header_params_are_validation_errors_with_the_place(run, smtp_server):
    doc = mail(
        **smtp_server.params(),
        subject="Daily\r\nBcc: eve@evil.test",
        to=["ann@example.com\nBcc: eve@evil.test"],
        cc="bob@example.com\r",
        bcc=["\nx@example.com"],
        reply_to=["r@example.com\n"],
        attachments=[{"artifact": {"ref": "ctx.report.pdf"}, "filename": "a\nb.pdf"}],
        **{"from": "Reports\n <reports@example.com>"},
    )
    with pytest.raises(PolicyError) as exc:
        run(doc)
    hint = "write it on one line"
    assert problems(exc) == [
        ("/steps/1/params/attachments/0/filename", LINE_BREAK, hint),
        ("/steps/1/params/bcc/0", LINE_BREAK, hint),
        ("/steps/1/params/cc/0", LINE_BREAK, hint),
        ("/steps/1/params/from", LINE_BREAK, hint),
        ("/steps/1/params/reply_to/0", LINE_BREAK, hint),
        ("/steps/1/params/subject", LINE_BREAK, hint),
        ("/steps/1/params/to/0", LINE_BREAK, hint),
    ]
    assert smtp_server.handler.connections == 0


@pytest.mark.parametrize(
    "param, value, expected",
    [
        ("subject", {"template": "Daily{{ nl }}Bcc: eve@evil.test"}, f"/steps/2/params/subject: {LINE_BREAK}"),
        ("to", {"template": "ann@example.com{{ nl }}"}, f"/steps/2/params/to/0: {LINE_BREAK} (write it on one line)"),
        ("from", {"template": "r@example.com{{ nl }}"}, f"/steps/2/params/from: {LINE_BREAK}"),
        ("reply_to", [{"template": "{{ nl }}r@example.com"}], f"/steps/2/params/reply_to/0: {LINE_BREAK}"),
        (
            "attachments",
            [{"artifact": {"ref": "ctx.report.pdf"}, "filename": {"template": "a{{ nl }}.pdf"}}],
            f"/steps/2/params/attachments/0/filename: {LINE_BREAK}",
        ),
    ],
    ids=["subject", "to", "from", "reply_to", "attachment-name"],
)
def test_line_breaks_from_expressions_fail_the_step_with_the_place(run, smtp_server, param, value, expected):
    doc = mail(**smtp_server.params(), **{param: value})
    doc["steps"].insert(0, {"id": "nl", "type": "core.value", "params": {"value": "\r\n"}})
    result = run(doc)
    (step,) = [s for s in result.steps if s.id == "mail"]
    assert (result.status, step.error) == ("FAILED", expected)
    assert smtp_server.handler.connections == 0


def test_values_a_template_inserts_into_the_html_body_are_escaped_only_with_the_e_filter(run, smtp_server):
    """As documented: the engine renders templates without HTML escaping; `| e` escapes."""
    doc = mail(
        **smtp_server.params(),
        html={"template": "<p>{{ who }}</p><p>{{ who | e }}</p>"},
        text=None,
    )
    del doc["steps"][1]["params"]["text"]
    doc["steps"].insert(0, {"id": "who", "type": "core.value", "params": {"value": "<b>Ann & Bob</b>"}})
    result = run(doc)
    assert result.status == "SUCCESS"
    (got,) = smtp_server.handler.messages
    html = got.message.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert html == "<p><b>Ann & Bob</b></p><p>&lt;b&gt;Ann &amp; Bob&lt;/b&gt;</p>\n"
