"""The Loki HTTP API subset of the sandbox: `/loki/api/v1/query_range` and build info.

LogQL is parsed as far as the tools use it: a stream selector (`=`, `!=`, `=~`, `!~`),
line filters (`|=`, `!=`, `|~`, `!~`), the no-op parsers `| json` and `| logfmt`, and the
metric queries `count_over_time`/`rate` over a range, optionally `sum` or `sum by (...)`.
Anything else is a parse error in Loki's words (HTTP 400, plain text).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable

from aiohttp import web

from tools.sandbox.pods import SimPod, all_pods, log_entries
from tools.sandbox.prometheus_api import parse_duration
from tools.sandbox.scenario import WORLD

routes = web.RouteTableDef()

_STRING = r'"((?:[^"\\]|\\.)*)"'
_MATCHER = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*" + _STRING + r"\s*")
_FILTER = re.compile(r"\s*(\|=|!=|\|~|!~)\s*" + _STRING)
_PARSER = re.compile(r"\s*\|\s*(json|logfmt)\b")
_METRIC = re.compile(
    r"^\s*(?:sum\s*(?:by\s*\(([^)]*)\))?\s*\()?\s*(count_over_time|rate)\s*\((.*)\[([0-9a-z]+)\]"
    r"\s*\)\s*(\))?\s*$",
    re.S,
)

LineFilter = Callable[[str], bool]


class ParseError(ValueError):
    """A LogQL parse error, in Loki's words."""


def _labels(pod: SimPod) -> dict[str, str]:
    return {
        "namespace": pod.namespace,
        "pod": pod.name,
        "container": pod.container,
        "app": pod.labels.get("app", pod.container),
    }


def _selector(text: str) -> Callable[[dict[str, str]], bool]:
    if not text.strip():
        raise ParseError("parse error : queries require at least one regexp or equality matcher")
    tests = []
    for part in text.split(","):
        found = _MATCHER.fullmatch(part)
        if found is None:
            raise ParseError(f"parse error at line 1, col 2: syntax error: unexpected {part!r}")
        name, op, value = found.groups()
        tests.append((name, op, value))

    def matches(labels: dict[str, str]) -> bool:
        for name, op, value in tests:
            actual = labels.get(name, "")
            hit = re.fullmatch(value, actual) is not None if "~" in op else actual == value
            if hit != (op in ("=", "=~")):
                return False
        return True

    return matches


def parse_log_query(query: str) -> tuple[Callable[[dict[str, str]], bool], list[LineFilter]]:
    """A log query's stream selector and line filters."""
    text = query.strip()
    if not text.startswith("{"):
        raise ParseError("parse error at line 1, col 1: syntax error: unexpected IDENTIFIER")
    close = text.find("}")
    if close < 0:
        raise ParseError(
            f"parse error at line 1, col {len(text) + 1}: syntax error: unexpected $end, "
            "expecting } or ,"
        )
    selector = _selector(text[1:close])
    rest, filters = text[close + 1 :], []
    while rest.strip():
        if parsed := _PARSER.match(rest):
            rest = rest[parsed.end() :]
            continue
        found = _FILTER.match(rest)
        if found is None:
            col = len(text) - len(rest) + 1
            raise ParseError(f"parse error at line 1, col {col}: syntax error: unexpected {rest!r}")
        op, value = found.groups()
        filters.append(_line_filter(op, value))
        rest = rest[found.end() :]
    return selector, filters


def _line_filter(op: str, value: str) -> LineFilter:
    if op == "|=":
        return lambda line: value in line
    if op == "!=":
        return lambda line: value not in line
    pattern = re.compile(value)
    if op == "|~":
        return lambda line: pattern.search(line) is not None
    return lambda line: pattern.search(line) is None


def _nanos(raw: str | None, default: float) -> float:
    if raw is None:
        return default
    value = float(raw)
    return value / 1e9 if value > 1e12 else value


def _error(message: str) -> web.Response:
    return web.Response(status=400, text=message + "\n", content_type="text/plain")


@routes.get("/loki/api/v1/query_range")
async def query_range(request: web.Request) -> web.Response:
    """Log lines (newest first, up to `limit`) or a metric query's matrix."""
    world = request.app[WORLD]
    now = world.clock()
    query = request.query.get("query", "")
    try:
        start = _nanos(request.query.get("start"), now - 3600)
        end = _nanos(request.query.get("end"), now)
        limit = int(request.query.get("limit", "100"))
        metric = _METRIC.match(query)
        if metric is not None:
            return _metric(request, metric, start, end, now)
        selector, filters = parse_log_query(query)
    except (ParseError, ValueError) as exc:
        return _error(str(exc))
    result = []
    for pod in all_pods(world):
        labels = _labels(pod)
        if not selector(labels):
            continue
        values = []
        for at, line in log_entries(pod, start, end, now):
            if all(f(line) for f in filters):
                values.append([str(int(at * 1e9)), line])
                if len(values) >= limit:
                    break
        if values:
            result.append({"stream": labels, "values": values})
    return web.json_response(
        {"status": "success", "data": {"resultType": "streams", "result": result, "stats": {}}}
    )


def _metric(
    request: web.Request, metric: re.Match[str], start: float, end: float, now: float
) -> web.Response:
    by, function, inner, window_text, closing = metric.groups()
    summed = metric.group(0).lstrip().startswith("sum")
    if summed != (closing is not None):
        raise ParseError("parse error at line 1: syntax error: unbalanced parentheses")
    selector, filters = parse_log_query(inner)
    window = parse_duration("range", window_text)
    step = parse_duration("step", request.query.get("step", "60"))
    keys = [k.strip() for k in by.split(",")] if by else []
    series: dict[tuple[tuple[str, str], ...], dict[float, float]] = defaultdict(dict)
    world = request.app[WORLD]
    times = [start + i * step for i in range(int((end - start) // step) + 1)]
    for pod in all_pods(world):
        labels = _labels(pod)
        if not selector(labels):
            continue
        stamps = [
            at
            for at, line in log_entries(pod, start - window, end, now)
            if all(f(line) for f in filters)
        ]
        key = (
            tuple(sorted(labels.items()))
            if not summed
            else tuple((k, labels.get(k, "")) for k in keys)
        )
        for t in times:
            count = sum(1 for at in stamps if t - window < at <= t)
            value = count / window if function == "rate" else float(count)
            series[key][t] = series[key].get(t, 0.0) + value
    result = [
        {"metric": dict(key), "values": [[t, f"{v:g}"] for t, v in sorted(points.items()) if v]}
        for key, points in series.items()
    ]
    return web.json_response(
        {
            "status": "success",
            "data": {"resultType": "matrix", "result": [r for r in result if r["values"]]},
        }
    )


@routes.get("/loki/api/v1/status/buildinfo")
async def buildinfo(request: web.Request) -> web.Response:
    """Loki's version."""
    return web.json_response({"version": "2.9.0-sandbox", "revision": "sandbox"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Loki's readiness."""
    return web.Response(text="ready\n")
