"""Read-only log tools on Loki: a LogQL range query, summarised for the model.

A log query answers with a summary of the most frequent lines, counted after masking what
varies between them (numbers, ids, hashes), so one look shows that 900 of 1,000 lines are
the same `upstream timeout`, and with the newest lines, those alike shown once with a count,
their pods and their times: thirty copies of one error would tell the model nothing the
first did not, and would be most of what it reads. A metric query
(`count_over_time(...)`, `rate(...)`) answers with per-series summaries like
`prometheus.query_range`.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from tools.describing import (
    equal_labels,
    failed,
    get,
    integer,
    line_filter,
    log_gist,
    minutes,
    objects,
    place,
    plural,
    quote,
    range_gist,
    text,
)
from tools.http_backend import BackendError, fetch, join_url
from tools.prometheus import choose_step, summarize_series
from tools.prometheus_http import Series
from tools.toolset import Health, ToolContext, ToolResult, Toolset, tool

NOT_CONFIGURED = "Loki is not configured (LOKI_URL is unset)"
MAX_LINES = 500
MAX_LINE_CHARS = 300
TOP_PATTERNS = 10
MAX_PODS_SHOWN = 5  # pods named per group of alike newest lines; the rest are counted
NARROW = 'a narrower stream selector, a line filter (|= "error"), fewer minutes or a lower limit'
_VARYING = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # uuid
    r"|\b[0-9a-f]{12,}\b"  # hashes, trace ids
    r"|\d+(?:\.\d+)?"  # numbers: durations, ports, counts, times
)

JsonObject = dict[str, JsonValue]


class LogsInput(BaseModel):
    """Arguments of `logs.query`."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(
        min_length=1,
        description=(
            "A LogQL query: a stream selector with optional line filters, or a metric query."
        ),
        examples=['{namespace="shop", app="checkout"} |= "error"'],
    )
    minutes: int = Field(
        default=30, ge=1, le=7 * 24 * 60, description="Window ending now, in minutes."
    )
    limit: int = Field(
        default=200,
        ge=1,
        le=MAX_LINES,
        description="Lines to fetch at most (newest first; at most 500).",
    )
    show_lines: int = Field(
        default=30,
        ge=0,
        le=MAX_LINES,
        description=(
            "Newest lines to show; lines differing only in numbers and ids are shown once, counted."
        ),
    )


class _Stream(BaseModel):
    stream: dict[str, str] = Field(default_factory=dict)
    values: list[tuple[str, str]] = Field(default_factory=list)


class _Data(BaseModel):
    result_type: Literal["streams", "matrix", "vector"] = Field(alias="resultType")
    result: list[JsonValue]


class _Answer(BaseModel):
    status: str
    data: _Data


def pattern_of(line: str) -> str:
    """A line with what varies masked: `took 5003ms id=4f1a…` → `took <n>ms id=<n>`."""
    return _VARYING.sub("<n>", line)


def summarize_lines(lines: list[str]) -> list[JsonValue]:
    """The most frequent line patterns, with a count and one example each."""
    counts = Counter(pattern_of(line) for line in lines)
    examples: dict[str, str] = {}
    for line in lines:
        examples.setdefault(pattern_of(line), line)
    return [
        {"count": count, "pattern": pattern[:MAX_LINE_CHARS], "example": _cut(examples[pattern])}
        for pattern, count in counts.most_common(TOP_PATTERNS)
    ]


def newest_lines(entries: list[tuple[int, str, dict[str, str]]]) -> list[JsonValue]:
    """Log entries (nanosecond time, line, stream labels; newest first) grouped by pattern,
    in the order of each pattern's newest line: that line verbatim, how many lines the
    group holds, from which pods and, for more than one line, since when."""
    groups: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
    for entry in entries:
        groups.setdefault(pattern_of(entry[1]), []).append(entry)
    shown: list[JsonValue] = []
    for members in groups.values():
        newest_time, line, _ = members[0]
        pods = sorted({labels["pod"] for _, _, labels in members if labels.get("pod")})
        group: JsonObject = {"time": _iso_ns(newest_time)}
        if len(members) > 1:
            group["since"] = _iso_ns(members[-1][0])
        group["count"] = len(members)
        if pods:
            named: list[JsonValue] = [*pods[:MAX_PODS_SHOWN]]
            group["pods"] = named
        if len(pods) > MAX_PODS_SHOWN:
            group["more_pods"] = len(pods) - MAX_PODS_SHOWN
        group["line"] = _cut(line)
        shown.append(group)
    return shown


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "…"


def answer_url(ctx: ToolContext) -> str:
    """The query endpoint's URL, for error messages."""
    return join_url(ctx.loki_url or "", "/loki/api/v1/query_range")


