"""Where a JSON pointer is in the policy text: line and column for every problem.

A small scanner over already-valid JSON that records where each value starts (for object
members: where the key starts). Only run when a policy has problems.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any

from . import pointers
from .limits import MAX_DEPTH

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|NaN|-?Infinity")


def positions(text: str, max_depth: int = MAX_DEPTH + 1) -> dict[str, tuple[int, int]]:
    """Map each JSON pointer in ``text`` to its (line, column), both 1-based.

    Values nested deeper than ``max_depth`` are scanned over but not recorded (their pointers
    would be as long as the nesting is deep)."""
    offsets: dict[str, int] = {}
    try:
        _scan(text, offsets, max_depth)
    except (IndexError, ValueError):
        pass  # the text is not valid JSON: the syntax error is reported on its own
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(line_starts, offset)
        return line, offset - line_starts[line - 1] + 1

    return {pointer: where(offset) for pointer, offset in offsets.items()}


def first_too_deep(text: str, limit: int = MAX_DEPTH) -> str | None:
    """The pointer of the first value in ``text`` nested deeper than ``limit`` lists/objects."""
    found = [p for p in positions(text, limit + 1) if p.count("/") > limit]
    return found[0] if found else None


def _skip(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i


def _scan(text: str, offsets: dict[str, int], max_depth: int) -> None:
    """Record where each value starts; iterative (an explicit stack of open lists and objects),
    so that any depth scans. Raises IndexError or ValueError on invalid JSON."""
    # each open container: [pointer, is_object, next index, depth]
    stack: list[list[Any]] = []
    i = _skip(text, 0)
    pointer, depth = "", 0
    while True:
        # a value starts at i, at ``pointer``
        if depth <= max_depth:
            offsets.setdefault(pointer, i)
        char = text[i]
        if char in "{[":
            i = _skip(text, i + 1)
            is_object = char == "{"
            if text[i] == ("}" if is_object else "]"):
                i += 1
            else:
                stack.append([pointer, is_object, 0, depth])
                pointer, depth, i = _first_member(text, i, stack[-1], offsets, max_depth)
                continue
        else:
            match = (_STRING if char == '"' else _SCALAR).match(text, i)
            if match is None:
                raise ValueError(i)
            i = match.end()
        # the value ended: close containers, or move on to the next member
        while True:
            if not stack:
                return
            i = _skip(text, i)
            top = stack[-1]
            if text[i] == ("}" if top[1] else "]"):
                stack.pop()
                i += 1
                continue
            if text[i] != ",":
                raise ValueError(i)
            top[2] += 1
            pointer, depth, i = _first_member(text, _skip(text, i + 1), top, offsets, max_depth)
            break


def _first_member(text: str, i: int, top: list[Any], offsets: dict[str, int], max_depth: int) -> tuple[str, int, int]:
    """The pointer, depth and start of the next value in the open container ``top``."""
    parent, is_object, index, depth = top
    if not is_object:
        return pointers.join(parent, index), depth + 1, i
    match = _STRING.match(text, i)
    if match is None:
        raise ValueError(i)
    member = pointers.join(parent, json.loads(match.group()))
    if depth + 1 <= max_depth:
        offsets[member] = i  # the last of duplicate keys: the one JSON keeps
    i = _skip(text, match.end())
    if text[i] != ":":
        raise ValueError(i)
    return member, depth + 1, _skip(text, i + 1)


def nearest(table: dict[str, tuple[int, int]], pointer: str) -> tuple[int, int] | None:
    """The position of ``pointer``, or of its nearest existing parent (a missing field's object)."""
    while True:
        if pointer in table:
            return table[pointer]
        if not pointer:
            return None
        pointer = pointer.rsplit("/", 1)[0]
