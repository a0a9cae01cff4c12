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
