"""Step types used by the tests (import with ``--plugin tests.stepkit``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from engine import Step, StepContext, StepError


class Concurrency:
    """Counts how many ``test.sleep`` steps run at once (in this process)."""

    current = 0
    peak = 0
    order: list[str] = []

    @classmethod
    def reset(cls) -> None:
        cls.current = cls.peak = 0
        cls.order = []


class Sleep(Step, type="test.sleep"):
    """Sleep ``seconds``, return ``value``; records concurrency and start order."""

    class Params(BaseModel):
        seconds: float = 0.0
        value: Any = None

    async def run(self, params: Params, ctx: StepContext) -> Any:
        Concurrency.current += 1
        Concurrency.peak = max(Concurrency.peak, Concurrency.current)
        Concurrency.order.append(ctx.step_id)
        try:
            await asyncio.sleep(params.seconds)
        finally:
            Concurrency.current -= 1
        return params.value


class SyncSleep(Step, type="test.sync_sleep"):
    """A plain ``def run``: the engine runs it in a worker thread."""

    class Params(BaseModel):
        seconds: float = 0.0

    def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        time.sleep(params.seconds)
        return {"slept": params.seconds}


class Flaky(Step, type="test.flaky"):
    """Fail the first ``fail_times`` calls (counted in ``counter_file``), then succeed."""

    class Params(BaseModel):
        counter_file: str
        fail_times: int = 1
        retryable: bool = True

    async def run(self, params: Params, ctx: StepContext) -> dict[str, int]:
        path = Path(params.counter_file)
        calls = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(calls))
        if calls <= params.fail_times:
            raise StepError(f"flaky failure {calls}", retryable=params.retryable)
        return {"calls": calls}


class Fail(Step, type="test.fail"):
    """Always fail with ``message``."""

    class Params(BaseModel):
        message: str = "boom"
        retryable: bool = True

    async def run(self, params: Params, ctx: StepContext) -> None:
        raise StepError(params.message, retryable=params.retryable)


class Crash(Step, type="test.crash"):
    """Raise a plain exception (a bug in a step)."""

    class Params(BaseModel):
        pass

    async def run(self, params: Params, ctx: StepContext) -> None:
        raise ZeroDivisionError("division by zero")


class Effect(Step, type="test.effect"):
    """A side effect: append a line to ``path``. A dry run previews it."""

    side_effects = True

    class Params(BaseModel):
        path: str
        line: str = "done"

    async def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        with open(params.path, "a", encoding="utf-8") as fh:
            fh.write(params.line + "\n")
        return {"written": params.path}

    def preview(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        return {"would_write": params.path, "line": params.line}


class Typed(Step, type="test.typed"):
    """Has a declared Output model, for ref checks."""

    class Params(BaseModel):
        count: int = 0
        label: str = "x"

    class Item(BaseModel):
        name: str
        amount: float

    class Output(BaseModel):
        count: int
        label: str
        items: list[Typed.Item] = Field(default_factory=list)

    async def run(self, params: Params, ctx: StepContext) -> Output:
        items = [self.Item(name=f"n{i}", amount=float(i)) for i in range(params.count)]
        return self.Output(count=params.count, label=params.label, items=items)


class Frame(Step, type="test.frame"):
    """Return a pandas DataFrame with ``rows`` rows."""

    class Params(BaseModel):
        rows: int = 3

    async def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        import pandas as pd

        frame = pd.DataFrame({"n": list(range(params.rows)), "sq": [i * i for i in range(params.rows)]})
        return {"frame": frame, "rows": params.rows}


class Echo(Step, type="test.echo"):
    """Return its ``text`` param (used to check secret redaction)."""

    class Params(BaseModel):
        text: str

    async def run(self, params: Params, ctx: StepContext) -> dict[str, str]:
        ctx.log.info("echo", text=params.text)
        if params.text.startswith("fail:"):
            raise StepError(f"failed with {params.text}")
        return {"text": params.text}


# -- added for tests/engine -------------------------------------------------------------------


class FrameStats(Step, type="test.frame_stats"):
    """Summarise a DataFrame param (proves a resumed run gets a real DataFrame back)."""

    class Params(BaseModel):
        frame: Any

    async def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        frame = params.frame
        return {"type": type(frame).__name__, "rows": len(frame), "sq_sum": int(frame["sq"].sum())}


class RawEffect(Step, type="test.raw_effect"):
    """A side effect without a ``preview`` method: a dry run shows the engine's default preview."""

    side_effects = True

    class Params(BaseModel):
        path: str
        token: str = ""

    def run(self, params: Params, ctx: StepContext) -> dict[str, str]:
        Path(params.path).write_text(params.token, encoding="utf-8")
        return {"written": params.path}