async def _query(ctx: ToolContext, args: LogsInput) -> _Data:
    if not ctx.loki_url:
        raise BackendError(NOT_CONFIGURED)
    end = time.time()
    start = end - args.minutes * 60
    params = {
        "query": args.query,
        "start": str(int(start * 1e9)),
        "end": str(int(end * 1e9)),
        "limit": str(args.limit),
        "direction": "backward",
        "step": str(choose_step(args.minutes * 60)),
    }
    answer = await fetch(
        ctx.http,
        answer_url(ctx),
        service="Loki",
        auth=ctx.loki_auth,
        timeout_seconds=ctx.timeout_seconds,
        params=params,
    )
    if answer.status == 400:
        raise BackendError(f"Loki rejected the query (HTTP 400): {answer.text.strip()}")
    if not answer.ok:
        detail = answer.text.strip()[:300]
        raise BackendError(f"Loki answered HTTP {answer.status} at {answer_url(ctx)}: {detail}")
    try:
        return _Answer.model_validate_json(answer.text).data
    except ValidationError:
        raise BackendError(f"Loki answered with something else: {answer.text[:200]!r}") from None


def describe_query(args: LogsInput, result: ToolResult) -> str:
    """`Read 219 error lines of shop/checkout in 15 min: most frequent 'upstream timeout
    (upstream=payments.shop:8443)' (180)`; a metric query like `prometheus.query_range`."""
    where = place(equal_labels(args.query)) or "the selected streams"
    word = line_filter(args.query)
    kind = f"{word} lines" if word else "log lines"
    window = minutes(args.minutes)
    if result.status == "error":
        return failed(f"search the {kind} of {where}", result)
    if result.status == "no_data":
        return f"No {kind} of {where} in the last {window}"
    if isinstance(result.data, list):
        series = objects(result.data)
        return f"Counted the {kind} of {where} over {window}: {range_gist(series, len(series))}"
    matched = integer(get(result.data, "lines_matched"))
    count = f"at least {matched:,} {kind}" if result.note else plural(matched, kind[:-1])
    [top, *_] = objects(get(result.data, "most_frequent")) or [{}]
    gist = quote(log_gist(text(top.get("example"))))
    return (
        f"Read {count} of {where} in {window}: most frequent {gist} ({integer(top.get('count'))})"
    )


@tool("logs.query", narrow=NARROW, describe=describe_query)
async def query(ctx: ToolContext, args: LogsInput) -> ToolResult:
    """Search logs in Loki with LogQL over the last `minutes` (default 30). Returns how many
    lines matched (up to `limit`), the most frequent lines (numbers and ids masked, with a
    count and an example each) and the newest `show_lines` lines: lines that differ only in
    numbers and ids are shown once (the newest, verbatim) with how many, their pods and
    since when. Use a
    line filter to find errors: `{namespace="shop", app="checkout"} |= "error"`; a metric
    query such as `sum by (pod) (count_over_time({app="checkout"} |= "timeout" [5m]))`
    returns per-series summaries instead.
    """
    try:
        data = await _query(ctx, args)
    except BackendError as exc:
        return ToolResult.fail(str(exc))
    if data.result_type != "streams":
        series = [Series.model_validate(s) for s in data.result]
        if not series:
            return ToolResult.no_data(f"no series for `{args.query}`")
        return ToolResult.ok([summarize_series(s) for s in series])
    entries = sorted(
        (
            (int(ts), line, stream.stream)
            for stream in (_Stream.model_validate(s) for s in data.result)
            for ts, line in stream.values
        ),
        key=lambda entry: entry[0],
        reverse=True,
    )[: args.limit]
    if not entries:
        return ToolResult.no_data(f"no log lines for `{args.query}` in the last {args.minutes} min")
    result: JsonObject = {
        "lines_matched": len(entries),
        "streams": len(data.result),
        "most_frequent": summarize_lines([line for _, line, _ in entries]),
        "newest": newest_lines(entries[: args.show_lines]),
    }
    note = None
    if len(entries) >= args.limit:
        note = (
            f"the limit of {args.limit} lines was reached: older lines are not counted; "
            "add a line filter or shorten the window"
        )
    return ToolResult.ok(result, note=note)


def _iso_ns(nanoseconds: int) -> str:
    seconds = nanoseconds / 1e9
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


async def probe_loki(ctx: ToolContext) -> Health:
    """Whether Loki is configured and answers its build-info endpoint."""
    if not ctx.loki_url:
        return Health(configured=False, reachable=False, detail="LOKI_URL is unset")
    try:
        answer = await fetch(
            ctx.http,
            join_url(ctx.loki_url, "/loki/api/v1/status/buildinfo"),
            service="Loki",
            auth=ctx.loki_auth,
            timeout_seconds=ctx.timeout_seconds,
        )
    except BackendError as exc:
        return Health(configured=True, reachable=False, detail=str(exc))
    if not answer.ok:
        return Health(
            configured=True,
            reachable=False,
            detail=f"Loki answered HTTP {answer.status}: {answer.text[:200].strip()}",
        )
    try:
        version = json.loads(answer.text).get("version", "unknown version")
    except (ValueError, AttributeError):
        version = "unknown version"
    return Health(configured=True, reachable=True, detail=f"Loki {version} at {ctx.loki_url}")


LOGS = Toolset(name="logs", tools=(query,), probe=probe_loki)
