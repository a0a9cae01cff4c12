"""engine.step: step types register themselves by subclassing Step (issue #3 §5)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from engine import ConditionValue, RegistryError, Step, StepContext
from engine.step import registry
from engine.validate import validate_document
from tests.conftest import policy


@pytest.fixture(autouse=True)
def restore_registry() -> Iterator[None]:
    """Step types defined by a test are forgotten after it."""
    types, by_name = dict(registry._types), dict(registry._by_name)
    yield
    registry._types.clear()
    registry._types.update(types)
    registry._by_name.clear()
    registry._by_name.update(by_name)


def test_subclass_registers_type_and_aliases():
    class Greet(Step, type="demo.greet", aliases=["greet", "hello"]):
        """Say hello.

        More words after the first paragraph."""

        class Params(BaseModel):
            name: str

        class Output(BaseModel):
            greeting: str

        async def run(self, params: Params, ctx: StepContext) -> Output:
            return self.Output(greeting=f"Hello, {params.name}!")

    assert registry.get("demo.greet") is registry.get("greet") is registry.get("hello") is Greet
    assert {"demo.greet", "greet", "hello"} <= set(registry.names())
    assert Greet in registry.types()
    assert (Greet.type, Greet.aliases, Greet.side_effects) == ("demo.greet", ("greet", "hello"), False)
    assert Greet.description() == "Say hello.\n\nMore words after the first paragraph."
    assert Greet.run_is_async is True
    assert registry.get("nope") is None


def test_a_registered_type_is_usable_in_a_policy_at_once(run, store):
    class Shout(Step, type="demo.shout"):
        """Upper-case a word."""

        class Params(BaseModel):
            word: str

        def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
            return {"word": params.word.upper()}

    doc = policy({"id": "s", "type": "demo.shout", "params": {"word": "hi"}})
    assert validate_document(doc).step_types["s"] is Shout
    result = run(doc)
    assert result.status == "SUCCESS"
    assert store.get_steps(result.run_id)[0]["output_json"] == '{"word":"HI"}'


def test_types_are_listed_sorted_by_name():
    names = [cls.type for cls in registry.types()]
    assert names == sorted(names)
    assert {"core.value", "core.assert", "core.shell"} <= set(names)


def test_sync_and_async_run_and_preview_are_detected():
    class SyncStep(Step, type="demo.sync"):
        side_effects = True

        class Params(BaseModel):
            pass

        def run(self, params: Any, ctx: StepContext) -> None:
            time.sleep(0)

        async def preview(self, params: Any, ctx: StepContext) -> None:
            return None

    assert (SyncStep.run_is_async, SyncStep.preview_is_async, SyncStep.side_effects) == (False, True, True)


def test_condition_fields_are_found_from_the_params_model():
    class Gate(Step, type="demo.gate"):
        class Params(BaseModel):
            when: ConditionValue
            unless: ConditionValue = False
            message: str = ""

        async def run(self, params: Any, ctx: StepContext) -> None:
            return None

    assert Gate.condition_fields() == frozenset({"when", "unless"})
    assert registry.get("core.assert").condition_fields() == frozenset({"condition"})
    assert registry.get("core.value").condition_fields() == frozenset()


def test_an_intermediate_base_without_type_is_not_registered():
    before = set(registry.names())

    class Base(Step):
        class Params(BaseModel):
            size: int = 1

        async def run(self, params: Any, ctx: StepContext) -> int:
            return params.size

    assert set(registry.names()) == before

    class Concrete(Base, type="demo.concrete"):
        """Inherits Params and run."""

    assert registry.get("demo.concrete") is Concrete
    assert Concrete.Params is Base.Params


@pytest.mark.parametrize("name", ["core.value", "value"], ids=["type-name", "alias"])
def test_a_name_registered_twice_by_different_classes_is_an_error(name):
    with pytest.raises(RegistryError) as info:

        class Impostor(
            Step, type="demo.impostor" if name == "value" else name, aliases=[name] if name == "value" else []
        ):
            class Params(BaseModel):
                pass

            async def run(self, params: Any, ctx: StepContext) -> None:
                return None

    message = str(info.value)
    assert message.startswith(f"step type {name!r} is registered twice: by Value (steps.core:")
    assert (
        "and by test_a_name_registered_twice_by_different_classes_is_an_error.<locals>.Impostor (tests.engine."
        "test_step_registry:" in message
    )
    assert registry.get(name).__module__ == "steps.core"
    assert registry.get("demo.impostor") is None


def test_the_same_class_defined_again_replaces_itself():
    """A re-imported plugin module (same module, same class name) is not a clash."""

    def define(word: str) -> type[Step]:
        class Again(Step, type="demo.again", aliases=[f"again_{word}"]):
            class Params(BaseModel):
                pass

            async def run(self, params: Any, ctx: StepContext) -> str:
                return word

        return Again

    first = define("one")
    second = define("two")
    assert first is not second
    assert registry.get("demo.again") is second
    assert registry.get("again_two") is second
    assert registry.get("again_one") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param("no_params", "needs an inner 'class Params(BaseModel)'", id="missing-params"),
        pytest.param("params_not_model", "needs an inner 'class Params(BaseModel)'", id="params-not-a-model"),
        pytest.param("output_not_model", "Output must be a pydantic model", id="output-not-a-model"),
        pytest.param("no_run", "needs a 'run(self, params, ctx)' method", id="missing-run"),
    ],
)
def test_malformed_step_types_are_refused(body, message):
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": "Bad"}
    if body != "no_params":
        namespace["Params"] = dict if body == "params_not_model" else type("Params", (BaseModel,), {})
    if body == "output_not_model":
        namespace["Output"] = dict
    if body != "no_run":

        async def run(self: Any, params: Any, ctx: Any) -> None:
            return None

        namespace["run"] = run
    with pytest.raises(RegistryError) as info:
        type("Bad", (Step,), namespace, type="demo.bad")
    assert str(info.value).startswith("step type 'demo.bad' (")
    assert str(info.value).endswith(message)
    assert registry.get("demo.bad") is None


def test_unregister_forgets_the_type_and_its_aliases():
    class Temp(Step, type="demo.temp", aliases=["tmp"]):
        class Params(BaseModel):
            pass

        async def run(self, params: Any, ctx: StepContext) -> None:
            return None

    registry.unregister("demo.temp")
    assert registry.get("demo.temp") is None
    assert registry.get("tmp") is None
