"""Values inside step params: literals, ``ref``, ``template``, ``secret`` and ``literal``.

An object with exactly one of these keys is an *expression*; anything else is a literal
(walked recursively, so expressions may appear at any depth):

- ``{"ref": "ctx.fetch.rows.0.amount"}``: a path into the run context;
- ``{"template": "Sales for {{ params.region }}"}``: Jinja2, sandboxed, StrictUndefined;
- ``{"secret": "SMTP_PASSWORD"}``: read from the environment when the step starts;
- ``{"literal": {...}}``: the value as written, never resolved (an escape hatch for data that
  happens to look like an expression).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from . import pointers, redact
from .errors import RefError, SecretError, TemplateError
from .limits import LimitError

if TYPE_CHECKING:
    import jinja2

EXPRESSION_KEYS = ("ref", "template", "secret", "literal")
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONTEXT_ROOTS = ("params", "run")
RUN_FIELDS = (
    "id",
    "policy_id",
    "started_at",
    "dry_run",
    "attempt",
    "trigger",
    "scheduled_for",
    "error",
    "failed_steps",
)


def expression_kind(value: Any) -> str | None:
    """The expression key of ``value`` ("ref", "template", ...), or None for a literal."""
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if key in EXPRESSION_KEYS:
            return key
    return None


def is_expression(value: Any) -> bool:
    """Whether ``value`` is a ``ref``, ``template``, ``secret`` or ``literal`` expression (a value
    known only when the step runs, or wrapped as ``literal``) rather than a plain JSON value."""
    return expression_kind(value) is not None


@dataclass(frozen=True)
class Expression:
    pointer: str
    kind: str
    payload: Any


def iter_expressions(value: Any, pointer: str = "") -> Iterator[Expression]:
    """Every expression inside ``value``, with its JSON pointer below ``pointer``."""
    for path, kind, payload in _walk(value, ()):
        yield Expression(pointers.join(pointer, *path), kind, payload)


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str, Any]]:
    # only containers are visited: most values are scalars, and validation walks every step
    if isinstance(value, dict):
        kind = expression_kind(value)
        if kind is not None:
            yield path, kind, value[kind]
            return
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list):
                yield from _walk(item, (*path, index))


# -- refs -------------------------------------------------------------------------------


def parse_ref(text: Any) -> tuple[str, ...]:
    """``"ctx.a.b.0"`` -> ``("a", "b", "0")``. Raises ValueError with a fix in the message."""
    if not isinstance(text, str):
        raise ValueError(f"a ref must be a string like 'ctx.step_id.field', not {type(text).__name__}")
    parts = text.split(".")
    if parts[0] != "ctx":
        raise ValueError(f"ref {text!r} must start with 'ctx.' (e.g. 'ctx.{text}')")
    if len(parts) < 2 or any(p == "" for p in parts[1:]):
        raise ValueError(f"ref {text!r} is not a dotted path like 'ctx.step_id.field'")
    return tuple(parts[1:])


_MISSING = object()


def walk(value: Any, path: Sequence[str]) -> Any:
    """Follow ``path`` through dicts (by key) and lists (by index); ``_MISSING`` when absent."""
    for segment in path:
        if value is None:
            return None
        if isinstance(value, Mapping):
            value = value.get(segment, _MISSING)
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            try:
                value = value[int(segment)]
            except (ValueError, IndexError):
                return _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


class RunContext:
    """The run context ``ctx``: ``params``, ``run`` and one entry per finished step.

    Steps that were SKIPPED or FAILED are in ``null_steps``: refs into them resolve to None
    (that is what ``trigger_rule: all_done`` steps see).
    """

    def __init__(self, params: dict[str, Any], run: dict[str, Any]) -> None:
        self.data: dict[str, Any] = {"params": params, "run": run}
        self.null_steps: set[str] = set()

    def set_output(self, step_id: str, output: Any) -> None:
        self.data[step_id] = output
        self.null_steps.discard(step_id)

    def set_null(self, step_id: str) -> None:
        self.data.pop(step_id, None)
        self.null_steps.add(step_id)

    def with_step(self, step_id: str, value: Any) -> RunContext:
        """A copy in which ``ctx.<step_id>`` is ``value`` (a step's own saved state, for its params)."""
        view = RunContext(self.data["params"], self.data["run"])
        view.data = {**self.data, step_id: value}
        view.null_steps = self.null_steps - {step_id}
        return view

    def has(self, path: Sequence[str]) -> bool:
        return self.lookup_or_missing(path) is not _MISSING

    def lookup_or_missing(self, path: Sequence[str]) -> Any:
        if path[0] in self.null_steps:
            return None
        return walk(self.data, path)

    def lookup(self, path: Sequence[str], where: str = "") -> Any:
        value = self.lookup_or_missing(path)
        if value is _MISSING:
            raise RefError(self._missing_message(path, where))
        return value

    def _missing_message(self, path: Sequence[str], where: str) -> str:
        text = "ctx." + ".".join(path)
        at = f" at {where}" if where else ""
        # find the deepest existing prefix to say what is available there
        for depth in range(len(path) - 1, -1, -1):
            parent = walk(self.data, path[:depth]) if depth else self.data
            if parent is not _MISSING:
                break
        else:  # pragma: no cover - the root always exists
            parent, depth = self.data, 0
        parent_text = "ctx" + "".join("." + p for p in path[:depth])
        if isinstance(parent, Mapping):
            keys = ", ".join(sorted(map(str, parent))[:20]) or "nothing"
            return f"ref {text}{at} not found: {parent_text} has no {path[depth]!r} (it has: {keys})"
        if isinstance(parent, Sequence) and not isinstance(parent, str | bytes):
            return f"ref {text}{at} not found: {parent_text} has {len(parent)} items, no index {path[depth]!r}"
        return f"ref {text}{at} not found: {parent_text} is a {type(parent).__name__}, not an object or list"

    def template_namespace(self) -> dict[str, Any]:
        namespace = dict(self.data)
        for step_id in self.null_steps:
            namespace[step_id] = None
        namespace["ctx"] = dict(namespace)  # {{ ctx.orders.cursor }} works like {{ orders.cursor }}
        return namespace


# -- templates ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    """The sandboxed environment of policy templates, made on first use: a policy without
    templates never imports Jinja2."""
    import jinja2

    from .sandbox import sandbox_environment

    return sandbox_environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=4096)
def _compile(source: str) -> jinja2.Template:
    return _env().from_string(source)


def template_reads(source: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The top-level names a template reads, and each ``name.field`` / ``name["field"]`` it reads.

    Raises ``jinja2.TemplateSyntaxError``.
    """
    from jinja2 import meta, nodes

    tree = _env().parse(source)
    fields: set[tuple[str, str]] = set()
    names = set(meta.find_undeclared_variables(tree))
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        root, key = _read(node)
        if root is not None and key is not None:
            if root == "ctx":  # {{ ctx.orders.cursor }} reads orders.cursor, as {"ref": ...} does
                names.add(key)
            else:
                fields.add((root, key))
            continue
        inner_root, inner_key = _read(node.node)
        outer_key = _read_key(node)
        if inner_root == "ctx" and inner_key is not None and outer_key is not None:
            fields.add((inner_key, outer_key))
    names.discard("ctx")
    return names, fields


def _read_key(node: Any) -> str | None:
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _read(node: Any) -> tuple[str | None, str | None]:
    """``name.key`` or ``name["key"]`` of a Getattr/Getitem node over a plain name."""
    from jinja2 import nodes

    if not isinstance(node, nodes.Getattr | nodes.Getitem) or not isinstance(node.node, nodes.Name):
        return None, None
    if isinstance(node, nodes.Getattr):
        return node.node.name, node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.node.name, node.arg.value
    return node.node.name, None


def render_template(source: str, ctx: RunContext, where: str = "") -> str:
    import jinja2

    at = f" at {where}" if where else ""
    try:
        return _compile(source).render(ctx.template_namespace())
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template{at}: {exc} (names available: params, run and step ids)") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template{at}: syntax error on line {exc.lineno}: {exc.message}") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template{at}: not allowed in the sandbox: {exc}") from exc
    except LimitError as exc:
        raise TemplateError(f"template{at}: {exc}") from exc
    except Exception as exc:  # any other error raised while rendering user text
        raise TemplateError(f"template{at}: {type(exc).__name__}: {exc}") from exc


