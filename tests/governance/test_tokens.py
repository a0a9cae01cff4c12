"""API tokens: printed once, stored as SHA-256 only, refused when unknown, expired or revoked."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from engine.errors import UsageError
from engine.governance import audit, tokens


def test_create_prints_the_token_once_and_stores_only_its_hash(cli, state_dir):
    made = cli("token", "create", "--name", "ci-bot", "--role", "author", "--workspace", "sales", "--json")
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    text = record["token"]
    assert text.startswith("eng_") and len(text) > 40
    assert (record["name"], record["role"], record["workspace"], record["state"]) == (
        "ci-bot",
        "author",
        "sales",
        "active",
    )
    raw = (state_dir / "engine.db").read_bytes()
    assert text.encode() not in raw
    with sqlite3.connect(state_dir / "engine.db") as con:
        (stored,) = con.execute("select token_sha256 from api_tokens").fetchone()
    assert stored == tokens.digest(text)
    listed = cli("token", "list", "--json")
    assert text not in listed.stdout
    assert [t["name"] for t in json.loads(listed.stdout)["tokens"]] == ["ci-bot"]
    plain = cli("token", "create", "--name", "viewer-1", "--role", "viewer")
    assert plain.returncode == 0 and plain.stdout.strip().startswith("eng_")
    assert "shown once" in plain.stderr and plain.stdout.strip() not in plain.stderr


def test_authenticate_accepts_an_active_token_and_says_why_it_refuses_others(gov_store):
    engine = gov_store.engine
    text, info = tokens.create(engine, name="ada", role="approver", workspace="default", actor="user:root")
    assert tokens.authenticate(engine, text).name == "ada"
    for presented, says in ((None, "no token"), ("", "no token"), ("eng_nope", "invalid token")):
        with pytest.raises(tokens.AuthError, match=says):
            tokens.authenticate(engine, presented)
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    old, _ = tokens.create(
        engine,
        name="old",
        role="viewer",
        workspace="default",
        actor="user:root",
        expires=dt.timedelta(days=1),
        now=past,
    )
    with pytest.raises(tokens.AuthError, match="'old' is expired"):
        tokens.authenticate(engine, old)
    tokens.revoke(engine, "ada", "user:root")
    with pytest.raises(tokens.AuthError, match="'ada' is revoked"):
        tokens.authenticate(engine, text)
    actions = [e.action for e in audit.entries(engine)]
    assert actions == ["token.created", "token.created", "token.revoked"]
    assert all(text not in json.dumps(e.details) for e in audit.entries(engine))


def test_names_roles_and_durations_are_checked(gov_store):
    engine = gov_store.engine
    with pytest.raises(UsageError, match="one of viewer, author, approver, admin"):
        tokens.create(engine, name="x", role="root", workspace="default", actor="user:root")
    tokens.create(engine, name="x", role="viewer", workspace="default", actor="user:root")
    with pytest.raises(UsageError, match="exists: revoke it first"):
        tokens.create(engine, name="x", role="viewer", workspace="default", actor="user:root")
    assert tokens.parse_duration("90d") == dt.timedelta(days=90)
    assert tokens.parse_duration("12h") == dt.timedelta(hours=12)
    for bad in ("90", "d", "0d", "1y", "-1d"):
        with pytest.raises(UsageError, match="such as 90d"):
            tokens.parse_duration(bad)


def test_revoke_through_the_cli(cli):
    assert cli("token", "create", "--name", "tmp", "--role", "admin", "--expires", "30m").returncode == 0
    out = cli("token", "revoke", "tmp")
    assert out.returncode == 0 and "revoked token 'tmp'" in out.stdout
    again = cli("token", "revoke", "tmp")
    assert again.returncode == 2 and "no active token named 'tmp'" in again.stderr
    assert json.loads(cli("token", "list", "--json").stdout)["tokens"][0]["state"] == "revoked"
