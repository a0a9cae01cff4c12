"""``fetch.file``: read a local CSV, JSON, JSONL or Parquet file into a DataFrame (or JSON)."""

from __future__ import annotations

import io
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import CheckContext, Problem, Step, StepContext, StepError

from . import paths, reach
from .envelope import FetchEnvelope, sha256_hex, utc_now

Format = Literal["csv", "json", "jsonl", "parquet"]
_BY_SUFFIX: dict[str, Format] = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_MEDIA = {
    "csv": "text/csv",
    "json": "application/json",
    "jsonl": "application/jsonl",
    "parquet": "application/vnd.apache.parquet",
}


class FetchFile(Step, type="fetch.file"):
    """Read a local CSV, JSON, JSONL or Parquet file into a DataFrame (or parsed JSON with ``as: json``).

    The path is relative to the policy file's folder unless it is absolute; it must be inside
    ``[fetch] allowed_paths`` when the engine configuration sets it, and never in the engine's
    state directory. The output is the fetch envelope: ``data`` plus the file's URI, its SHA-256 and when it was read.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)
        path: str = Field(description="The file; relative to the policy file's folder unless absolute.")
        format: Format | None = Field(None, description="csv, json, jsonl or parquet; default: from the file's suffix.")
        as_: Literal["frame", "json"] = Field(
            "frame", alias="as", description="'frame' for a DataFrame, 'json' for the parsed JSON (json/jsonl only)."
        )
        record_path: str | None = Field(
            None, description="For JSON: dotted path to the list of records inside the document, e.g. 'data.items'."
        )
        delimiter: str = Field(",", description="CSV field delimiter.")
        encoding: str = Field("utf-8", description="Text encoding of CSV/JSON files.")
        columns: list[str] | None = Field(None, description="Keep only these columns, in this order.")
        text_columns: list[str] = Field(
            default_factory=list,
            description="CSV columns read as text, exactly as written (money: cast them to decimal after).",
        )

    Output = FetchEnvelope

    @classmethod
    def check(cls, params: dict[str, Any], where: CheckContext) -> list[Problem]:
        return reach.check(params, "path", where)

    def run(self, params: Params, ctx: StepContext) -> FetchEnvelope:
        pointer = f"{ctx.pointer}/params/path"
        path = reach.checked(params.path, pointer, ctx.policy_dir, ctx.config, ctx.artifacts.shared_dir)
        fmt = params.format or _BY_SUFFIX.get(path.suffix.lower())
        if fmt is None:
            raise StepError(
                f"cannot tell the format of {path.name!r} from its suffix: set params.format "
                "(csv, json, jsonl or parquet)",
                retryable=False,
            )
        if params.as_ == "json" and fmt not in ("json", "jsonl"):
            raise StepError(f"'as: json' needs a json or jsonl file, not {fmt}", retryable=False)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise StepError(
                f"file not found: {path} (params.path {params.path!r}, relative to the policy's "
                "folder unless absolute)",
                retryable=False,
            ) from None
        except OSError as exc:
            raise StepError(f"cannot read {path}: {exc.strerror}", retryable=False) from None
        try:
            data = self._parse(raw, fmt, params)
        except StepError:
            raise
        except Exception as exc:  # the parsers' many error types: one message that names the file
            raise StepError(f"cannot parse {path.name} as {fmt}: {type(exc).__name__}: {exc}", retryable=False) from exc
        return FetchEnvelope(
            data=data,
            content_type=_MEDIA[fmt],
            url=path.resolve().as_uri(),
            fetched_at=utc_now(),
            content_hash=sha256_hex(raw),
        )

    def _parse(self, raw: bytes, fmt: Format, params: Params) -> Any:
        import pandas as pd

        if fmt == "csv":
            frame = pd.read_csv(
                io.BytesIO(raw),
                sep=params.delimiter,
                encoding=params.encoding,
                dtype={name: "string" for name in params.text_columns} or None,
            )
        elif fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
        else:
            text = raw.decode(params.encoding)
            if fmt == "json":
                document = json.loads(text)
            else:
                document = [json.loads(line) for line in text.splitlines() if line.strip()]
            document = _walk(document, params.record_path)
            if params.as_ == "json":
                return document
            if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
                hint = " (set record_path to the list inside it)" if isinstance(document, dict) else ""
                raise StepError(
                    f"a DataFrame needs a list of objects; the JSON is a {type(document).__name__}{hint}",
                    retryable=False,
                )
            frame = pd.DataFrame.from_records(document)
        if params.columns is not None:
            missing = [c for c in params.columns if c not in frame.columns]
            if missing:
                raise StepError(
                    f"columns {missing} are not in the file (it has: {', '.join(map(str, frame.columns))})",
                    retryable=False,
                )
            frame = frame[params.columns]
        return frame


def _walk(document: Any, record_path: str | None) -> Any:
    if not record_path:
        return document
    try:
        return paths.lookup(document, record_path)
    except KeyError as exc:
        raise StepError(f"record_path {record_path!r}: {exc.args[0]}", retryable=False) from None
