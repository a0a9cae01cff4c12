"""engine.plugins: step packages from the ``engine.steps`` entry points, ``--plugin`` and ``ENGINE_PLUGINS`` (§5)."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from engine import RegistryError, plugins
from engine.step import registry
from tests.conftest import ROOT

PLUGIN_SOURCE = '''
from pydantic import BaseModel
from engine import Step

LOADS = globals().get("LOADS", 0) + 1


class Plugged(Step, type="{type_name}"):
    """A step from a plugin module."""

    class Params(BaseModel):
        word: str = "x"

    async def run(self, params, ctx):
        return params.word
'''


@pytest.fixture
def make_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[str, str]]]:
    """Write a plugin module on sys.path; return (module name, step type). Everything is undone afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    types, by_name = dict(registry._types), dict(registry._by_name)
    created: list[str] = []

    def make(source: str = PLUGIN_SOURCE) -> tuple[str, str]:
        suffix = uuid.uuid4().hex[:8]
        module, type_name = f"engine_test_plugin_{suffix}", f"plug.t{suffix}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source.replace("{type_name}", type_name)))
        created.append(module)
        return module, type_name

    yield make
    for module in created:
        sys.modules.pop(module, None)
        plugins._loaded.discard(module)
    registry._types.clear()
    registry._types.update(types)
    registry._by_name.clear()
    registry._by_name.update(by_name)


def test_core_steps_are_an_entry_point_of_the_engine_steps_group():
    assert plugins.ENTRY_POINT_GROUP == "engine.steps"
    assert "steps.core" in {ep.value for ep in entry_points(group="engine.steps")}
    plugins.load_plugins()
    assert registry.get("core.value") is not None


def test_engine_plugins_variable_imports_comma_separated_modules(make_plugin, monkeypatch):
    (first, first_type), (second, second_type) = make_plugin(), make_plugin()
    monkeypatch.setenv("ENGINE_PLUGINS", f" {first} ,,{second},")
    plugins.load_plugins()
    assert registry.get(first_type).__module__ == first
    assert registry.get(second_type).__module__ == second


def test_extra_modules_are_imported(make_plugin):
    module, type_name = make_plugin()
    plugins.load_plugins([module])
    assert registry.get(type_name).description() == "A step from a plugin module."


def test_a_module_is_imported_once(make_plugin, monkeypatch):
    module, _ = make_plugin()
    monkeypatch.setenv("ENGINE_PLUGINS", module)
    plugins.load_plugins([module])
    plugins.load_plugins([module])
    assert sys.modules[module].LOADS == 1


@pytest.mark.parametrize(
    ("how", "source"),
    [pytest.param("env", "ENGINE_PLUGINS", id="ENGINE_PLUGINS"), pytest.param("extra", "--plugin", id="--plugin")],
)
def test_a_module_that_cannot_be_imported_is_a_registry_error(make_plugin, monkeypatch, how, source):
    if how == "env":
        monkeypatch.setenv("ENGINE_PLUGINS", "no_such_plugin_module_xyz")
    with pytest.raises(RegistryError) as info:
        plugins.load_plugins(["no_such_plugin_module_xyz"] if how == "extra" else [])
    assert str(info.value) == (
        "cannot import step plugin module 'no_such_plugin_module_xyz' "
        f"(from {source}): No module named 'no_such_plugin_module_xyz'"
    )
    assert info.value.exit_code == 2


def test_an_error_inside_a_plugin_module_names_the_module(make_plugin):
    module, _ = make_plugin("raise ValueError('misconfigured')\n")
    with pytest.raises(RegistryError) as info:
        plugins.load_plugins([module])
    assert str(info.value) == f"cannot import step plugin module {module!r} (from --plugin): misconfigured"


def test_a_plugin_that_clashes_with_a_registered_type_raises_the_clash(make_plugin):
    module, _ = make_plugin(PLUGIN_SOURCE.replace('type="{type_name}"', 'type="core.value"'))
    with pytest.raises(RegistryError, match=r"^step type 'core.value' is registered twice: by Value \(steps.core:"):
        plugins.load_plugins([module])
    assert registry.get("core.value").__module__ == "steps.core"


def test_cli_loads_plugins_from_the_option_and_the_variable(cli, make_plugin, tmp_path):
    (by_option, option_type), (by_env, env_type) = make_plugin(), make_plugin()
    result = cli(
        "--plugin",
        by_option,
        "steps",
        "--json",
        env={"ENGINE_PLUGINS": f"tests.stepkit,{by_env}", "PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )
    assert result.returncode == 0, result.stderr
    manifest = {s["type"]: s for s in json.loads(result.stdout)["steps"]}
    assert {option_type, env_type, "core.value", "test.sleep"} <= set(manifest)
    assert manifest[option_type]["description"] == "A step from a plugin module."
    assert manifest[option_type]["params_schema"]["properties"]["word"]["default"] == "x"
