"""The step plugin API: subclass :class:`Step` with a ``type=`` keyword and it is registered.

from pydantic import BaseModel
from engine import Step, StepContext

class Greet(Step, type="demo.greet", aliases=("greet",)):
    '''Say hello to someone (this docstring is the step's description).'''

    class Params(BaseModel):
        name: str

    class Output(BaseModel):
        greeting: str

    async def run(self, params: Params, ctx: StepContext) -> Output:
        return self.Output(greeting=f"Hello, {params.name}!")
"""

from __future__ import annotations

import builtins
import inspect
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, WithJsonSchema

from . import plugins
from .config import EngineConfig
from .errors import Problem, RegistryError, StepError
from .resources import RunResources

if TYPE_CHECKING:
    import sqlalchemy

    from .artifacts import ArtifactStore


class _ConditionMarker:
    """Marks a Params field that holds a condition: left unresolved, evaluated by the step."""

    def __repr__(self) -> str:
        return "ConditionValue"


CONDITION_MARKER = _ConditionMarker()
ConditionValue = Annotated[
    Any,
    CONDITION_MARKER,
    WithJsonSchema({"x-engine-condition": True}),  # becomes a $ref to the Condition schema
]
"""Type for a Params field that takes a condition (see docs/conditions.md)."""


class SavedState:
    """Values a step keeps from one run of its policy to the next, such as an incremental cursor.

    ``get`` reads what the last SUCCESSFUL run committed; ``stage`` sets a new value that the
    engine commits only if this run ends SUCCESS (and is not a dry run), so a failed run never
    moves a high-water mark past rows it did not deliver. Values must be JSON.
    """

    def __init__(self, load: Callable[[], dict[str, Any]]) -> None:
        self._load = load
        self._committed: dict[str, Any] | None = None
        self.staged: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if self._committed is None:
            self._committed = self._load()
        return self._committed.get(key, default)

    def stage(self, key: str, value: Any) -> None:
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise StepError(f"state {key!r}: {type(value).__name__} is not JSON", retryable=False) from None
        self.staged[key] = value