class NestedLog(Step, type="test.nested_log"):
    """Put ``text`` inside nested log fields and/or use it as a key of the output."""

    class Params(BaseModel):
        text: str
        log_nested: bool = False
        as_key: bool = False

    async def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        if params.log_nested:
            ctx.log.info("nested", data={"text": params.text}, items=[params.text])
        return {"keys": {params.text: True}} if params.as_key else {"ok": True}


class Unstorable(Step, type="test.unstorable"):
    """Return a value the output store cannot hold."""

    class Params(BaseModel):
        pass

    async def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        return {"thing": object()}


class BadTyped(Step, type="test.bad_typed"):
    """Declare an Output model and return something that does not match it."""

    class Params(BaseModel):
        pass

    class Output(BaseModel):
        count: int

    async def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        return {"count": "many"}


class Info(Step, type="test.info"):
    """Return what the step sees of its context."""

    class Params(BaseModel):
        pass

    async def run(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        return {
            "run_id": ctx.run_id,
            "step_id": ctx.step_id,
            "attempt": ctx.attempt,
            "dry_run": ctx.dry_run,
            "run": dict(ctx.run),
            "params": dict(ctx.params),
        }


class AttemptAware(Step, type="test.attempt"):
    """Fail until ``ctx.attempt`` reaches ``succeed_on``; return the step and run attempt numbers."""

    class Params(BaseModel):
        succeed_on: int = 1

    async def run(self, params: Params, ctx: StepContext) -> dict[str, int]:
        if ctx.attempt < params.succeed_on:
            raise StepError(f"attempt {ctx.attempt} is too early")
        return {"attempt": ctx.attempt, "run_attempt": ctx.run["attempt"]}


class Artifact(Step, type="test.artifact"):
    """Store ``text`` as a file artifact through ``ctx.artifacts`` and return its reference."""

    class Params(BaseModel):
        text: str
        name: str = "report.html"

    async def run(self, params: Params, ctx: StepContext) -> Any:
        return ctx.artifacts.put_bytes(params.text.encode(), "text/html", name=params.name)


# -- plugin surface: policy sections, validation checks, plugin tables --------------------

import sqlalchemy as sa  # noqa: E402

from engine import CheckContext, Problem, is_expression, policy_section  # noqa: E402


class Limit(BaseModel):
    model_config = {"extra": "forbid"}
    per_run: int = Field(ge=1)


policy_section("test_targets", list[str], "Targets test.target may name.", default=["a"])
policy_section("test_limits", dict[str, Limit], "Per-target limits for test.target.", default={})

visits_metadata = sa.MetaData()
visits = sa.Table(
    "test_visits",
    visits_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(100), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
)


class Target(Step, type="test.target"):
    """Visit a target allowed by the policy's ``test_targets`` or engine config ``[test] targets``."""

    class Params(BaseModel):
        target: str

    class Output(BaseModel):
        target: str
        limit: int | None
        visits: int

    @classmethod
    def check(cls, params: dict[str, Any], where: CheckContext) -> list[Problem]:
        target = params.get("target")
        if not isinstance(target, str) or is_expression(target):
            return []
        allowed = [*where.sections["test_targets"], *where.config.section("test").get("targets", [])]
        if target not in allowed:
            return [Problem("/target", f"target {target!r} is not allowed", f"allowed: {', '.join(allowed)}")]
        return []

    def run(self, params: Params, ctx: StepContext) -> Output:
        db = ctx.database(visits_metadata)
        with db.begin() as conn:
            conn.execute(visits.insert().values(target=params.target, run_id=ctx.run_id))
            count = conn.execute(sa.select(sa.func.count()).where(visits.c.target == params.target)).scalar_one()
        limit = ctx.sections["test_limits"].get(params.target)
        return self.Output(target=params.target, limit=limit.per_run if limit else None, visits=count)


class Stubborn(Step, type="test.stubborn"):
    """Ignores cancellation: on CancelledError it sleeps ``linger`` more seconds (a hung clean-up)."""

    class Params(BaseModel):
        linger: float = 60.0

    async def run(self, params: Params, ctx: StepContext) -> Any:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(params.linger)
        return None


class Child(Step, type="test.child"):
    """A plain ``def run`` that starts a child process (as a browser would) and waits for it.

    Writes the child's pid to ``pid_file`` once it runs."""

    class Params(BaseModel):
        pid_file: str
        seconds: float = 300.0

    def run(self, params: Params, ctx: StepContext) -> Any:
        import subprocess

        proc = subprocess.Popen(["sleep", str(params.seconds)])
        written = Path(params.pid_file + ".tmp")
        written.write_text(str(proc.pid))
        written.replace(params.pid_file)  # whole: a test polling for the file never reads it empty
        proc.wait()
        return None