# -- secrets -----------------------------------------------------------------------------


def read_secret(name: str, where: str = "") -> str:
    value = os.environ.get(name)
    if value is None:
        at = f" (at {where})" if where else ""
        raise SecretError(f"secret {name!r}{at} is not set: set the environment variable {name}")
    redact.register(value)
    return value


# -- resolution --------------------------------------------------------------------------


def resolve(value: Any, ctx: RunContext, pointer: str = "", skip: frozenset[str] = frozenset()) -> Any:
    """Replace every expression inside ``value`` by its value.

    ``skip`` holds top-level keys left untouched (fields that hold conditions, which the step
    evaluates itself).
    """
    kind = expression_kind(value)
    if kind == "ref":
        return ctx.lookup(parse_ref(value["ref"]), pointer)
    if kind == "template":
        return render_template(value["template"], ctx, pointer)
    if kind == "secret":
        return read_secret(value["secret"], pointer)
    if kind == "literal":
        return value["literal"]
    if isinstance(value, dict):
        return {k: v if k in skip else resolve(v, ctx, pointers.join(pointer, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ctx, pointers.join(pointer, i)) for i, v in enumerate(value)]
    return value


def mask_secrets(value: Any) -> Any:
    """The value with every ``{"secret": NAME}`` shown as ``"***"`` (for previews and plans)."""
    kind = expression_kind(value)
    if kind == "secret":
        return redact.MASK
    if kind is not None:
        return value
    if isinstance(value, dict):
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value
