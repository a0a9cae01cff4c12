"""engine.outputs and engine.artifacts: JSON inline, DataFrames as Parquet, files content-addressed (issue #3 §7)."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel

from engine import ArtifactRef, ArtifactStore, StepError, redact
from engine.outputs import decode, encode, output_hash
from engine.policy import sha256_of
from tests.conftest import policy


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


class Color(enum.Enum):
    RED = "red"


class Point(BaseModel):
    x: int
    label: str = "p"


@pytest.mark.parametrize(
    ("value", "encoded", "decoded"),
    [
        pytest.param(None, None, None, id="null"),
        pytest.param(True, True, True, id="bool"),
        pytest.param(3, 3, 3, id="int"),
        pytest.param(1.5, 1.5, 1.5, id="float"),
        pytest.param("text", "text", "text", id="str"),
        pytest.param([1, "a", None], [1, "a", None], [1, "a", None], id="list"),
        pytest.param((1, 2), [1, 2], [1, 2], id="tuple"),
        pytest.param({"a": {"b": [1]}, 2: "k"}, {"a": {"b": [1]}, "2": "k"}, {"a": {"b": [1]}, "2": "k"}, id="dict"),
        pytest.param(
            dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
            {"$datetime": "2024-05-06T07:08:09+00:00"},
            dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
            id="datetime",
        ),
        pytest.param(dt.date(2024, 5, 6), {"$date": "2024-05-06"}, dt.date(2024, 5, 6), id="date"),
        pytest.param(Decimal("2.50"), 2.5, 2.5, id="decimal"),
        pytest.param(Color.RED, "red", "red", id="enum"),
        pytest.param(PurePosixPath("/a/b"), "/a/b", "/a/b", id="path"),
        pytest.param(Point(x=1), {"x": 1, "label": "p"}, {"x": 1, "label": "p"}, id="pydantic-model"),
        pytest.param(
            {"when": dt.date(2024, 1, 2), "items": [Point(x=2)]},
            {"when": {"$date": "2024-01-02"}, "items": [{"x": 2, "label": "p"}]},
            {"when": dt.date(2024, 1, 2), "items": [{"x": 2, "label": "p"}]},
            id="nested",
        ),
    ],
)
def test_encode_and_decode(artifacts, value, encoded, decoded):
    stored = encode(value, artifacts)
    assert stored == encoded
    assert json.loads(json.dumps(stored)) == stored  # plain JSON
    assert decode(stored, artifacts) == decoded


def test_dataframe_is_stored_as_a_parquet_artifact(artifacts):
    frame = pd.DataFrame({"n": [1, 2, 3], "name": ["a", "b", "c"]})
    stored = encode({"frame": frame}, artifacts)
    sha = stored["frame"]["$frame"]
    path = artifacts.path_for(sha)
    assert path == artifacts.root / sha[:2] / sha
    assert path.read_bytes()[:4] == b"PAR1"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    back = decode(stored, artifacts)["frame"]
    pd.testing.assert_frame_equal(back, frame)


def test_same_content_is_stored_once(artifacts):
    frame = pd.DataFrame({"n": [1, 2]})
    first = encode(frame, artifacts)
    second = encode(frame.copy(), artifacts)
    assert first == second
    assert len([p for p in artifacts.root.rglob("*") if p.is_file()]) == 1


def test_bytes_are_stored_as_an_artifact(artifacts):
    stored = encode(b"\x89PNG...", artifacts)
    assert stored == {"$bytes": hashlib.sha256(b"\x89PNG...").hexdigest()}
    assert decode(stored, artifacts) == b"\x89PNG..."


def test_put_file_is_content_addressed(artifacts, tmp_path):
    source = tmp_path / "report.pdf"
    source.write_bytes(b"%PDF-1.7 pretend")
    ref = artifacts.put_file(source, "application/pdf")
    sha = hashlib.sha256(b"%PDF-1.7 pretend").hexdigest()
    assert ref == ArtifactRef(
        sha256=sha, path=str(artifacts.root / sha[:2] / sha), media_type="application/pdf", size=16, name="report.pdf"
    )
    again = artifacts.put_bytes(b"%PDF-1.7 pretend", "application/pdf", name="other.pdf")
    assert (again.sha256, again.path) == (ref.sha256, ref.path)
    assert artifacts.read_bytes(sha) == b"%PDF-1.7 pretend"
    assert [p.name for p in (artifacts.root / sha[:2]).iterdir()] == [sha]  # no temporary files left


def test_unstorable_value_is_a_clear_step_error(artifacts):
    with pytest.raises(StepError) as info:
        encode({"rows": [1, object()]}, artifacts, "output of step 'x'")
    assert str(info.value) == (
        "output of step 'x'.rows.1: a builtins.object cannot be stored; return JSON values, "
        "pydantic models, DataFrames, bytes or datetimes"
    )
    assert info.value.retryable is False


def test_encode_redacts_registered_secrets(artifacts):
    redact.register("p4ssw0rd!")
    assert encode({"msg": "login p4ssw0rd! ok", "n": 1}, artifacts) == {"msg": "login *** ok", "n": 1}


def test_output_hash_is_sha256_of_canonical_json():
    assert output_hash({"b": 1, "a": [1, 2]}) == output_hash({"a": [1, 2], "b": 1})
    assert output_hash({"a": 1}) == sha256_of({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()


# -- in a run ------------------------------------------------------------------------------------


def _row(store, run_id: str, step_id: str) -> dict[str, Any]:
    return next(s for s in store.get_steps(run_id) if s["step_id"] == step_id)


def test_a_dataframe_output_in_a_run(run, store, state_dir):
    result = run(
        policy(
            {"id": "f", "type": "test.frame", "params": {"rows": 5}},
            {"id": "n", "type": "core.value", "params": {"value": {"ref": "ctx.f.rows"}}},
            {"id": "stats", "type": "test.frame_stats", "params": {"frame": {"ref": "ctx.f.frame"}}},
        )
    )
    assert result.status == "SUCCESS"
    row = _row(store, result.run_id, "f")
    stored = json.loads(row["output_json"])
    assert stored["rows"] == 5
    sha = stored["frame"]["$frame"]
    assert (state_dir / "artifacts" / sha[:2] / sha).is_file()
    assert row["output_hash"] == output_hash(stored)
    assert json.loads(_row(store, result.run_id, "stats")["output_json"]) == {
        "type": "DataFrame",
        "rows": 5,
        "sq_sum": 30,
    }


def test_same_output_same_hash_across_runs(run, store):
    doc = policy({"id": "v", "type": "core.value", "params": {"value": {"b": [1, 2], "a": "x"}}})
    first, second = run(doc), run(doc)
    assert _row(store, first.run_id, "v")["output_hash"] == _row(store, second.run_id, "v")["output_hash"]
    assert _row(store, first.run_id, "v")["output_hash"] == sha256_of({"b": [1, 2], "a": "x"})


def test_an_output_that_cannot_be_stored_fails_the_step(run, state_dir):
    result = run(
        policy(
            {
                "id": "u",
                "type": "test.unstorable",
                "on_error": "retry_then_fail",
                "retry": {"max_attempts": 3, "backoff_s": 0},
            }
        )
    )
    step = result.steps[0]
    assert (result.status, step.status, step.attempts) == ("FAILED", "FAILED", 1)
    assert step.error == (
        "output of step 'u'.thing: a builtins.object cannot be stored; return JSON values, "
        "pydantic models, DataFrames, bytes or datetimes"
    )


def test_declared_output_model_is_stored_as_json(run, store):
    result = run(policy({"id": "t", "type": "test.typed", "params": {"count": 2, "label": "two"}}))
    assert json.loads(_row(store, result.run_id, "t")["output_json"]) == {
        "count": 2,
        "label": "two",
        "items": [{"name": "n0", "amount": 0.0}, {"name": "n1", "amount": 1.0}],
    }