@dataclass
class StepContext:
    """What a running step gets besides its params.

    Attributes: ``run_id``, ``step_id``, ``attempt`` (1 for the first try of this step in
    this run attempt), ``run`` (the ``ctx.run`` mapping), ``params`` (the run parameters),
    ``dry_run``, ``log`` (a structlog logger bound to run and step), ``artifacts`` (the
    content-addressed store), ``preview_dir`` (where a dry run writes previews),
    ``policy_dir`` (the policy file's folder, for relative paths), ``pointer`` (the step's
    JSON pointer in the policy, e.g. ``/steps/3``, for error messages), ``state`` (values kept
    between runs of the policy, committed only by a successful run: see :class:`SavedState`),
    ``sections`` (the policy's plugin sections such as ``rate_limits``, validated, defaults
    filled in: see :func:`engine.policy_section`), ``config`` (the engine configuration:
    ``config.section("fetch")``), ``policy_id``.
    """

    run_id: str
    step_id: str
    attempt: int
    run: dict[str, Any]
    params: dict[str, Any]
    dry_run: bool
    log: Any
    artifacts: ArtifactStore
    preview_dir: Path | None = None
    policy_dir: Path | None = None
    pointer: str = ""
    state: SavedState = field(default_factory=lambda: SavedState(dict))
    sections: Mapping[str, Any] = field(default_factory=dict)
    config: EngineConfig = field(default_factory=EngineConfig)
    policy_id: str = ""
    _evaluate: Callable[[Any, str], bool] | None = field(default=None, repr=False)
    _database: Callable[[Any], Any] | None = field(default=None, repr=False)
    _resources: RunResources | None = field(default=None, repr=False)
    actor: str = ""
    _quota: Callable[[str, int], None] | None = field(default=None, repr=False)
    _audit: Callable[[str, dict[str, Any]], None] | None = field(default=None, repr=False)
    _audit_head: Callable[[], tuple[int, str] | None] | None = field(default=None, repr=False)
    _leases: Any = field(default=None, repr=False)

    @property
    def leases(self) -> Any:
        """This process's leases on the state database (:class:`engine.leases.Leases`), or None
        outside a run. A plugin's claims table with ``owner`` and ``expires_at`` columns registered
        with ``leases.hold(table)`` is renewed by the heartbeat; ``leases.expired(row)`` says whether
        another process's claim may be taken over."""
        return self._leases

    def audit_head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the audit log's newest entry when ``[governance] audit_head_in_reports``
        is on, else None: what a report footer or an ``X-Audit-Head`` header carries, so that
        recipients hold copies of the chain's head. Blocking: from async code use a thread."""
        return self._audit_head() if self._audit_head is not None else None

    def use_quota(self, name: str, count: int = 1) -> None:
        """Count ``count`` uses of quota ``name`` (``emails_per_day``) for the run's actor.

        Raises :class:`engine.QuotaExceeded` (its message names the quota and when the next use is
        allowed) when the actor reached ``[quotas] name``; the refusal is audited. A dry run counts
        nothing. Blocking (a database write): from async code, ``await asyncio.to_thread(...)``.
        """
        if self._quota is not None:
            self._quota(name, count)

    def audit(self, action: str, details: Mapping[str, Any]) -> None:
        """Append an entry to the audit log: ``action`` (``delivery.sent``), subject the run id,
        ``details`` with the policy and step ids added. Never put secrets or personal data in it.
        Blocking: from async code, ``await asyncio.to_thread(...)``."""
        if self._audit is not None:
            self._audit(action, dict(details))

    async def shared(self, key: str, factory: Callable[[], AbstractAsyncContextManager[Any]]) -> Any:
        """An object every step of this run shares, such as a browser: opened on first use, closed at run end.

        The first call with ``key`` enters ``factory()`` (an async context manager) and returns
        what it yields; later calls in the same run return the same object; the run exits it when
        it ends, however it ends. Prefix ``key`` with your stage (``"render.browser"``). A context
        made outside a run (a step called directly in a test) keeps its own shared objects until
        ``await ctx.close_shared()``.
        """
        if self._resources is None:
            self._resources = RunResources()
        return await self._resources.get(key, factory)

    async def close_shared(self) -> None:
        """Close the shared objects of a context made outside a run (the runner closes a run's own)."""
        if self._resources is not None:
            await self._resources.aclose(self.log)

    def database(self, metadata: sqlalchemy.MetaData) -> sqlalchemy.Engine:
        """The engine's own database, with ``metadata``'s tables created if they do not exist.

        For plugins that keep records beside the run state (a fetch cache, delivery records):
        define tables on a ``MetaData`` of your own, with names prefixed by your stage, and
        use plain SQLAlchemy Core on the returned engine. Writes are short transactions; from
        async code, run them with ``asyncio.to_thread``.
        """
        if self._database is None:
            raise StepError("no state database is attached to this step context", retryable=False)
        return self._database(metadata)  # type: ignore[no-any-return]

    def evaluate(self, condition: Any, where: str = "") -> bool:
        """Evaluate a condition (a ``ConditionValue`` param) against the run context.

        ``where`` names it in error messages, e.g. ``f"{ctx.pointer}/params/condition"``.
        """
        assert self._evaluate is not None
        return self._evaluate(condition, where or self.pointer)


@dataclass
class CheckContext:
    """What :meth:`Step.check` gets at validation time.

    ``step_id``, ``pointer`` (the step's params, e.g. ``/steps/3/params``), ``sections`` (the
    policy's plugin sections, validated, defaults filled in), ``policy_dir``, and ``config``
    (the engine configuration, read on first use).
    """

    step_id: str
    pointer: str
    sections: Mapping[str, Any]
    policy_dir: Path | None = None
    _config: Callable[[], EngineConfig] = field(default=EngineConfig.load, repr=False)
    _loaded: EngineConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> EngineConfig:
        if self._loaded is None:
            self._loaded = self._config()
        return self._loaded


