"""``engine validate``: every problem in a policy at once, each with its JSON pointer.

Checks, in order: JSON syntax (with line and column), the document's shape (the pydantic
models in :mod:`engine.policy`), unique step ids, known step types, each step's params against
its type's Params model, values (refs, templates, secrets), conditions, references to unknown
steps or to fields a step's Output does not have, and cycles.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import types
import typing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from . import graph as graphs
from . import limits, locate, model_errors, pointers
from . import sections as policy_sections
from .conditions import Condition, ConditionParser
from .config import EngineConfig
from .errors import ConfigError, PolicyError, Problem, did_you_mean
from .model_errors import validate_literal
from .params import JSON_TYPES, check_params, json_type_matches
from .policy import (
    PARAM_NAME_PATTERN,
    RESERVED_STEP_IDS,
    STEP_ID_PATTERN,
    Policy,
    StepSpec,
    sha256_of,
)
from .step import CheckContext, Step, registry
from .values import RUN_FIELDS, SECRET_NAME, expression_kind, iter_expressions, parse_ref, template_reads

if TYPE_CHECKING:
    import networkx as nx

_STEP_ID_RE = __import__("re").compile(STEP_ID_PATTERN)
_PARAM_RE = __import__("re").compile(PARAM_NAME_PATTERN)


@dataclass
class ValidPolicy:
    """A policy that passed every check, with what the runner needs precomputed."""

    policy: Policy
    document: dict[str, Any]
    path: Path | None
    deps: dict[str, list[str]]  # step id -> dependencies, in policy order (main and on_failure)
    step_types: dict[str, type[Step]]
    skip_conditions: dict[str, Condition | None]
    raw_steps: list[Any]
    main_ids: list[str]
    failure_ids: list[str]
    # plugin sections (engine.policy_section): every declared one, validated, defaults filled in
    sections: dict[str, Any] = field(default_factory=dict)
    # steps whose params read their own saved state (ctx.<own id>.<key>)
    self_refs: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return self.policy.id

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The step graph (networkx, built on first use: a plain run never needs it)."""
        return graphs.build(self.main_ids + self.failure_ids, self.deps)

    def spec(self, step_id: str) -> StepSpec:
        return self._specs[step_id]

    @cached_property
    def hash(self) -> str:
        """SHA-256 of the canonical JSON of the whole document."""
        return sha256_of(self.document)

    @cached_property
    def definition_hashes(self) -> dict[str, str]:
        """Per step, SHA-256 of its definition as written (a resume re-runs steps whose hash changed)."""
        return {sid: sha256_of(raw) for sid, raw in zip(self.position_of, self.raw_steps, strict=True)}

    def side_effects(self, step_id: str) -> bool:
        """Whether the step has side effects, judged from its literal params when it can be."""
        cls = self.step_types[step_id]
        if not cls.side_effects:
            return False
        params = self.spec(step_id).params
        try:
            return cls.has_side_effects(cls.Params.model_validate(params))
        except ValidationError:
            pass
        # expressions stand in some params: judge from the literal top-level ones, the others
        # taking their defaults (so an expression never makes a step look harmless)
        literal = {k: v for k, v in params.items() if expression_kind(v) is None}
        try:
            return bool(cls.has_side_effects(cls.Params.model_construct(**literal)))
        except Exception:
            return True

    def __post_init__(self) -> None:
        self._specs = {s.id: s for s in self.policy.all_steps()}
        self.position_of = {sid: i for i, sid in enumerate(self.main_ids + self.failure_ids)}
        self.main_set = frozenset(self.main_ids)


