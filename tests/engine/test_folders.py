"""``load_folder``: the policy files of some folders, each validated, ids claimed twice found."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from engine.config import EngineConfig
from engine.folders import load_folder, problem_text

CONFIG = EngineConfig({})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "policies"
    path.mkdir()
    return path


def policy(policy_id: str, value: Any = 1) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "id": policy_id,
        "steps": [{"id": "a", "type": "core.value", "params": {"value": value}}],
    }


def put(folder: Path, name: str, doc: dict[str, Any] | str) -> Path:
    path = folder / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def texts(scan: Any) -> dict[str, list[str]]:
    return {path.name: [problem_text(p) for p in problems] for path, problems in scan.problems().items()}


def test_unique_ids_load_and_nothing_is_wrong(folder):
    put(folder, "b.json", policy("beta"))
    put(folder, "a.json", policy("alpha"))
    put(folder, "notes.txt", "not a policy")
    scan = load_folder([folder], CONFIG)
    assert [p.name for p in scan.files] == ["a.json", "b.json"]
    assert {i: f.path.name for i, f in scan.policies.items()} == {"alpha": "a.json", "beta": "b.json"}
    assert (scan.ok, scan.invalid, scan.duplicates, scan.problems()) == (True, [], {}, {})


def test_an_id_shared_by_four_files_one_of_them_broken_runs_none_and_names_every_file(folder):
    paths = [put(folder, f"{n}.json", policy("tick", n)) for n in ("a", "b", "c")]
    broken = put(folder, "0broken.json", '{"schema_version": 1, "id": "tick", "steps": []}')
    put(folder, "other.json", policy("other"))
    scan = load_folder([folder], CONFIG)
    assert list(scan.policies) == ["other"]
    assert scan.ok is False
    assert [f.path for f in scan.invalid] == [broken]
    [duplicate] = scan.duplicates.values()
    assert (duplicate.policy_id, duplicate.paths) == ("tick", (broken, *paths))
    shared = (
        f"/id: policy id 'tick' is used by 4 files: {broken}, {paths[0]}, {paths[1]}, {paths[2]};"
        " none of them runs until only one has it"
    )
    assert texts(scan) == {
        "0broken.json": ["/steps: must not be empty", shared],
        "a.json": [shared],
        "b.json": [shared],
        "c.json": [shared],
    }
    assert duplicate.problem.hint == "give each policy its own id, or remove the copies you do not want"
    assert scan.shared_with(paths[1]) == [broken, *paths]
    for path in (broken, paths[0], paths[1]):
        path.unlink()
    after = load_folder([folder], CONFIG)
    assert {i: f.path for i, f in after.policies.items()} == {"tick": paths[2], "other": folder / "other.json"}
    assert after.ok is True


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param('{"schema_version": 1, "id": "tick", "steps": [', id="bad-json"),
        pytest.param('["tick"]', id="not-an-object"),
        pytest.param('{"schema_version": 1, "id": 7, "steps": []}', id="id-not-a-string"),
    ],
)
def test_an_invalid_file_without_a_readable_id_blocks_nothing(folder, broken):
    good = put(folder, "good.json", policy("tick"))
    put(folder, "broken.json", broken)
    scan = load_folder([folder], CONFIG)
    assert {i: f.path for i, f in scan.policies.items()} == {"tick": good}
    assert scan.duplicates == {}
    assert [f.path.name for f in scan.invalid] == ["broken.json"]


def test_the_same_folder_given_twice_is_not_a_duplicate(folder):
    put(folder, "a.json", policy("alpha"))
    scan = load_folder([folder, folder / ".." / folder.name], CONFIG)
    assert list(scan.policies) == ["alpha"] and scan.ok


def test_ids_are_compared_across_folders(tmp_path, folder):
    other = tmp_path / "more"
    other.mkdir()
    first = put(folder, "a.json", policy("tick"))
    second = put(other, "z.json", policy("tick"))
    scan = load_folder([folder, other], CONFIG)
    assert scan.policies == {}
    assert scan.duplicates["tick"].paths == (first, second)


def test_a_rescan_reuses_unchanged_files_and_keeps_the_last_valid_version_of_a_bad_edit(folder):
    path = put(folder, "tick.json", policy("tick", 1))
    first = load_folder([folder], CONFIG)
    again = load_folder([folder], CONFIG, previous=first)
    assert again.files[path] is first.files[path]  # not validated again
    put(folder, "tick.json", '{"schema_version": 1, "id": "tick", "steps": []}')
    os.utime(path, ns=(1, 1))  # a new version even on a coarse clock
    edited = load_folder([folder], CONFIG, previous=again)
    loaded = edited.files[path]
    assert loaded.kept is True and loaded.valid is first.files[path].valid
    assert [problem_text(p) for p in loaded.problems] == ["/steps: must not be empty"]
    assert edited.policies == {"tick": loaded}  # still runs, the last valid version
    assert load_folder([folder], CONFIG).policies == {}  # a fresh scan has nothing to keep


def test_a_bad_edit_that_renames_the_id_to_a_taken_one_blocks_that_id_only(folder):
    path = put(folder, "a.json", policy("tick"))
    other = put(folder, "b.json", policy("tock"))
    first = load_folder([folder], CONFIG)
    put(folder, "a.json", '{"schema_version": 1, "id": "tock", "steps": []}')
    os.utime(path, ns=(1, 1))
    scan = load_folder([folder], CONFIG, previous=first)
    assert scan.files[path].ids == {"tick", "tock"}
    assert {i: f.path for i, f in scan.policies.items()} == {"tick": path}  # its last valid version
    assert scan.duplicates["tock"].paths == (path, other)