class Step:
    """Base class of step types. See the module docstring and docs/writing-steps.md."""

    type: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    side_effects: ClassVar[bool] = False
    Params: ClassVar[builtins.type[BaseModel]]
    Output: ClassVar[builtins.type[BaseModel] | None] = None
    run_is_async: ClassVar[bool]
    preview_is_async: ClassVar[bool]
    _condition_fields: ClassVar[frozenset[str] | None] = None

    def __init_subclass__(
        cls, *, type: str | None = None, aliases: tuple[str, ...] | list[str] = (), **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type is None:  # an abstract intermediate base
            return
        params = cls.__dict__.get("Params", getattr(cls, "Params", None))
        if not (isinstance(params, builtins.type) and issubclass(params, BaseModel)):
            raise RegistryError(f"step type {type!r} ({_where(cls)}) needs an inner 'class Params(BaseModel)'")
        output = getattr(cls, "Output", None)
        if output is not None and not (isinstance(output, builtins.type) and issubclass(output, BaseModel)):
            raise RegistryError(f"step type {type!r} ({_where(cls)}): Output must be a pydantic model")
        if getattr(cls, "run", None) is Step.run:
            raise RegistryError(f"step type {type!r} ({_where(cls)}) needs a 'run(self, params, ctx)' method")
        if params.model_config.get("extra") is None and "Params" in cls.__dict__:
            # unknown params are errors, as unknown fields are everywhere in a policy
            cls.Params = builtins.type(
                params.__name__,
                (params,),
                {
                    "model_config": ConfigDict(extra="forbid"),
                    "__module__": params.__module__,
                    "__qualname__": params.__qualname__,
                    "__doc__": params.__doc__,
                },
            )
        cls.type = type
        cls.aliases = tuple(aliases)
        cls.run_is_async = inspect.iscoroutinefunction(cls.run)
        cls.preview_is_async = inspect.iscoroutinefunction(getattr(cls, "preview", None))
        registry.register(cls)

    @classmethod
    def description(cls) -> str:
        return inspect.getdoc(cls) or ""

    @classmethod
    def condition_fields(cls) -> frozenset[str]:
        """Names of Params fields typed ``ConditionValue`` (computed once per class)."""
        cached = cls.__dict__.get("_condition_fields")
        if cached is None:
            cached = frozenset(n for n, info in cls.Params.model_fields.items() if CONDITION_MARKER in info.metadata)
            cls._condition_fields = cached
        return cached

    @classmethod
    def has_side_effects(cls, params: Any) -> bool:
        """Whether running with these (validated) params changes anything outside the run.

        Defaults to the class's ``side_effects``; a step type whose params can make it read-only
        (``core.shell`` with ``read_only: true``) overrides this. A dry run previews a step
        exactly when this is true.
        """
        return cls.side_effects

    @classmethod
    def check(cls, params: dict[str, Any], where: CheckContext) -> list[Problem]:
        """Validation-time checks beyond the Params model, such as an allow-list.

        ``params`` are the step's params as written: a value may still be an expression
        (``{"ref": ...}``, see :func:`engine.is_expression`), which a check should leave to run
        time. Return problems with pointers relative to the params (``"/url"``); the engine
        prefixes the step's location. The default checks nothing.
        """
        return []

    @classmethod
    def initial_state(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Saved-state values before any run of the policy succeeded, by key.

        In its own params a step can read its saved state as ``ctx.<its id>.<key>`` (e.g.
        ``{"ref": "ctx.orders.cursor"}``): the value the last successful run committed with
        ``ctx.state.stage``, else the one this returns. ``params`` are as written (values may be
        expressions; they are resolved). The default is none.
        """
        return {}

    def run(self, params: Any, ctx: StepContext) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    # A step with side effects may define ``preview(self, params, ctx)`` (sync or async),
    # returning what it would do; a dry run uses it instead of ``run``.


def _where(cls: type) -> str:
    try:
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return f"{cls.__module__}.{cls.__qualname__}"
    return f"{cls.__module__}:{line}"


class Registry:
    """Step types by name and alias. A name registered twice by different classes raises."""

    def __init__(self) -> None:
        self._types: dict[str, type[Step]] = {}
        self._by_name: dict[str, type[Step]] = {}

    def register(self, cls: type[Step]) -> None:
        for name in (cls.type, *cls.aliases):
            existing = self._by_name.get(name)
            if existing is not None and not _same_class(existing, cls):
                raise RegistryError(
                    f"step type {name!r} is registered twice: by {existing.__qualname__} ({_where(existing)}) "
                    f"and by {cls.__qualname__} ({_where(cls)})"
                )
        # a re-imported module (same module and class name) replaces its earlier class
        old = self._types.get(cls.type)
        if old is not None:
            for name in (old.type, *old.aliases):
                self._by_name.pop(name, None)
        self._types[cls.type] = cls
        for name in (cls.type, *cls.aliases):
            self._by_name[name] = cls

    def unregister(self, name: str) -> None:
        cls = self._types.pop(name)
        for alias in (cls.type, *cls.aliases):
            self._by_name.pop(alias, None)

    def get(self, name: str) -> type[Step] | None:
        """The step type called ``name`` (or an alias), importing its plugin module on first use."""
        cls = self._by_name.get(name)
        if cls is None:
            plugins.load_step_type(name)
            cls = self._by_name.get(name)
        return cls

    def names(self) -> list[str]:
        """Every installed type name and alias (imports every plugin module)."""
        plugins.load_all()
        return sorted(self._by_name)

    def types(self) -> list[type[Step]]:
        """Every installed step type (imports every plugin module)."""
        plugins.load_all()
        return [self._types[name] for name in sorted(self._types)]


def _same_class(a: type, b: type) -> bool:
    return a is b or (a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__)


registry = Registry()
