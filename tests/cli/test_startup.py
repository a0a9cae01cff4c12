"""Start-up: a command imports only what it uses (issue 13).

`engine --help` needs click; `engine validate` of a core-only policy needs the policy model
and the core steps, never pandas, SQLAlchemy or a stage's libraries; a policy imports the
plugin modules of the step types it names, and nothing else. Each check runs the real command
in a fresh interpreter and reads its ``sys.modules`` at exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from engine import plugins, sections
from engine.step import registry
from tests.conftest import ROOT

HEAVY = ("pandas", "pyarrow", "pandera", "plotly", "jinja2", "weasyprint", "httpx", "networkx", "sqlalchemy", "kaleido")

PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(m for m in sys.modules if "." not in m)), file=sys.stderr))
from engine.cli import main
sys.argv = ["engine", *sys.argv[1:]]
main()
"""


def modules_after(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``engine ARGS`` in a fresh interpreter; return the process and the top-level modules it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return proc, set(json.loads(line.removeprefix("MODULES ")))


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / f"{doc['id']}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


CORE_ONLY = {
    "schema_version": 1,
    "id": "core-only",
    "steps": [
        {"id": "a", "type": "core.value", "params": {"value": 1}},
        {"id": "b", "type": "value", "params": {"value": {"ref": "ctx.a"}}},
        {"id": "c", "type": "core.assert", "params": {"condition": {"ref": "ctx.b", "op": "eq", "value": 1}}},
    ],
}


def test_validate_of_a_core_only_policy_imports_no_stage_library_nor_sqlalchemy(tmp_path):
    proc, modules = modules_after("validate", str(write(tmp_path, CORE_ONLY)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "valid (3 steps" in proc.stdout
    assert {"pandas", "sqlalchemy"}.isdisjoint(modules)
    assert set(HEAVY).isdisjoint(modules), set(HEAVY) & modules
    # nor what only running or pretty-printing needs: the "valid" line is plain text
    assert {"asyncio", "rich", "structlog"}.isdisjoint(modules), {"asyncio", "rich", "structlog"} & modules


def test_help_imports_neither_pydantic_nor_rich(tmp_path):
    proc, modules = modules_after("--help", cwd=tmp_path)
    assert proc.returncode == 0 and "Commands:" in proc.stdout
    assert {"pydantic", "rich", "structlog", "asyncio", *HEAVY}.isdisjoint(modules)


def test_run_of_a_core_only_policy_imports_sqlalchemy_but_no_stage_library(tmp_path):
    proc, modules = modules_after(
        "run", str(write(tmp_path, CORE_ONLY)), "--state-dir", str(tmp_path / "state"), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "sqlalchemy" in modules  # the run state
    assert {"pygments", "attr", "rich"}.isdisjoint(modules)  # structlog without rich; a plain summary off a terminal
    assert {"pandas", "pyarrow", "pandera", "plotly", "weasyprint", "httpx", "networkx", "kaleido"}.isdisjoint(modules)


def test_a_policy_imports_the_plugin_modules_of_the_types_it_names_only(tmp_path):
    doc = {
        "schema_version": 1,
        "id": "one-fetch",
        "steps": [{"id": "f", "type": "fetch.file", "params": {"path": "data.csv"}}],
    }
    (tmp_path / "data.csv").write_text("a\n1\n", encoding="utf-8")
    proc, _ = modules_after("validate", str(write(tmp_path, doc)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    probe = PROBE.replace('if "." not in m', 'if m.startswith("steps.")')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")} | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe, "validate", str(tmp_path / "one-fetch.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    loaded = set(json.loads(next(x for x in out.stderr.splitlines() if x.startswith("MODULES "))[8:]))
    assert "steps.fetch" in loaded
    assert not any(m.startswith(("steps.render", "steps.send", "steps.report", "steps.transform")) for m in loaded)


def test_an_unknown_type_still_gets_a_suggestion_from_every_installed_type(tmp_path):
    doc = {"schema_version": 1, "id": "typo", "steps": [{"id": "r", "type": "render.pfd", "params": {}}]}
    proc, _ = modules_after("validate", str(write(tmp_path, doc)), cwd=tmp_path)
    assert proc.returncode == 2
    assert "render.pdf" in proc.stderr


def test_a_section_key_imports_the_plugin_that_declares_it(tmp_path):
    doc = {**CORE_ONLY, "id": "hosts", "allowed_hosts": 7}
    proc, _ = modules_after("validate", str(write(tmp_path, doc)), cwd=tmp_path)
    assert proc.returncode == 2
    assert "/allowed_hosts" in proc.stderr


# -- the entry points are the manifest: they must say what the modules register --------------


def test_every_step_type_and_alias_has_an_entry_point_naming_its_module():
    plugins.load_all()
    claimed = {ep.name: ep.value for ep in entry_points(group=plugins.ENTRY_POINT_GROUP)}
    builtin = [cls for cls in registry.types() if cls.__module__.startswith("steps.")]
    assert builtin, "the built-in steps are registered"
    for cls in builtin:
        for name in (cls.type, *cls.aliases):
            assert name in claimed, f'pyproject.toml: add "{name}" = ... to [project.entry-points."engine.steps"]'
            assert cls.__module__ == claimed[name] or cls.__module__.startswith(claimed[name] + "."), name
    stale = {name for name, module in claimed.items() if module.startswith("steps") and registry.get(name) is None}
    assert not stale, f"entry points for step types that do not exist: {stale}"


def test_every_policy_section_has_an_entry_point_naming_its_module():
    plugins.load_all()
    claimed = {ep.name: ep.value for ep in entry_points(group=plugins.SECTION_GROUP)}
    builtin = {name: s for name, s in sections.sections().items() if s.owner.startswith("steps.")}
    assert builtin
    for name, section in builtin.items():
        assert name in claimed, f'pyproject.toml: add {name} = ... to [project.entry-points."engine.policy_sections"]'
        assert section.owner.split(":")[0].startswith(claimed[name]), name
    assert set(claimed) == set(builtin)


@pytest.mark.parametrize("command", [["--help"], ["validate", "--help"], ["run", "--help"]])
def test_help_texts_still_work(tmp_path, command):
    proc, _ = modules_after(*command, cwd=tmp_path)
    assert proc.returncode == 0
    assert "Usage: engine" in proc.stdout
