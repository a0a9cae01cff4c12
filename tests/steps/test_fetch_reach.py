"""What fetch.file and fetch.sql may read: never the engine's state, and only [fetch] allowed_paths
when it is set. Real files, a real state directory, a real engine.toml."""

from __future__ import annotations

import json
import sqlite3

import pytest

from engine import EngineConfig, PolicyError
from engine.validate import validate_document
from tests.conftest import policy

HINT = "add its folder to [fetch] allowed_paths in engine.toml, or to ENGINE_FETCH_ALLOWED_PATHS"


def read_file(path, sid="f"):
    return {"id": sid, "type": "fetch.file", "params": {"path": path, "as": "json"}}


def read_sql(database, sid="q"):
    return {"id": sid, "type": "fetch.sql", "params": {"database": database, "query": "select 1 as one"}}


@pytest.fixture
def data(tmp_path):
    """tmp_path/data/x.json and tmp_path/other/y.json and a SQLite file in each."""
    for folder, name in (("data", "x"), ("other", "y")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.json").write_text(json.dumps({"from": folder}))
        sqlite3.connect(tmp_path / folder / f"{name}.db").close()
    return tmp_path


def state_refusal(pointer, written, target, state):
    """The run-time error; validation gives the same text with the hint in brackets."""
    return (
        f"{pointer}: {written!r} ({target}) is inside the engine's own state ({state}), which fetch steps never "
        "read: copy the data elsewhere"
    )


# -- the state directory, always --------------------------------------------------------------


def test_the_engine_database_is_never_read(run, store, state_dir):
    database = str(state_dir / "engine.db")
    result = run(policy(read_sql(database), read_file(str(state_dir / "logs" / "engine.log"))))
    errors = {s.id: s.error for s in result.steps}
    assert errors == {
        "q": state_refusal("/steps/0/params/database", database, state_dir / "engine.db", state_dir),
        "f": state_refusal(
            "/steps/1/params/path", str(state_dir / "logs" / "engine.log"), state_dir / "logs" / "engine.log", state_dir
        ),
    }
    assert [s.attempts for s in result.steps] == [1, 1]  # not retried


@pytest.mark.parametrize("how", ["dotdot", "symlink", "template"])
def test_no_detour_reaches_the_state_directory(run, store, state_dir, tmp_path, how):
    store.state_dir.joinpath("artifacts").mkdir(exist_ok=True)
    secret = state_dir / "artifacts" / "stolen.json"
    secret.write_text('{"x": 1}')
    if how == "dotdot":
        written = "data/../state/artifacts/stolen.json"
        (tmp_path / "data").mkdir()
    elif how == "symlink":
        (tmp_path / "innocent.json").symlink_to(secret)
        written = "innocent.json"
    else:
        written = "state/artifacts/stolen.json"
    path = {"template": "{{ params.p }}"} if how == "template" else written
    doc = policy(read_file(path), params={"p": {"type": "string", "default": written}})
    result = run(doc)
    assert result.steps[0].error == state_refusal("/steps/0/params/path", written, secret, state_dir)


def test_a_literal_path_in_the_default_state_directory_fails_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_STATE_DIR", str(tmp_path / "st"))
    with pytest.raises(PolicyError) as info:
        validate_document(policy(read_sql(str(tmp_path / "st" / "engine.db"))), config=EngineConfig({}, environ={}))
    database = tmp_path / "st" / "engine.db"
    assert [str(p) for p in info.value.problems] == [
        f"/steps/0/params/database: {str(database)!r} ({database}) is inside the engine's own state "
        f"({tmp_path / 'st'}), which fetch steps never read (copy the data elsewhere)"
    ]


# -- [fetch] allowed_paths --------------------------------------------------------------------


def test_without_allowed_paths_any_other_path_is_read(run, store, data):
    result = run(policy(read_file(str(data / "other" / "y.json")), read_sql("../" + data.name + "/data/x.db")))
    assert result.status == "SUCCESS", [s.error for s in result.steps]


def test_allowed_paths_in_engine_toml_are_relative_to_its_folder(run, store, data, monkeypatch):
    (data / "conf").mkdir()
    (data / "conf" / "engine.toml").write_text('[fetch]\nallowed_paths = ["../data"]\n')
    monkeypatch.setenv("ENGINE_CONFIG", str(data / "conf" / "engine.toml"))
    assert run(policy(read_file("data/x.json"), read_sql(str(data / "data" / "x.db")))).status == "SUCCESS"

    with pytest.raises(PolicyError) as info:
        run(policy(read_file("other/y.json"), read_sql("data/../other/y.db")))
    outside = f"is outside [fetch] allowed_paths (allowed: {data / 'data'}) ({HINT})"
    assert [p.pointer for p in info.value.problems] == ["/steps/0/params/path", "/steps/1/params/database"]
    assert [str(p).split(": ", 1)[1] for p in info.value.problems] == [
        f"'other/y.json' ({data / 'other' / 'y.json'}) {outside}",
        f"'data/../other/y.db' ({data / 'other' / 'y.db'}) {outside}",
    ]


def test_allowed_paths_are_checked_again_when_the_step_runs(run, store, data, monkeypatch):
    monkeypatch.chdir(data)
    monkeypatch.setenv("ENGINE_FETCH_ALLOWED_PATHS", "data,/nowhere")  # relative to the current directory
    doc = policy(read_file({"template": "{{ params.p }}"}), params={"p": {"type": "string", "default": "other/y.json"}})
    result = run(doc)
    assert result.steps[0].error == (
        f"/steps/0/params/path: 'other/y.json' ({data / 'other' / 'y.json'}) is outside [fetch] allowed_paths "
        f"(allowed: {data / 'data'}, /nowhere): {HINT}"
    )
    ok = policy(read_file({"template": "{{ params.p }}"}), params={"p": {"type": "string", "default": "data/x.json"}})
    assert run(ok).status == "SUCCESS"


def test_a_symlink_out_of_an_allowed_folder_is_refused(run, store, data, monkeypatch):
    (data / "data" / "escape.json").symlink_to(data / "other" / "y.json")
    monkeypatch.setenv("ENGINE_FETCH_ALLOWED_PATHS", json.dumps([str(data / "data")]))
    with pytest.raises(PolicyError) as info:
        run(policy(read_file("data/escape.json")))
    assert f"'data/escape.json' ({data / 'other' / 'y.json'}) is outside" in str(info.value.problems[0])


def test_a_bad_allowed_paths_is_a_config_error(run, store, data, monkeypatch):
    from engine import ConfigError

    monkeypatch.setenv("ENGINE_FETCH_ALLOWED_PATHS", "3")
    with pytest.raises(ConfigError) as info:
        run(policy(read_file("data/x.json")))
    assert str(info.value) == (
        "engine config [fetch] (or ENGINE_FETCH_* variables): allowed_paths: must be a list of folders, "
        "e.g. ['data', '/srv/exports']"
    )
