"""``fetch.http``: GET or POST an allowed host, politely: rate limits, retries, a cache, pagination.

Each request of a step goes through, in order: the allow-list (also for every page and every
redirect), the response cache (a fresh entry answers without a request), the host's gate (its
concurrency cap and leaky bucket, shared by every step that calls that host), and tenacity
retries for connection errors, 429 and 5xx (exponential backoff with jitter, honouring
``Retry-After``). Other 4xx responses fail at once with the status and a snippet of the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from engine import CheckContext, Problem, Step, StepContext, StepError, is_expression, mask_secret_query

from . import cache, hosts, paths
from .envelope import FetchEnvelope, frame_high_water, initial_cursor, sha256_hex, utc_now

Format = Literal["json", "csv", "text", "bytes"]
_SNIPPET = 300
USER_AGENT = "policy-engine/0.1 (fetch.http)"


class Paginate(BaseModel):
    """Follow pages: by a next link (the ``Link`` header or a JSON path) or by a cursor."""

    model_config = ConfigDict(extra="forbid")
    next_link: str | None = Field(
        None, description="'header' for the Link header's rel=next, or a JSON path to the next page's URL."
    )
    cursor: str | None = Field(None, description="JSON path to the next page's cursor in each response.")
    cursor_param: str = Field("cursor", description="With cursor: the query parameter the cursor is sent in.")
    max_pages: int = Field(10, ge=1, le=10_000, description="Stop after this many pages (a warning says so).")

    @model_validator(mode="after")
    def _one_mode(self) -> Paginate:
        if (self.next_link is None) == (self.cursor is None):
            raise ValueError("set exactly one of next_link or cursor")
        return self


class Incremental(BaseModel):
    """Fetch only what is new since the last successful run."""

    model_config = ConfigDict(extra="forbid")
    cursor_field: str = Field(description="The record field whose largest value becomes the next cursor.")
    initial_value: Any = Field(description="The cursor of the first run (before any run succeeded).")
    query_param: str | None = Field(
        None, description="Send the cursor as this query parameter; without it the URL must contain {cursor}."
    )


class Retries(BaseModel):
    """Retries inside one attempt of the step, for connection errors, 429 and 5xx."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(4, ge=1, le=20, description="Tries per request in all (1: no retries).")
    backoff_s: float = Field(0.5, ge=0, description="First backoff; doubles per try, with jitter.")
    max_backoff_s: float = Field(30, ge=0, description="Upper bound of one backoff.")
    max_retry_after_s: float = Field(60, ge=0, description="A longer Retry-After fails instead of waiting.")


class FetchHttpOutput(FetchEnvelope):
    cursor: Any = Field(None, description="With incremental: the cursor this run sent.")
    next_cursor: Any = Field(
        None, description="With incremental: the new high-water mark, committed only if the run ends SUCCESS."
    )