def load_document(text: str, source: str | None = None) -> dict[str, Any]:
    """Parse JSON text; a syntax error becomes a PolicyError with line and column.

    So do what JSON parsers disagree on or Python cannot hold (see docs/policy.md#limits):
    duplicate keys, ``NaN``/``Infinity``, numbers out of range, nesting deeper than MAX_DEPTH.
    """
    duplicates: dict[int, tuple[dict[str, Any], list[str]]] = {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        again = []
        for key, value in items:
            if key in obj:
                again.append(key)
            obj[key] = value
        if again:  # keyed by id: the object (kept here too) lives as long as this table
            duplicates[id(obj)] = (obj, again)
        return obj

    try:
        doc = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError as exc:
        problem = Problem("", f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno)
        raise PolicyError([problem], source) from None
    except RecursionError:  # nested far deeper than MAX_DEPTH: find where in the text
        deep = locate.first_too_deep(text) or ""
        path = [_unescape(token) for token in deep.split("/")[1:]]
        raise with_lines(PolicyError([_too_deep_problem(path, text)], source), text) from None
    problems = limit_problems(doc, duplicates, text)
    if problems:
        raise with_lines(PolicyError(problems, source), text)
    if not isinstance(doc, dict):
        raise PolicyError([Problem("", "a policy must be a JSON object", "start the file with {")], source)
    return doc


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


class _Refused:
    """A JSON number or constant that ``load_document`` refuses; reported with its pointer."""

    def __init__(self, message: str, hint: str) -> None:
        self.message, self.hint = message, hint


def _parse_int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    if digits > limits.MAX_INT_DIGITS:
        return _Refused(
            f"integer of {digits} digits is too large (at most {limits.MAX_INT_DIGITS} digits)",
            "write an identifier or a long code as a string",
        )
    return int(text)


def _parse_float(text: str) -> Any:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 30 else text[:27] + "..."
        return _Refused(f"number {shown} is out of range (it would be infinite)", "use a smaller number")
    return value


def _parse_constant(name: str) -> Any:
    return _Refused(f"{name} is not valid JSON", "write a number, or null")


def _too_deep_problem(path: list[str], text: str | None = None) -> Problem:
    """Pointing where the nesting starts (the full pointer is as long as the nesting is deep),
    with the line and column of the first value too deep."""
    full = pointers.join("", *path)
    place = locate.positions(text).get(full) if text is not None else None
    return Problem(
        pointers.join("", *path[:_SHOWN_DEPTH]),
        f"lists and objects nested deeper than {limits.MAX_DEPTH} levels below this point",
        f"at most {limits.MAX_DEPTH} levels: flatten the data, or keep it in a file a step reads",
        line=place[0] if place else None,
        column=place[1] if place else None,
    )


_SHOWN_DEPTH = 8


def limit_problems(
    doc: Any, duplicates: dict[int, tuple[dict[str, Any], list[str]]] | None = None, text: str | None = None
) -> list[Problem]:
    """Values beyond the limits (docs/policy.md#limits), duplicate keys and refused numbers in a
    parsed document; an iterative walk, so any depth is fine."""
    duplicates = duplicates or {}
    problems: list[Problem] = []
    deep = limits.find_too_deep(doc)
    if deep is not None:
        return [_too_deep_problem([str(token) for token in deep], text)]
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        value, pointer = stack.pop()
        if isinstance(value, _Refused):
            problems.append(Problem(pointer, value.message, value.hint))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            try:
                limits.check_int(value, "integer")
            except limits.LimitError as exc:
                problems.append(Problem(pointer, str(exc)))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(pointer, f"number {value} is not valid JSON", "write a number, or null"))
        elif isinstance(value, dict):
            for key in duplicates.get(id(value), (None, []))[1]:
                problems.append(
                    Problem(
                        pointers.join(pointer, key),
                        f"duplicate key {key!r}: JSON keeps only the last one",
                        "remove or rename one of them",
                    )
                )
            stack.extend((v, pointers.join(pointer, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, pointers.join(pointer, i)) for i, v in enumerate(value))
    return problems


def validate_file(path: str | Path, config: EngineConfig | None = None) -> ValidPolicy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([Problem("", f"cannot read the policy file: {exc.strerror}")], str(path)) from None
    except UnicodeDecodeError:
        raise PolicyError([Problem("", "the policy file is not UTF-8 text")], str(path)) from None
    try:
        return validate_document(load_document(text, str(path)), path, config)
    except PolicyError as exc:
        raise with_lines(exc, text) from None


def with_lines(exc: PolicyError, text: str) -> PolicyError:
    """The same problems, each with the line and column of its pointer in ``text``."""
    if all(p.line is not None for p in exc.problems):
        return exc
    table = locate.positions(text)
    problems = []
    for problem in exc.problems:
        place = locate.nearest(table, problem.pointer) if problem.line is None else None
        if place is not None:
            problem = dataclasses.replace(problem, line=place[0], column=place[1])
        problems.append(problem)
    return PolicyError(problems, exc.source)


def validate_document(doc: dict[str, Any], path: Path | None = None, config: EngineConfig | None = None) -> ValidPolicy:
    """Check a parsed document; raise PolicyError listing every problem.

    ``config`` is the engine configuration that step checks (such as allow-lists) may read;
    by default it is loaded (``EngineConfig.load``) the first time a check asks for it.
    """
    found = limit_problems(doc)
    if found:  # deeper walks (and Python's int-to-text conversion) would fail on such a document
        raise PolicyError(found, str(path) if path else None)
    checker = _Checker(doc, path.resolve().parent if path else None, config)
    result = checker.run()
    if checker.problems:
        raise PolicyError(checker.problems, str(path) if path else None)
    assert result is not None
    policy, deps = result
    return ValidPolicy(
        policy=policy,
        document=doc,
        path=path,
        deps=deps,
        step_types={s.id: _step_type(s.type) for s in policy.all_steps()},
        skip_conditions=checker.skip_conditions,
        raw_steps=checker.raw_steps,
        main_ids=[s.id for s in policy.steps],
        failure_ids=[s.id for s in policy.on_failure],
        sections=checker.sections,
        self_refs=frozenset(checker.self_refs),
    )


def allowed_step_types(config: EngineConfig) -> list[str] | None:
    """``[engine] allowed_step_types`` (patterns such as ``fetch.*``), or None: every installed type."""
    value = config.section("engine").get("allowed_step_types")
    if value is None:
        return None
    if isinstance(value, str):  # ENGINE_ENGINE_ALLOWED_STEP_TYPES=fetch.*,report.*
        value = value.split(",")
    if not isinstance(value, list):
        raise ConfigError(f"{config.where('engine')}: allowed_step_types must be a list of step type patterns")
    return [str(v).strip() for v in value if str(v).strip()]


def _unquote_hint(declared: str, value: Any) -> str | None:
    """``drop the quotes: 3`` for a JSON string that reads as a value of the declared type."""
    if declared == "string" or not isinstance(value, str):
        return None
    try:
        parsed = json.loads(value.strip())
    except ValueError:
        return None
    return f"drop the quotes: {value.strip()}" if json_type_matches(declared, parsed) else None


def _keeps_state(step_type: type[Step] | None) -> bool:
    """Whether the type declares saved state its own params may read (overrides initial_state)."""
    return step_type is not None and step_type.initial_state.__func__ is not Step.initial_state.__func__  # type: ignore[attr-defined]


def _step_type(name: str) -> type[Step]:
    cls = registry.get(name)
    assert cls is not None
    return cls


class _Checker:
    def __init__(self, doc: dict[str, Any], policy_dir: Path | None, config: EngineConfig | None) -> None:
        self.doc = doc
        self.policy_dir = policy_dir
        self.problems: list[Problem] = []
        self.skip_conditions: dict[str, Condition | None] = {}
        self.raw_steps: list[Any] = []
        self.sections: dict[str, Any] = {}
        self.self_refs: set[str] = set()
        self._config = config
        self._allowed_types: list[str] | None | bool = False

    def config(self) -> EngineConfig:
        if self._config is None:
            self._config = EngineConfig.load()
        return self._config

    def add(self, pointer: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(pointer, message, hint))

    def run(self) -> tuple[Policy, dict[str, list[str]]] | None:
        policy = self._shape()
        raw_params = self.doc.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        self.declared_params = set(params)
        self._check_param_defaults(params)
        main = self._steps("steps")
        failure = self._steps("on_failure")
        self.main_ids = {sid for sid, _, _ in main}
        self.failure_ids = {sid for sid, _, _ in failure}
        self._check_unique([*main, *failure])
        self.types: dict[str, type[Step] | None] = {}
        for sid, raw, _ in [*main, *failure]:
            type_name = raw.get("type")
            self.types.setdefault(sid, registry.get(type_name) if isinstance(type_name, str) else None)
        deps: dict[str, list[str]] = {}
        for sid, raw, ptr in main:
            deps[sid] = self._check_step(sid, raw, ptr, phase="main")
        for sid, raw, ptr in failure:
            deps[sid] = self._check_step(sid, raw, ptr, phase="on_failure")
        order = [sid for sid, _, _ in main] + [sid for sid, _, _ in failure]
        pointer_of = {sid: ptr for sid, _, ptr in [*main, *failure]}
        cycles = graphs.find_cycles(graphs.build(order, deps), order) if graphs.has_cycle(order, deps) else []
        for cycle in cycles:
            self.add(
                pointer_of[cycle[0]],
                "dependency cycle: " + " -> ".join(cycle),
                "remove one of these dependencies (depends_on, a ref or a template name)",
            )
        if policy is not None and policy.schedule is not None:
            self._check_schedule_params(policy)
        if self.problems or policy is None:
            return None
        self.raw_steps = [*self.doc["steps"], *self.doc.get("on_failure", [])]
        return policy, deps

    # -- shape ---------------------------------------------------------------------------

    def _import_plugins(self) -> None:
        """Import the plugin modules of the step types and sections this document names, before
        anything reads the declared sections (a step's own sections get their defaults)."""
        core = {*Policy.model_fields, *(f.alias for f in Policy.model_fields.values() if f.alias)}
        for key in self.doc:
            if isinstance(key, str) and key not in core:
                policy_sections.get(key)
        for phase in ("steps", "on_failure"):
            raw = self.doc.get(phase)
            for step in raw if isinstance(raw, list) else []:
                if isinstance(step, dict) and isinstance(step.get("type"), str):
                    registry.get(step["type"])

    def _shape(self) -> Policy | None:
        self._import_plugins()
        declared = policy_sections.sections()
        core = {k: v for k, v in self.doc.items() if k not in declared}
        for name, section in declared.items():
            if name not in self.doc:
                self.sections[name] = section.default
                continue
            adapter = section.adapter
            value, errors = validate_literal(self.doc[name], adapter.validate_python, adapter.validate_json)
            self.sections[name] = value
            self.problems += model_errors.problems(errors, section.annotation, pointers.join("", name))
        policy, errors = validate_literal(core, Policy.model_validate, Policy.model_validate_json)
        for error in errors:
            problem = model_errors.problem(error, Policy, "")
            if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
                fields = sorted({f.alias or n for n, f in Policy.model_fields.items()} | set(declared))
                problem = dataclasses.replace(
                    problem, hint=did_you_mean(str(error["loc"][0]), fields) or f"allowed: {', '.join(fields)}"
                )
            self.problems.append(problem)
        return policy  # type: ignore[no-any-return]

    def _check_schedule_params(self, policy: Policy) -> None:
        """Scheduled runs get ``schedule.params``: they must be declared, typed, and complete."""
        assert policy.schedule is not None
        try:
            check_params(policy, policy.schedule.params)
        except PolicyError as exc:
            for problem in exc.problems:
                pointer = "/schedule" + problem.pointer if problem.pointer.startswith("/params/") else problem.pointer
                hint = problem.hint
                name = problem.pointer.removeprefix("/params/")
                if name in policy.params and name in policy.schedule.params:
                    hint = _unquote_hint(policy.params[name].type, policy.schedule.params[name]) or hint
                if problem.message.endswith("is required"):
                    pointer, hint = "/schedule/params", "give it a value in schedule.params (or a default)"
                self.problems.append(dataclasses.replace(problem, pointer=pointer, hint=hint))

    def _check_param_defaults(self, params: dict[str, Any]) -> None:
        for name, decl in params.items():
            ptr = pointers.join("/params", name)
            if not _PARAM_RE.match(name):
                self.add(
                    ptr, f"invalid parameter name {name!r}", "use letters, digits and _, not starting with a digit"
                )
            if isinstance(decl, dict) and "default" in decl and decl.get("type") in JSON_TYPES:
                default = decl["default"]
                if default is not None and not json_type_matches(decl["type"], default):
                    self.add(
                        pointers.join(ptr, "default"),
                        f"default {default!r} is not of type {decl['type']}",
                        _unquote_hint(decl["type"], default),
                    )

    def _steps(self, key: str) -> list[tuple[str, dict[str, Any], str]]:
        """(id, raw step, pointer) for each step object. A step whose id is unusable (the shape
        check reports it) is still checked, under its pointer as a stand-in id nothing can name."""
        raw_steps = self.doc.get(key)
        if not isinstance(raw_steps, list):
            return []
        out = []
        for i, raw in enumerate(raw_steps):
            if isinstance(raw, dict):
                sid = raw.get("id")
                usable = isinstance(sid, str) and _STEP_ID_RE.match(sid)
                out.append((sid if usable else f"/{key}/{i}", raw, f"/{key}/{i}"))
        return out

    def _check_unique(self, steps: list[tuple[str, dict[str, Any], str]]) -> None:
        first: dict[str, str] = {}
        for sid, _, ptr in steps:
            if sid.startswith("/"):
                continue  # a stand-in for an unusable id
            if sid in RESERVED_STEP_IDS:
                self.add(pointers.join(ptr, "id"), f"step id {sid!r} is reserved", "choose another id")
            if sid in first:
                self.add(pointers.join(ptr, "id"), f"duplicate step id {sid!r} (first used at {first[sid]})")
            else:
                first[sid] = ptr

    # -- one step --------------------------------------------------------------------------

    def _check_step(self, sid: str, raw: dict[str, Any], ptr: str, phase: str) -> list[str]:
        deps: list[str] = []
        visible = self.main_ids | self.failure_ids if phase == "on_failure" else self.main_ids
        ordering = self.failure_ids if phase == "on_failure" else self.main_ids

        def need(step_id: str, where: str, what: str) -> None:
            if step_id in visible:
                if step_id in ordering and step_id not in deps:
                    deps.append(step_id)
                return
            if step_id in self.failure_ids:
                self.add(
                    where,
                    f"{what} on_failure step {step_id!r} from a main step",
                    "main steps cannot use on_failure steps",
                )
                return
            hint = did_you_mean(step_id, sorted(v for v in visible if not v.startswith("/")))
            self.add(where, f"{what} unknown step {step_id!r}", hint)

        depends_on = raw.get("depends_on")
        if isinstance(depends_on, list):
            for i, dep in enumerate(depends_on):
                if isinstance(dep, str):
                    need(dep, pointers.join(ptr, "depends_on", i), "depends on")

        type_name = raw.get("type")
        step_type = registry.get(type_name) if isinstance(type_name, str) else None
        if step_type is None and isinstance(type_name, str):
            hint = did_you_mean(type_name, registry.names())
            self.add(
                pointers.join(ptr, "type"),
                f"unknown step type {type_name!r}",
                hint or "run 'engine steps' to list them",
            )
        elif step_type is not None:
            self._check_type_allowed(step_type, pointers.join(ptr, "type"))

        params = raw.get("params", {})
        if isinstance(params, dict):
            condition_fields = step_type.condition_fields() if step_type else frozenset()
            plain = {k: v for k, v in params.items() if k not in condition_fields}
            params_ptr = pointers.join(ptr, "params")

            def need_in_params(step_id: str, where: str, what: str) -> None:
                # in its own params a step may read its saved state: ctx.<own id>.<key> (no dependency)
                if step_id == sid and what in ("ref to", "template uses") and _keeps_state(step_type):
                    self.self_refs.add(sid)
                    return
                need(step_id, where, what)

            self._check_values(plain, params_ptr, sid, phase, need_in_params)
            for name in condition_fields & params.keys():
                self._check_condition(params[name], pointers.join(params_ptr, name), phase, need)
            if step_type is not None:
                self._check_params(step_type, params, params_ptr)
                self._run_check(step_type, sid, params, params_ptr)

        if raw.get("skip_if") is not None:
            cond = self._check_condition(raw["skip_if"], pointers.join(ptr, "skip_if"), phase, need)
            self.skip_conditions[sid] = cond
        else:
            self.skip_conditions[sid] = None
        return deps

    def _check_params(self, step_type: type[Step], params: dict[str, Any], ptr: str) -> None:
        # an expression may stand where a literal goes: drop errors at or below one
        expression_ptrs = [e.pointer for e in iter_expressions(params)]

        def at_expression(pointer: str) -> bool:
            return any(pointer == e or pointer.startswith(e + "/") for e in expression_ptrs)

        model = step_type.Params
        _, errors = validate_literal(params, model.model_validate, model.model_validate_json)
        self.problems += model_errors.problems(errors, model, ptr, data=params, skip=at_expression)

    def _check_type_allowed(self, step_type: type[Step], where: str) -> None:
        """The engine configuration may allow-list step types: ``[engine] allowed_step_types``."""
        if self._allowed_types is False:  # read once per validation
            self._allowed_types = allowed_step_types(self.config())
        allowed = self._allowed_types
        if allowed is not None and not any(fnmatch.fnmatchcase(step_type.type, p) for p in allowed):
            self.add(
                where,
                f"step type {step_type.type!r} is not allowed here (allowed: {', '.join(allowed) or 'none'})",
                "the engine configuration's [engine] allowed_step_types lists the types policies may use",
            )

    def _run_check(self, step_type: type[Step], sid: str, params: dict[str, Any], ptr: str) -> None:
        """The step type's own validation-time checks (Step.check), e.g. host allow-lists."""
        where = CheckContext(sid, ptr, self.sections, self.policy_dir, self.config)
        try:
            found = step_type.check(params, where)
        except ConfigError:
            raise
        except Exception as exc:  # a plugin bug must not hide the other problems
            found = [Problem("", f"{step_type.type} check failed: {type(exc).__name__}: {exc}")]
        for problem in found:
            self.problems.append(dataclasses.replace(problem, pointer=ptr + problem.pointer))

    def _check_values(self, params: Any, ptr: str, sid: str, phase: str, need: Any) -> None:
        for expr in iter_expressions(params, ptr):
            where = pointers.join(expr.pointer, expr.kind)
            if expr.kind == "ref":
                self._check_ref(expr.payload, where, phase, need)
            elif expr.kind == "template":
                self._check_template(expr.payload, where, phase, need)
            elif expr.kind == "secret":
                if not isinstance(expr.payload, str) or not SECRET_NAME.match(expr.payload):
                    self.add(
                        where,
                        f"invalid secret name {expr.payload!r}",
                        "name an environment variable, e.g. SMTP_PASSWORD",
                    )

    def _check_ref(self, text: Any, where: str, phase: str, need: Any, label: str | None = None) -> None:
        try:
            path = parse_ref(text)
        except ValueError as exc:
            self.add(where, str(exc))
            return
        label = label or f"ref {text!r}"
        root = path[0]
        if root == "params":
            if len(path) > 1 and path[1] not in self.declared_params:
                hint = did_you_mean(path[1], sorted(self.declared_params)) or "declare it under the policy's 'params'"
                self.add(where, f"{label}: unknown parameter {path[1]!r}", hint)
        elif root == "run":
            if len(path) > 1:
                if path[1] not in RUN_FIELDS:
                    self.add(where, f"{label}: ctx.run has no {path[1]!r}", f"ctx.run has: {', '.join(RUN_FIELDS)}")
                elif path[1] in ("error", "failed_steps") and phase != "on_failure":
                    self.add(where, f"{label}: ctx.run.{path[1]} is only set in on_failure steps")
        else:
            before = len(self.problems)
            need(root, where, "ref to")
            if len(self.problems) == before and len(path) > 1:
                self._check_output_field(root, path[1:], label, where)

    def _check_output_field(self, step_id: str, path: tuple[str, ...], label: str, where: str) -> None:
        """Walk ``path`` through the step type's declared Output model: fields of models, indexes
        of lists, keys of dicts. Anything typed more loosely (Any, unions) is not checked further."""
        step_type = self.types.get(step_id)
        current: Any = step_type.Output if step_type else None
        kind = step_type.type if step_type else "?"
        for depth, segment in enumerate(path):
            current = _strip_optional(current)
            origin = typing.get_origin(current)
            if isinstance(current, type) and issubclass(current, BaseModel):
                current.model_rebuild(raise_errors=False)  # resolve forward references once
                fields = {info.alias or name: info for name, info in current.model_fields.items()}
                if segment not in fields:
                    owner = "its output" if depth == 0 else ".".join(path[:depth])
                    hint = did_you_mean(segment, sorted(fields)) or f"{owner} has: {', '.join(sorted(fields))}"
                    self.add(where, f"{label}: step {step_id!r} ({kind}) has no output field {segment!r}", hint)
                    return
                current = fields[segment].annotation
            elif origin in (list, tuple) and typing.get_args(current):
                if not segment.lstrip("-").isdigit():
                    at = ".".join(path[:depth])
                    self.add(where, f"{label}: {at} of step {step_id!r} is a list; use an index, not {segment!r}")
                    return
                current = typing.get_args(current)[0]
            elif origin is dict and len(typing.get_args(current)) == 2:
                current = typing.get_args(current)[1]
            else:
                return

    def _check_template(self, source: Any, where: str, phase: str, need: Any) -> None:
        if not isinstance(source, str):
            self.add(where, "a template must be a string")
            return
        try:
            names, fields = template_reads(source)
        except Exception as exc:  # jinja2.TemplateSyntaxError
            line = getattr(exc, "lineno", None)
            self.add(
                where, f"template syntax error{f' on line {line}' if line else ''}: {getattr(exc, 'message', exc)}"
            )
            return
        known = {"params", "run"} | self.main_ids | self.failure_ids
        for root, field_name in sorted(fields):
            if root in names and root in known:
                # the same checks as a ref: declared params, known run fields, declared outputs
                path = f"{root}.{field_name}"
                self._check_ref(f"ctx.{path}", where, phase, need, label=f"template reads {path}")
        for name in sorted(names):
            if name in ("params", "run"):
                continue
            if name in self.main_ids or name in self.failure_ids:
                need(name, where, "template uses")
            else:
                choices = sorted({"params", "run", *(s for s in self.main_ids if not s.startswith("/"))})
                hint = did_you_mean(name, choices) or "templates can use params, run and step ids, also as ctx.NAME"
                self.add(where, f"template uses unknown name {name!r}", hint)

    def _check_condition(self, raw: Any, ptr: str, phase: str, need: Any) -> Condition | None:
        parser = ConditionParser()
        cond = parser.parse(raw, ptr)
        self.problems.extend(parser.problems)
        if cond is not None:
            for ref in cond.refs():
                self._check_ref("ctx." + ".".join(ref.path), ref.pointer, phase, need)
        return cond


def _strip_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; other annotations unchanged."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation
