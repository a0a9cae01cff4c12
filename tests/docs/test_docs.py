"""The documentation stays true: its policies validate, its plugin example runs, it covers every field.

- every ```json block in README.md and docs/**/*.md that contains "schema_version" is a valid policy;
- docs/examples/greet_steps.py + docs/examples/greet.json run through the real CLI;
- every param and output field of the built-in step types is documented in docs/steps/*.md;
- every field of the policy models is documented in docs/policy.md;
- copies of example files inside the docs match the files, and relative links resolve.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from pydantic import BaseModel

import steps.core  # noqa: F401  (the built-in step types)
from engine import PolicyError
from engine.plugins import ENTRY_POINT_GROUP
from engine.policy import Defaults, ParamDecl, Policy, Retention, Retry, Schedule, StepSpec
from engine.step import Step, registry
from engine.validate import validate_document

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
PLUGIN_MODULE = "greet_steps"
PLUGIN_TYPES = ("demo.greet", "greet", "demo.write_text")

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """(line number, text) of every fenced block whose info string is exactly ``language``."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in _FENCE.finditer(text)
        if m.group(1).strip() == language
    ]


POLICY_BLOCKS = [
    pytest.param(block, id=f"{path.relative_to(ROOT)}:{line}")
    for path in MARKDOWN
    for line, block in code_blocks(path, "json")
    if "schema_version" in block
]


@pytest.fixture
def greet_plugin() -> Iterator[None]:
    """Register the docs/examples plugin for one test, then restore the registry as it was."""
    types, by_name = dict(registry._types), dict(registry._by_name)
    sys.path.insert(0, str(EXAMPLES))
    sys.modules.pop(PLUGIN_MODULE, None)
    try:
        importlib.import_module(PLUGIN_MODULE)
        yield
    finally:
        sys.modules.pop(PLUGIN_MODULE, None)
        sys.path.remove(str(EXAMPLES))
        registry._types.clear()
        registry._types.update(types)
        registry._by_name.clear()
        registry._by_name.update(by_name)


def test_the_docs_contain_policies():
    assert len(POLICY_BLOCKS) >= 20


@pytest.mark.parametrize("block", POLICY_BLOCKS)
def test_policy_blocks_are_valid(block: str, request: pytest.FixtureRequest) -> None:
    doc = json.loads(block)
    types = {s.get("type") for s in [*doc.get("steps", []), *doc.get("on_failure", [])]}
    if types & set(PLUGIN_TYPES):
        request.getfixturevalue("greet_plugin")
    try:
        validate_document(doc)
    except PolicyError as exc:  # pragma: no cover - the message is the point
        pytest.fail(str(exc))


# -- the plugin example through the real CLI -----------------------------------------------------


def engine_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)]),
            "ENGINE_STATE_DIR": str(tmp_path / "state"),
            "COLUMNS": "200",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "engine", "--plugin", PLUGIN_MODULE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_plugin_example_validates(tmp_path: Path) -> None:
    result = engine_cli(tmp_path, "validate", str(EXAMPLES / "greet.json"))
    assert result.returncode == 0, result.stderr
    assert "valid (4 steps, 0 on_failure)" in result.stdout


def test_plugin_example_runs(tmp_path: Path) -> None:
    out = tmp_path / "greeting.txt"
    result = engine_cli(tmp_path, "run", str(EXAMPLES / "greet.json"), "--json", "--param", "name=Grace")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "SUCCESS"
    assert [(s["id"], s["status"]) for s in run["steps"]] == [
        ("hello", "SUCCESS"),
        ("loud", "SUCCESS"),
        ("save", "SUCCESS"),
        ("report", "SUCCESS"),
    ]
    assert out.read_text(encoding="utf-8") == "Hello, Grace!\nHI, GRACE!\n"
    assert '"event": "greet.built"' in (tmp_path / "state" / "logs" / "engine.log").read_text()
    artifacts = [p for p in (tmp_path / "state" / "artifacts").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in artifacts] == [out.read_bytes()]


def test_plugin_example_dry_run_previews_the_side_effect(tmp_path: Path) -> None:
    result = engine_cli(
        tmp_path, "run", str(EXAMPLES / "greet.json"), "--dry-run", "--json", "--param", "out=other.txt"
    )
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "SUCCESS" and run["dry_run"] is True
    assert not (tmp_path / "other.txt").exists()
    preview = json.loads((Path(run["preview_dir"]) / "save.json").read_text())
    assert preview["written"] is False and preview["would_write"] == "Hello, Ada!\nHI, ADA!\n"


# -- coverage of fields --------------------------------------------------------------------------


def builtin_step_types() -> list[type[Step]]:
    """Step types of the installed ``engine.steps`` entry points (not the test kits' types)."""
    modules = {ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for module in modules:
        importlib.import_module(module)
    return [
        cls
        for cls in registry.types()
        if any(cls.__module__ == m or cls.__module__.startswith(m + ".") for m in modules)
    ]


def field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def test_builtin_steps_are_the_core_steps():
    assert {cls.type for cls in builtin_step_types()} >= {
        "core.value",
        "core.assert",
        "core.shell",
        "fetch.file",
        "fetch.sql",
    }


@pytest.mark.parametrize("cls", builtin_step_types(), ids=lambda c: c.type)
def test_every_builtin_step_is_documented(cls: type[Step]) -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((DOCS / "steps").glob("*.md")))
    missing = [f"`{name}`" for name in (cls.type, *cls.aliases) if f"`{name}`" not in text]
    missing += [f"param `{n}`" for n in field_names(cls.Params) if f"`{n}`" not in text]
    missing += [f"output field `{n}`" for n in field_names(cls.Output) if f"`{n}`" not in text]
    assert not missing, f"docs/steps/*.md does not mention {', '.join(missing)} of {cls.type}"


@pytest.mark.parametrize(
    "model", [Policy, StepSpec, Defaults, Retry, ParamDecl, Schedule, Retention], ids=lambda m: m.__name__
)
def test_every_policy_field_is_documented(model: type[BaseModel]) -> None:
    text = (DOCS / "policy.md").read_text(encoding="utf-8")
    missing = [name for name in field_names(model) if f"`{name}`" not in text]
    assert not missing, f"docs/policy.md does not document {model.__name__} fields {missing}"


# -- copies and links ----------------------------------------------------------------------------


def test_readme_shows_the_real_hello_policy():
    (block,) = [b for _, b in code_blocks(ROOT / "README.md", "json") if '"id": "hello"' in b]
    assert json.loads(block) == json.loads((ROOT / "policies" / "examples" / "hello.json").read_text())


def test_writing_steps_shows_the_real_example_files():
    page = DOCS / "writing-steps.md"
    policies = [b for _, b in code_blocks(page, "json") if '"id": "greet"' in b]
    assert [json.loads(b) for b in policies] == [json.loads((EXAMPLES / "greet.json").read_text())]
    source = (EXAMPLES / "greet_steps.py").read_text(encoding="utf-8")
    assert source in [b for _, b in code_blocks(page, "python")]


_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    broken = [
        target for target, _ in _LINK.findall(text) if "://" not in target and not (path.parent / target).exists()
    ]
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"