class FetchHttp(Step, type="fetch.http"):
    """Fetch a URL from an allowed host: JSON, CSV (a DataFrame), text or bytes.

    Only hosts in the policy's ``allowed_hosts`` or the engine configuration's ``[fetch]
    allowed_hosts`` can be fetched. Requests to one host share its rate limit (``rate_limits``)
    across steps. Connection errors, 429 and 5xx are retried with backoff, honouring
    ``Retry-After``; other 4xx fail at once. With ``cache_ttl_s`` a response is reused without a
    request while fresh, then revalidated with ``If-None-Match`` / ``If-Modified-Since``.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)
        url: str = Field(description="An http(s) URL on an allowed host; templates allowed.")
        method: Literal["GET", "POST"] = Field("GET", description="GET or POST.")
        headers: dict[str, str] = Field(default_factory=dict, description="Request headers (secrets allowed).")
        query: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Query parameters.")
        json_body: Any = Field(None, description="A JSON request body (POST).")
        format: Format | None = Field(None, description="json, csv, text or bytes; default: from the Content-Type.")
        as_: Literal["auto", "frame"] = Field(
            "auto", alias="as", description="'frame' turns JSON records into a DataFrame; 'auto' keeps parsed JSON."
        )
        records_path: str | None = Field(
            None, description="JSON path of the list of records in each response, e.g. 'data.items'."
        )
        timeout_s: float = Field(
            30, gt=0, description="Time limit of one request (each page), connect to last byte, in seconds."
        )
        cache_ttl_s: float | None = Field(
            None, ge=0, description="Reuse a stored response for this many seconds, then revalidate; null: no cache."
        )
        paginate: Paginate | None = Field(None, description="Follow next pages (next_link or cursor).")
        incremental: Incremental | None = Field(None, description="Fetch only records past the last cursor.")
        retries: Retries = Field(default_factory=Retries, description="Retries of connection errors, 429 and 5xx.")
        max_bytes: int = Field(50_000_000, ge=1, description="A larger response body fails the step.")
        text_columns: list[str] = Field(
            default_factory=list,
            description="CSV columns read as text, exactly as written (money: cast them to decimal after).",
        )

    Output = FetchHttpOutput

    @classmethod
    def check(cls, params: dict[str, Any], where: CheckContext) -> list[Problem]:
        url = params.get("url")
        if not isinstance(url, str) or is_expression(url):
            return []
        if "{{" in url:
            return []
        parts = urlsplit(url.replace("{cursor}", "0"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return [Problem("/url", f"{url!r} is not an http(s) URL", "write it as https://host/path")]
        patterns = hosts.allowed_patterns(where.sections, where.config)
        if not hosts.host_allowed(parts.hostname, patterns):
            return [Problem("/url", hosts.not_allowed_message(parts.hostname, patterns), hosts.ALLOW_HINT)]
        return []

    @classmethod
    def initial_state(cls, params: dict[str, Any]) -> dict[str, Any]:
        return initial_cursor(params)

    async def run(self, params: Params, ctx: StepContext) -> FetchHttpOutput:
        fetch = _Fetch(params, ctx)
        return await fetch.all_pages()


# -- one step's fetch -----------------------------------------------------------------------


@dataclass
class _Page:
    status_code: int
    content_type: str
    body: bytes
    headers: dict[str, str]
    url: str
    cache_status: str


@dataclass
class _Fetch:
    params: FetchHttp.Params
    ctx: StepContext
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.patterns = hosts.allowed_patterns(self.ctx.sections, self.ctx.config)
        self.db = self.ctx.database(cache.metadata) if self.params.cache_ttl_s is not None else None

    async def all_pages(self) -> FetchHttpOutput:
        params = self.params
        url, query, cursor = self._first_request()
        pages: list[_Page] = []
        async with self._client() as client:
            while True:
                page = await self._page(client, url, query)
                pages.append(page)
                follow = self._next(page, url, query)
                if follow is None:
                    break
                if len(pages) >= (params.paginate.max_pages if params.paginate else 1):
                    self.warnings.append(f"stopped after max_pages ({len(pages)}); more pages were offered")
                    break
                url, query = follow
        fmt = params.format or _format_of(pages[0].content_type)
        data = self._combine(pages, fmt)
        next_cursor = None
        if params.incremental is not None:
            next_cursor = _advance(data, params.incremental.cursor_field, cursor)
            self.ctx.state.stage("cursor", next_cursor)
        statuses = {p.cache_status for p in pages}
        return FetchHttpOutput(
            data=data,
            content_type=pages[0].content_type,
            status_code=pages[-1].status_code,
            url=mask_secret_query(pages[0].url),  # ?key=*** for a secret query value
            fetched_at=utc_now(),
            cache_status=_overall_cache_status(statuses),  # type: ignore[arg-type]
            content_hash=_content_hash(pages),
            pages=len(pages),
            warnings=self.warnings,
            cursor=cursor,
            next_cursor=next_cursor,
        )

    # -- requests --------------------------------------------------------------------------

    def _first_request(self) -> tuple[str, dict[str, str], Any]:
        params = self.params
        for name, value in params.headers.items():
            if not (name.isascii() and value.isascii()):  # httpx would fail with a bare UnicodeEncodeError
                raise StepError(
                    f"header {name!r} is not ASCII text, as HTTP headers must be: encode its value "
                    "(percent-encode or base64 it, as the server expects)",
                    retryable=False,
                )
        query = {k: _query_text(v) for k, v in params.query.items()}
        url = params.url
        cursor = None
        if params.incremental is not None:
            cursor = self.ctx.state.get("cursor", params.incremental.initial_value)
            if params.incremental.query_param:
                query[params.incremental.query_param] = _query_text(cursor)
            elif "{cursor}" in url:
                url = url.replace("{cursor}", quote(_query_text(cursor), safe=""))
            elif not _sends(url, query, _query_text(cursor)):
                raise StepError(
                    "incremental needs a place for the cursor: set incremental.query_param, put {cursor} "
                    f'in the url, or set a query value to {{"ref": "ctx.{self.ctx.step_id}.cursor"}}',
                    retryable=False,
                )
        return url, query, cursor

    def _client(self) -> httpx.AsyncClient:
        async def check_host(request: httpx.Request) -> None:
            self._allowed(str(request.url))  # every request, redirects included

        return httpx.AsyncClient(
            timeout=self.params.timeout_s,
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": USER_AGENT},
            event_hooks={"request": [check_host]},
        )

    def _allowed(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StepError(f"{url!r} is not an http(s) URL", retryable=False)
        if not hosts.host_allowed(parts.hostname, self.patterns):
            raise StepError(
                f"{hosts.not_allowed_message(parts.hostname, self.patterns)}: {hosts.ALLOW_HINT}", retryable=False
            )
        return parts.hostname

    async def _page(self, client: httpx.AsyncClient, url: str, query: dict[str, str]) -> _Page:
        params = self.params
        host = self._allowed(url)
        body = json.dumps(params.json_body).encode() if params.json_body is not None else None
        headers = dict(params.headers)
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        key = entry = None
        if self.db is not None:
            key = cache.request_key(params.method, url, list(query.items()), body, headers)
            entry = await asyncio.to_thread(cache.load, self.db, key)
            if entry is not None and entry.fresh(params.cache_ttl_s or 0):
                stored = self._stored_body(entry)
                if stored is not None:
                    return _Page(entry.status_code, entry.content_type, stored, entry.headers, url, "hit")
            if entry is not None and self._stored_body(entry) is not None:
                headers.update(entry.validators())
            else:
                entry = None
        limit = hosts.limit_for(host, self.ctx.sections.get("rate_limits", {}), self.ctx.config)
        status, response_headers, raw, final_url = await self._send(
            client, hosts.gate(host, limit), url, query, body, headers
        )
        if status == 304 and entry is not None:
            assert key is not None and self.db is not None
            await asyncio.to_thread(cache.touch, self.db, key, time.time())
            stored = self._stored_body(entry)
            assert stored is not None
            return _Page(entry.status_code, entry.content_type, stored, entry.headers, final_url, "revalidated")
        content_type = response_headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        kept = {k: v for k, v in response_headers.items() if k in ("content-type", "link", "etag", "last-modified")}
        if self.db is not None and key is not None:
            ref = self.ctx.artifacts.put_bytes(raw, content_type)
            stored_entry = cache.Entry(
                status, content_type, ref.sha256, kept, kept.get("etag"), kept.get("last-modified"), time.time()
            )
            parts = urlsplit(url)
            await asyncio.to_thread(cache.save, self.db, key, params.method, host, parts.path or "/", stored_entry)
        return _Page(status, content_type, raw, kept, final_url, "miss" if self.db is not None else "none")

    def _stored_body(self, entry: cache.Entry) -> bytes | None:
        try:
            return self.ctx.artifacts.read_bytes(entry.body_sha256)
        except OSError:
            return None  # the artifact was pruned: fetch again

    async def _send(
        self,
        client: httpx.AsyncClient,
        gate: hosts.HostGate,
        url: str,
        query: dict[str, str],
        body: bytes | None,
        headers: dict[str, str],
    ) -> tuple[int, dict[str, str], bytes, str]:
        retries = self.params.retries
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retries.max_attempts),
            wait=_Wait(retries),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    async with gate, _translate(url):
                        # httpx's timeouts are per operation (a read of one byte resets it):
                        # this one bounds the whole request, connect to last byte
                        async with asyncio.timeout(self.params.timeout_s):
                            return await self._once(client, url, query, body, headers)
        except _RetryableStatus as exc:
            raise StepError(
                f"HTTP {exc.status} from {_shown(url)} after {attempts} attempt{'s' if attempts > 1 else ''}: "
                f"{exc.snippet}",
                retryable=True,
            ) from None
        except _TooLongRetryAfter as exc:
            raise StepError(
                f"HTTP {exc.status} from {_shown(url)}: the server asks to retry after {exc.seconds:g} s, more than "
                f"retries.max_retry_after_s ({retries.max_retry_after_s:g} s)",
                retryable=True,
            ) from None
        except _TimedOut:
            raise StepError(
                f"timed out after {self.params.timeout_s:g} s fetching {_shown(url)} "
                f"({attempts} attempt{'s' if attempts > 1 else ''})",
                retryable=True,
            ) from None
        except _Unreachable as exc:
            raise StepError(
                f"cannot reach {_shown(url)} after {attempts} attempt{'s' if attempts > 1 else ''}: {exc}",
                retryable=True,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self, client: httpx.AsyncClient, url: str, query: dict[str, str], body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes, str]:
        method = self.params.method
        async with client.stream(method, url, params=query or None, content=body, headers=headers) as response:
            raw = await _read_limited(response, self.params.max_bytes, url)
            status = response.status_code
            response_headers = {k.lower(): v for k, v in response.headers.items()}
            final_url = str(response.url)
        if status == 429 or status >= 500:
            raise _RetryableStatus(status, _snippet(raw), response_headers.get("retry-after"))
        if status >= 400:
            raise StepError(
                f"HTTP {status} {httpx.codes.get_reason_phrase(status)} from {_shown(url)}: {_snippet(raw)}",
                retryable=False,
            )
        return status, response_headers, raw, final_url

    # -- pages -----------------------------------------------------------------------------

    def _next(self, page: _Page, url: str, query: dict[str, str]) -> tuple[str, dict[str, str]] | None:
        """The next page's URL and query, or None after the last page. ``url`` and ``query`` are
        this page's request (a cursor is added to the same request; a link replaces it)."""
        pag = self.params.paginate
        if pag is None:
            return None
        if pag.next_link == "header":
            link = httpx.Response(200, headers={"link": page.headers.get("link", "")}).links.get("next", {}).get("url")
            return (urljoin(page.url, link), {}) if link else None
        document = _parse_json(page.body, page.url)
        if pag.next_link is not None:
            target = paths.lookup(document, pag.next_link, None)
            return (urljoin(page.url, str(target)), {}) if target else None
        assert pag.cursor is not None
        value = paths.lookup(document, pag.cursor, None)
        if value in (None, ""):
            return None
        return url, {**query, pag.cursor_param: _query_text(value)}

    def _combine(self, pages: list[_Page], fmt: Format) -> Any:
        params = self.params
        if fmt == "bytes":
            if len(pages) > 1:
                raise StepError("pagination needs json, csv or text, not bytes", retryable=False)
            return self.ctx.artifacts.put_bytes(pages[0].body, pages[0].content_type)
        if fmt == "text":
            texts = [p.body.decode(_charset(p), errors="replace") for p in pages]
            return texts[0] if len(texts) == 1 else texts
        if fmt == "csv":
            import pandas as pd

            try:
                dtype = {name: "string" for name in params.text_columns} or None
                frames = [pd.read_csv(io.BytesIO(p.body), dtype=dtype) for p in pages]
            except Exception as exc:
                raise StepError(
                    f"cannot parse the response as CSV: {type(exc).__name__}: {exc}", retryable=False
                ) from None
            return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        documents = [_parse_json(p.body, p.url) for p in pages]
        if params.records_path:
            records: list[Any] = []
            for number, document in enumerate(documents, 1):
                try:
                    found = paths.lookup(document, params.records_path)
                except KeyError as exc:
                    raise StepError(
                        f"records_path {params.records_path!r}, page {number}: {exc.args[0]}", retryable=False
                    ) from None
                if not isinstance(found, list):
                    raise StepError(
                        f"records_path {params.records_path!r}, page {number}: a {type(found).__name__}, not a list",
                        retryable=False,
                    )
                records.extend(found)
            data: Any = records
        elif len(documents) > 1 and all(isinstance(d, list) for d in documents):
            data = [item for document in documents for item in document]  # pages of a JSON array
        else:
            data = documents[0] if len(documents) == 1 else documents
        if params.as_ == "frame":
            import pandas as pd

            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise StepError("'as: frame' needs a list of objects: set records_path to the list", retryable=False)
            return pd.DataFrame.from_records(data)
        return data


