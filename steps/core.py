"""Built-in ``core.*`` steps: constants, data gates and running a program."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import ConditionValue, Step, StepContext, StepError

_OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr kept in the output


class Value(Step, type="core.value", aliases=("value",)):
    """Return its ``value`` param, resolved: constants, or refs gathered into one object.

    Also the cheapest possible step, used by the benchmarks. Its output is the value itself,
    so ``{"ref": "ctx.STEP.field"}`` walks into it.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        value: Any = Field(None, description="Any JSON value; refs and templates inside are resolved.")
        delay_s: float = Field(0, ge=0, description="Wait this long first (for demos and benchmarks).")

    async def run(self, params: Params, ctx: StepContext) -> Any:
        if params.delay_s:
            import asyncio  # here, not at the top: `engine validate` of core steps never needs it

            await asyncio.sleep(params.delay_s)
        return params.value


class Assert(Step, type="core.assert", aliases=("assert",)):
    """Fail with ``message`` when ``condition`` is false: a data gate between stages."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        condition: ConditionValue = Field(description="A condition (see docs/conditions.md).")
        message: str = Field("assertion failed", description="The step's error when the condition is false.")

    class Output(BaseModel):
        passed: bool = Field(description="Always true: a false condition fails the step.")

    async def run(self, params: Params, ctx: StepContext) -> Output:
        if not ctx.evaluate(params.condition, f"{ctx.pointer}/params/condition"):
            raise StepError(params.message, retryable=False)
        return self.Output(passed=True)


class Shell(Step, type="core.shell", aliases=("shell",)):
    """Run a program (``argv``, never a shell string) and capture its output.

    A non-zero exit code fails the step. With ``parse_json`` the step's ``json`` output is
    the parsed standard output. This step has side effects: a dry run previews it instead,
    unless ``read_only`` says the command only reads and prints.
    """

    side_effects = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        argv: list[str] = Field(min_length=1, description="The program and its arguments.")
        cwd: str | None = Field(None, description="Working directory; relative to the policy file's folder.")
        env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
        parse_json: bool = Field(False, description="Parse standard output as JSON into 'json'.")
        read_only: bool = Field(
            False,
            description="The command changes nothing outside the run (it only reads and prints): "
            "a dry run executes it instead of previewing it.",
        )

    class Output(BaseModel):
        exit_code: int
        stdout: str = Field(description=f"Standard output, at most {_OUTPUT_LIMIT} bytes.")
        stderr: str = Field(description=f"Standard error, at most {_OUTPUT_LIMIT} bytes.")
        json_: Any = Field(None, alias="json", description="Parsed standard output when parse_json is true.")
        truncated: bool = Field(False, description="True when stdout or stderr was cut.")

    @classmethod
    def has_side_effects(cls, params: Any) -> bool:
        return not params.read_only

    async def run(self, params: Params, ctx: StepContext) -> Output:
        cwd = self._cwd(params, ctx)
        if cwd is not None and not cwd.is_dir():
            raise StepError(f"cwd {str(cwd)!r} is not a folder (at {ctx.pointer}/params/cwd)", retryable=False)
        import asyncio

        try:
            proc = await asyncio.create_subprocess_exec(
                *params.argv,
                cwd=cwd,
                env={**os.environ, **params.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise StepError(f"cannot start {params.argv[0]!r}: {exc.strerror}", retryable=False) from exc
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        stdout, cut_out = _bounded(out)
        stderr, cut_err = _bounded(err)
        if proc.returncode != 0:
            tail = stderr.strip()[-500:] or stdout.strip()[-500:]
            raise StepError(f"{params.argv[0]} exited with code {proc.returncode}" + (f": {tail}" if tail else ""))
        parsed = None
        if params.parse_json:
            try:
                parsed = json.loads(out)
            except json.JSONDecodeError as exc:
                raise StepError(
                    f"stdout is not JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}", retryable=False
                ) from exc
        return self.Output(
            exit_code=proc.returncode, stdout=stdout, stderr=stderr, json=parsed, truncated=cut_out or cut_err
        )

    def preview(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        """The Output's fields, empty, plus what would run (env values are not shown)."""
        return {
            "exit_code": 0,
            "stdout": "",
            "stderr": "",
            "json": None,
            "truncated": False,
            "would_run": params.argv,
            "cwd": str(self._cwd(params, ctx) or Path.cwd()),
            "env": sorted(params.env),
        }

    @staticmethod
    def _cwd(params: Params, ctx: StepContext) -> Path | None:
        if params.cwd is None:
            return ctx.policy_dir
        path = Path(params.cwd)
        return path if path.is_absolute() or ctx.policy_dir is None else ctx.policy_dir / path


def _bounded(data: bytes) -> tuple[str, bool]:
    cut = len(data) > _OUTPUT_LIMIT
    return data[:_OUTPUT_LIMIT].decode("utf-8", errors="replace"), cut
