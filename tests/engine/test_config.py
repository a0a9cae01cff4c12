"""Engine configuration: engine.toml sections overlaid by ENGINE_<SECTION>_<KEY> variables."""

from __future__ import annotations

import pytest

from engine import ConfigError, EngineConfig


def test_no_file_means_empty_sections(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = EngineConfig.load(environ={})
    assert config.path is None
    assert config.section("fetch") == {}


def test_engine_toml_in_the_current_directory_is_read(tmp_path, monkeypatch):
    (tmp_path / "engine.toml").write_text('[fetch]\nallowed_hosts = ["api.example.com"]\n')
    monkeypatch.chdir(tmp_path)
    config = EngineConfig.load(environ={})
    assert config.section("fetch") == {"allowed_hosts": ["api.example.com"]}


def test_environment_overrides_the_file_and_is_read_as_json_when_it_parses(tmp_path):
    path = tmp_path / "conf.toml"
    path.write_text('[smtp]\nhost = "file.example.com"\nport = 25\n')
    env = {"ENGINE_CONFIG": str(path), "ENGINE_SMTP_HOST": "env.example.com", "ENGINE_SMTP_PORT": "2525"}
    config = EngineConfig.load(environ=env)
    assert config.section("smtp") == {"host": "env.example.com", "port": 2525}
    assert config.section("fetch") == {}


def test_a_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.toml: configuration file not found \(\$ENGINE_CONFIG names it\)"):
        EngineConfig.load(environ={"ENGINE_CONFIG": str(tmp_path / "nope.toml")})


def test_invalid_toml_names_the_file_and_line(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text("[fetch]\nallowed_hosts = [1,\n\nx = 2\n")
    with pytest.raises(ConfigError, match=r"engine.toml: invalid TOML: .*line"):
        EngineConfig.load(path, environ={})


def test_a_top_level_value_must_be_a_section(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text('allowed_hosts = ["x"]\n')
    with pytest.raises(ConfigError, match=r"top-level key 'allowed_hosts' must be a \[section\]"):
        EngineConfig.load(path, environ={})


# -- [engine] allowed_step_types -----------------------------------------------------------------


def test_step_types_can_be_allow_listed():
    from engine import PolicyError
    from engine.validate import validate_document
    from tests.conftest import policy

    config = EngineConfig({"engine": {"allowed_step_types": ["core.value", "fetch.*"]}}, environ={})
    validate_document(policy({"id": "a", "type": "core.value", "params": {"value": 1}}), config=config)
    doc = policy({"id": "a", "type": "core.value"}, {"id": "b", "type": "shell", "params": {"argv": ["ls"]}})
    with pytest.raises(PolicyError) as info:
        validate_document(doc, config=config)
    assert [str(p) for p in info.value.problems] == [
        "/steps/1/type: step type 'core.shell' is not allowed here (allowed: core.value, fetch.*) "
        "(the engine configuration's [engine] allowed_step_types lists the types policies may use)"
    ]


def test_without_an_allow_list_every_installed_type_is_allowed():
    from engine.validate import validate_document
    from tests.conftest import policy

    env = EngineConfig({}, environ={"ENGINE_ENGINE_ALLOWED_STEP_TYPES": "core.*"})
    validate_document(policy({"id": "b", "type": "core.shell", "params": {"argv": ["ls"]}}), config=env)
    validate_document(
        policy({"id": "b", "type": "core.shell", "params": {"argv": ["ls"]}}), config=EngineConfig({}, environ={})
    )
