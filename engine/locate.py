"""Where a JSON pointer is in the policy text: line and column for every problem.

A small scanner over already-valid JSON that records where each value starts (for object
members: where the key starts). Only run when a policy has problems.
"""

from __future__ import annotations

import bisect
import json
import re

from . import pointers

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")


def positions(text: str) -> dict[str, tuple[int, int]]:
    """Map each JSON pointer in ``text`` to its (line, column), both 1-based."""
    offsets: dict[str, int] = {}
    try:
        _value(text, _skip(text, 0), "", offsets)
    except (IndexError, ValueError):
        pass  # the text is not valid JSON: the syntax error is reported on its own
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(line_starts, offset)
        return line, offset - line_starts[line - 1] + 1

    return {pointer: where(offset) for pointer, offset in offsets.items()}


def _skip(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i


def _value(text: str, i: int, pointer: str, offsets: dict[str, int]) -> int:
    offsets.setdefault(pointer, i)
    char = text[i]
    if char == "{":
        i = _skip(text, i + 1)
        if text[i] == "}":
            return i + 1
        while True:
            match = _STRING.match(text, i)
            if match is None:
                raise ValueError(i)
            member = pointers.join(pointer, json.loads(match.group()))
            offsets[member] = i
            i = _skip(text, match.end())
            if text[i] != ":":
                raise ValueError(i)
            i = _value(text, _skip(text, i + 1), member, offsets)
            i = _skip(text, i)
            if text[i] == "}":
                return i + 1
            if text[i] != ",":
                raise ValueError(i)
            i = _skip(text, i + 1)
    if char == "[":
        i = _skip(text, i + 1)
        if text[i] == "]":
            return i + 1
        index = 0
        while True:
            i = _skip(text, _value(text, i, pointers.join(pointer, index), offsets))
            if text[i] == "]":
                return i + 1
            if text[i] != ",":
                raise ValueError(i)
            i = _skip(text, i + 1)
            index += 1
    match = (_STRING if char == '"' else _SCALAR).match(text, i)
    if match is None:
        raise ValueError(i)
    return match.end()


def nearest(table: dict[str, tuple[int, int]], pointer: str) -> tuple[int, int] | None:
    """The position of ``pointer``, or of its nearest existing parent (a missing field's object)."""
    while True:
        if pointer in table:
            return table[pointer]
        if not pointer:
            return None
        pointer = pointer.rsplit("/", 1)[0]
