"""An example step plugin: ``demo.greet`` and ``demo.write_text`` (see docs/writing-steps.md).

Load it with ``engine --plugin greet_steps ...`` (the folder holding this file must be on
PYTHONPATH), with ``ENGINE_PLUGINS=greet_steps``, or through an ``engine.steps`` entry point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import ConditionValue, Step, StepContext, StepError


class Greet(Step, type="demo.greet", aliases=("greet",)):
    """Build a greeting for one person.

    A pure step: no side effects, so a dry run executes it normally.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")  # a misspelt param is a validation error
        name: str = Field(description="Who to greet.")
        greeting: str = Field("Hello", description="The word to greet with.")
        shout: bool = Field(False, description="Upper-case the whole text.")

    class Output(BaseModel):
        text: str = Field(description="The greeting, e.g. 'Hello, Ada!'.")
        length: int = Field(description="Number of characters in text.")

    async def run(self, params: Params, ctx: StepContext) -> Output:
        if not params.name.strip():
            # retryable=False: trying again with the same params cannot help
            raise StepError("name is empty", retryable=False)
        text = f"{params.greeting}, {params.name}!"
        if params.shout:
            text = text.upper()
        ctx.log.info("greet.built", length=len(text))
        return self.Output(text=text, length=len(text))


class WriteText(Step, type="demo.write_text"):
    """Write text to a file and keep a copy in the artifact store.

    Has side effects: a dry run calls ``preview`` instead of ``run``. A relative ``path``
    is taken from the directory the engine runs in.
    """

    side_effects = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str = Field(description="The file to write.")
        text: str = Field(description="What to write into it.")
        only_if: ConditionValue = Field(True, description="A condition; the file is written only when it is true.")

    class Output(BaseModel):
        path: str = Field(description="Absolute path of the file.")
        written: bool = Field(description="False when only_if was false.")
        size: int = Field(description="Bytes written.")
        sha256: str | None = Field(description="SHA-256 of the content (the artifact's name).")

    def run(self, params: Params, ctx: StepContext) -> Output:  # a plain def: runs in a worker thread
        target = Path(params.path).resolve()
        if not ctx.evaluate(params.only_if, f"{ctx.pointer}/params/only_if"):
            return self.Output(path=str(target), written=False, size=0, sha256=None)
        data = params.text.encode("utf-8")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError as exc:
            # retryable (the default): a full disk or a network share may recover
            raise StepError(f"cannot write {target}: {exc.strerror}") from exc
        artifact = ctx.artifacts.put_bytes(data, "text/plain", name=target.name)
        ctx.log.info("write_text.done", path=str(target), size=len(data), attempt=ctx.attempt)
        return self.Output(path=str(target), written=True, size=len(data), sha256=artifact.sha256)

    def preview(self, params: Params, ctx: StepContext) -> dict[str, Any]:
        """What run would do. Same fields as Output, so steps downstream still work."""
        return {
            "path": str(Path(params.path).resolve()),
            "written": False,
            "size": len(params.text.encode("utf-8")),
            "sha256": None,
            "would_write": params.text,
        }
