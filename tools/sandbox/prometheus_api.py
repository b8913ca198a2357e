"""The Prometheus HTTP API subset of the sandbox: `/api/v1/query` and `/api/v1/query_range`.

Answers have the real API's JSON shapes. PromQL is not evaluated: a query is checked for
balanced brackets and quotes (the parse errors a model makes most), then answered by the
scenario's first matching signal, or with an empty result.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from aiohttp import web

from tools.sandbox.faults import REQUESTS
from tools.sandbox.scenario import WORLD

MAX_POINTS = 11_000  # Prometheus's limit per series

_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_CLOSERS = {")": ("(", "parenthesis"), "]": ("[", "bracket"), "}": ("{", "brace")}
_OPENERS = {"(": "parenthesis", "[": "bracket", "{": "brace"}

routes = web.RouteTableDef()


class BadData(ValueError):
    """A request Prometheus answers with HTTP 400 `bad_data`."""


def bad_data(message: str) -> web.Response:
    """A Prometheus error answer."""
    body = {"status": "error", "errorType": "bad_data", "error": message}
    return web.json_response(body, status=400)


def parse_time(name: str, raw: str | None) -> float:
    """A Prometheus time parameter: unix seconds or RFC 3339."""
    if raw is not None:
        try:
            return float(raw)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(raw).timestamp()
        except ValueError:
            pass
    raise BadData(f'invalid parameter "{name}": cannot parse "{raw or ""}" to a valid timestamp')


def parse_duration(name: str, raw: str | None) -> float:
    """A Prometheus duration parameter: seconds (`15`, `0.5`) or a duration (`1m30s`)."""
    text = raw or ""
    try:
        return float(text)
    except ValueError:
        pass
    found = _DURATION.match(text)
    if not text or found is None:
        raise BadData(f'invalid parameter "{name}": cannot parse "{text}" to a valid duration')
    return sum(int(n) * unit for n, unit in zip(found.groups(), _UNITS, strict=True) if n)


def check_syntax(query: str) -> None:
    """Raise `BadData` with a Prometheus-like parse error for unbalanced brackets or quotes."""
    if not query.strip():
        raise BadData('invalid parameter "query": 1:1: parse error: no expression found in input')
    stack: list[tuple[str, int]] = []
    quote: str | None = None
    escaped = False
    for column, char in enumerate(query, start=1):
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote != "`":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif char in _OPENERS:
            stack.append((char, column))
        elif char in _CLOSERS:
            opener, kind = _CLOSERS[char]
            if not stack or stack[-1][0] != opener:
                raise BadData(
                    f'invalid parameter "query": 1:{column}: parse error: '
                    f"unexpected right {kind} '{char}'"
                )
            stack.pop()
    if quote is not None:
        raise BadData(
            f'invalid parameter "query": 1:{len(query) + 1}: parse error: '
            "unterminated quoted string"
        )
    if stack:
        opener, column = stack[-1]
        raise BadData(
            f'invalid parameter "query": 1:{column}: parse error: unclosed left {_OPENERS[opener]}'
        )


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


async def _params(request: web.Request) -> dict[str, str]:
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    if "query" in params:
        request.app[REQUESTS].promql.append(params["query"])
    return params


@routes.get("/api/v1/query")
@routes.post("/api/v1/query")
async def query(request: web.Request) -> web.Response:
    """An instant query: a vector of at most one series."""
    world = request.app[WORLD]
    params = await _params(request)
    try:
        at = parse_time("time", params["time"]) if "time" in params else world.clock()
        check_syntax(params.get("query", ""))
    except BadData as exc:
        return bad_data(str(exc))
    answer = world.answer(params["query"], at)
    result = (
        []
        if answer is None
        else [{"metric": answer[0], "value": [round(at, 3), format_value(answer[1])]}]
    )
    return web.json_response(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    )


@routes.get("/api/v1/query_range")
@routes.post("/api/v1/query_range")
async def query_range(request: web.Request) -> web.Response:
    """A range query: a matrix of at most one series."""
    world = request.app[WORLD]
    params = await _params(request)
    try:
        start = parse_time("start", params.get("start"))
        end = parse_time("end", params.get("end"))
        step = parse_duration("step", params.get("step"))
        if end < start:
            raise BadData('invalid parameter "end": end timestamp must not be before start time')
        if step <= 0:
            raise BadData(
                'invalid parameter "step": zero or negative query resolution step widths '
                "are not accepted. Try a positive integer"
            )
        if (end - start) / step > MAX_POINTS:
            raise BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. "
                "Try decreasing the query resolution (?step=XX)"
            )
        check_syntax(params.get("query", ""))
    except BadData as exc:
        return bad_data(str(exc))
    labels: dict[str, str] | None = None
    values: list[list[float | str]] = []
    for i in range(int((end - start) / step) + 1):
        at = start + i * step
        answer = world.answer(params["query"], at)
        if answer is not None:
            labels = answer[0]
            values.append([round(at, 3), format_value(answer[1])])
    result = [] if labels is None else [{"metric": labels, "values": values}]
    return web.json_response(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}
    )