# -- helpers --------------------------------------------------------------------------------


class _RetryableStatus(Exception):
    def __init__(self, status: int, snippet: str, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.snippet, self.retry_after = status, snippet, retry_after


class _TooLongRetryAfter(Exception):
    def __init__(self, status: int, seconds: float) -> None:
        super().__init__(f"Retry-After {seconds}")
        self.status, self.seconds = status, seconds


class _Unreachable(Exception):
    """A connection error (the message says which)."""


class _TimedOut(_Unreachable):
    """The request took longer than timeout_s, connect to last byte."""


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableStatus | _Unreachable)


class _Wait:
    """Exponential backoff with jitter, or the server's Retry-After when it gives one."""

    def __init__(self, retries: Retries) -> None:
        self.retries = retries
        # full jitter: a random wait between 0 and backoff_s * 2**n, capped
        self.backoff = wait_random_exponential(multiplier=retries.backoff_s, max=retries.max_backoff_s)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus) and exc.retry_after:
            seconds = retry_after_seconds(exc.retry_after)
            if seconds is not None:
                if seconds > self.retries.max_retry_after_s:
                    raise _TooLongRetryAfter(exc.status, seconds)
                return seconds
        return float(self.backoff(state))


def retry_after_seconds(value: str, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


@contextlib.asynccontextmanager
async def _translate(url: str) -> AsyncIterator[None]:
    """httpx's errors, translated at this one boundary."""
    try:
        yield
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise _TimedOut(f"timed out ({type(exc).__name__})") from exc
    except httpx.TooManyRedirects:
        raise StepError(f"too many redirects from {_shown(url)}", retryable=False) from None
    except httpx.TransportError as exc:
        raise _Unreachable(f"{type(exc).__name__}: {exc or 'connection failed'}") from exc


async def _read_limited(response: httpx.Response, limit: int, url: str) -> bytes:
    chunks = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise StepError(f"the response from {_shown(url)} is larger than max_bytes ({limit})", retryable=False)
        chunks.append(chunk)
    return b"".join(chunks)


def _format_of(content_type: str) -> Format:
    kind = content_type.lower()
    if kind == "application/json" or kind.endswith("+json") or kind in ("application/jsonl", "text/json"):
        return "json"
    if kind in ("text/csv", "application/csv"):
        return "csv"
    if kind.startswith("text/"):
        return "text"
    return "bytes"


def _parse_json(raw: bytes, url: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise StepError(
            f"the response from {_shown(url)} is not JSON ({exc}): {_snippet(raw)}", retryable=False
        ) from None


def _charset(page: _Page) -> str:
    for part in page.headers.get("content-type", "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            return value.strip('"')
    return "utf-8"


def _snippet(raw: bytes) -> str:
    text = raw[:_SNIPPET].decode("utf-8", errors="replace").strip().replace("\n", " ")
    return (text + "...") if len(raw) > _SNIPPET else (text or "(empty body)")


def _shown(url: str) -> str:
    """The URL without its query string (which may hold a key) for messages."""
    return url.split("?")[0]


def _sends(url: str, query: dict[str, str], text: str) -> bool:
    """Whether the request already carries ``text`` as a query value (a ref put it there)."""
    return text in query.values() or text in (v for _, v in parse_qsl(urlsplit(url).query))


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _overall_cache_status(statuses: set[str]) -> str:
    if statuses == {"none"}:
        return "none"
    if "miss" in statuses or "none" in statuses:
        return "miss"
    return "hit" if statuses == {"hit"} else "revalidated"


def _content_hash(pages: list[_Page]) -> str:
    if len(pages) == 1:
        return sha256_hex(pages[0].body)
    digest = hashlib.sha256()
    for page in pages:
        digest.update(page.body)
    return digest.hexdigest()


def _advance(data: Any, field_name: str, cursor: Any) -> Any:
    """The largest ``field_name`` over the fetched records, or the old cursor when there are none."""
    if hasattr(data, "columns"):  # a DataFrame
        return frame_high_water(data, field_name, cursor)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise StepError("incremental needs a list of records: set records_path to the list", retryable=False)
    values = [r[field_name] for r in data if r.get(field_name) is not None]
    if data and not values:
        raise StepError(f"incremental.cursor_field {field_name!r} is in none of the records", retryable=False)
    return max(values) if values else cursor
