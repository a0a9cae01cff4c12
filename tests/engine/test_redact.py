"""engine/redact.py: secrets masked in every encoding, URL query values masked whole, deep data."""

from __future__ import annotations

import json

import pytest

from engine import redact

SECRET = "k3y/with+b64== é"


@pytest.mark.parametrize(
    "written",
    [
        pytest.param("k3y/with+b64== é", id="raw"),
        pytest.param("k3y%2Fwith%2Bb64%3D%3D%20%C3%A9", id="quote-safe-none"),
        pytest.param("k3y/with%2Bb64%3D%3D%20%C3%A9", id="quote"),
        pytest.param("k3y%2Fwith%2Bb64%3D%3D+%C3%A9", id="quote_plus-form"),
        pytest.param("k3y%2fwith%2bb64%3d%3d+%c3%a9", id="lower-case-hex"),
        pytest.param("k3y/with+b64== \\u00e9", id="json-ascii"),
        pytest.param("azN5L3dpdGgrYjY0PT0gw6k=", id="base64"),
        pytest.param("azN5L3dpdGgrYjY0PT0gw6k=".replace("+", "-").replace("/", "_"), id="base64-urlsafe"),
    ],
)
def test_every_encoding_of_a_secret_is_masked(written):
    redact.register(SECRET)
    assert redact.redact(f"GET /v1?key={written}&n=1 failed") == "GET /v1?key=***&n=1 failed"


def test_a_json_escaped_secret_is_masked_in_json_text():
    redact.register('pa"ss\\word')
    assert redact.redact(json.dumps({"password": 'pa"ss\\word'})) == '{"password": "***"}'


def test_mask_query_masks_whole_values_and_keeps_the_others():
    redact.register("k3y/with+b64==")
    url = "https://api.example.com/v1/x?key=k3y%2Fwith%2Bb64%3D%3D&q=a+b%2Fc&pre=abc-k3y%2Fwith%2Bb64%3D%3D&flag"
    assert redact.mask_query(url) == "https://api.example.com/v1/x?key=***&q=a+b%2Fc&pre=***&flag"
    assert redact.mask_query("https://api.example.com/v1/x?q=1") == "https://api.example.com/v1/x?q=1"


def nested(depth: int, leaf: object) -> object:
    value = leaf
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def test_redact_value_walks_deep_data_without_recursion():
    redact.register("hunter2-xyz")
    value = nested(redact.MAX_DEPTH - 1, "got hunter2-xyz")
    out = redact.redact_value(value)
    for _ in range(redact.MAX_DEPTH - 1):
        out = out["k"] if isinstance(out, dict) else out[0]
    assert out == "got ***"


@pytest.mark.parametrize("depth", [600, 5000, 100_000])
def test_redact_value_replaces_what_is_nested_too_deeply(depth):
    redact.register("hunter2-xyz")
    out = redact.redact_value(nested(depth, "hunter2-xyz"))
    levels = 0
    while isinstance(out, dict | list):
        out = out["k"] if isinstance(out, dict) else out[0]
        levels += 1
    assert (levels, out) == (redact.MAX_DEPTH, redact.TOO_DEEP)


def test_redact_value_keeps_order_keys_and_other_objects():
    redact.register("hunter2-xyz")
    marker = object()
    value = {"hunter2-xyz": [1, ("a", "hunter2-xyz"), {"b": None, "c": marker}], "z": 2.5}
    assert redact.redact_value(value) == {"***": [1, ["a", "***"], {"b": None, "c": marker}], "z": 2.5}
    assert list(redact.redact_value(value)) == ["***", "z"]


def test_nothing_registered_returns_the_value_itself():
    value = nested(5000, "x")
    assert redact.redact_value(value) is value
