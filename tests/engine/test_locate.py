import pytest

from engine.locate import nearest, positions

TEXT = """{
  "id": "x",
  "steps": [
    {"id": "a", "params": {"v": [1, {"k": "a/b"}]}},
    {"id": "b"}
  ],
  "a/b~c": true
}"""


@pytest.mark.parametrize(
    ("pointer", "where"),
    [
        ("", (1, 1)),
        ("/id", (2, 3)),
        ("/steps", (3, 3)),
        ("/steps/0", (4, 5)),
        ("/steps/0/params/v/1/k", (4, 38)),
        ("/steps/1/id", (5, 6)),
        ("/a~1b~0c", (7, 3)),
    ],
    ids=lambda v: str(v),
)
def test_positions_of_pointers(pointer, where):
    assert positions(TEXT)[pointer] == where


def test_nearest_falls_back_to_the_parent():
    table = positions(TEXT)
    assert nearest(table, "/steps/1/type") == (4 + 1, 5)
    assert nearest(table, "/nope/deeper") == (1, 1)


def test_invalid_json_gives_what_was_scanned():
    assert positions('{"a": 1, "b": ')["/a"] == (1, 2)
