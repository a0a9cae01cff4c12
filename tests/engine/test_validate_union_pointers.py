"""Params with tagged unions: pointers name the place in the document, not pydantic's union tags."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from engine import PolicyError, Step
from engine.step import registry
from engine.validate import validate_document


class Circle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["circle"]
    label: str


class Square(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["square"]
    side: int


@pytest.fixture
def shapes():
    class Shapes(Step, type="test.shapes"):
        class Params(BaseModel):
            items: list[Annotated[Circle | Square, Field(discriminator="kind")]]

        def run(self, params, ctx):
            return None

    yield
    registry.unregister("test.shapes")


def doc(items):
    return {"schema_version": 1, "id": "t", "steps": [{"id": "s", "type": "test.shapes", "params": {"items": items}}]}


def test_an_expression_inside_a_union_member_is_accepted(shapes):
    validate_document(doc([{"kind": "circle", "label": {"template": "{{ params }}"}}]))


def test_a_problem_inside_a_union_member_has_the_document_pointer(shapes):
    with pytest.raises(PolicyError) as exc:
        validate_document(doc([{"kind": "circle", "label": "a"}, {"kind": "square", "side": "big"}]))
    assert [p.pointer for p in exc.value.problems] == ["/steps/0/params/items/1/side"]


def test_a_missing_field_inside_a_union_member(shapes):
    with pytest.raises(PolicyError) as exc:
        validate_document(doc([{"kind": "square"}]))
    assert [(p.pointer, p.message) for p in exc.value.problems] == [
        ("/steps/0/params/items/0/side", "required field 'side' is missing")
    ]
