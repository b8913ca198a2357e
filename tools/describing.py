"""Helpers for the lines tools write about their calls for people (`Tool.describe`):
numbers, counts, ages, the subject of a PromQL or LogQL query, the gist of a log line.

Everything here reads a tool's (redacted) result as it is, `JsonValue`, and never fails
on a field that is missing or of another type: a describer says less, it does not crash.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pydantic import JsonValue

from tools.toolset import ToolResult

JsonObject = dict[str, JsonValue]

# Labels that say where a signal lives, most specific last: `shop/checkout`.
_PLACE = ("namespace", "service", "app", "deployment", "job", "container", "pod")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_METRIC = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[)")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`')
_LINE_FILTER = re.compile(r'\|[=~]\s*"((?:[^"\\]|\\.)*)"|\|[=~]\s*`([^`]*)`')
_LOGFMT = re.compile(r'([a-zA-Z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S+)')
_NOISE_KEY = re.compile(
    r"^(level|lvl|ts|time|timestamp|caller|msg|message)$|(^|_)(id|ms|us|ns|seconds|duration)$"
)
_HTTP_CLASS = re.compile(r"([1-5])(?:\.\.|xx)")
_SHORT_QUERY = 60
_QUOTE = 70


# -- reading results ------------------------------------------------------------------
def objects(value: JsonValue) -> list[JsonObject]:
    """The objects in a list (anything else: none)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def get(value: JsonValue, *path: str) -> JsonValue:
    """`value[a][b]…`, None where a step is missing."""
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def text(value: JsonValue) -> str:
    """A field as text ('' for None)."""
    return "" if value is None else str(value)


def texts(value: JsonValue) -> list[str]:
    """A list field as texts (anything else: none)."""
    return [text(v) for v in value] if isinstance(value, list) else []


def integer(value: JsonValue) -> int:
    """A field as an int (0 when it is not a number)."""
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else 0


def labels_of(value: JsonValue) -> dict[str, str]:
    """A label object as strings."""
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def total(result: ToolResult, shown: int) -> int:
    """How many items there were: the count a capping note starts with (`120 pods;
    showing the first 100`), else the items shown."""
    found = re.match(r"(\d+) ", result.note or "")
    return max(shown, int(found.group(1))) if found else shown


# -- words ------------------------------------------------------------------------------
def number(value: JsonValue) -> str:
    """A value for people: `0.12`, `0.00457`, `250`, `1,234.568`; text as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return text(value)
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1:
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 pod`, `3 pods`, `2 series` (with `many`)."""
    return f"{count:,} {noun if count == 1 else (many or noun + 's')}"


def listed(names: Sequence[str], most: int = 3) -> str:
    """`a, b, c` or `a, b, c and 2 more`."""
    unique = list(dict.fromkeys(n for n in names if n))
    head = ", ".join(unique[:most])
    return f"{head} and {len(unique) - most} more" if len(unique) > most else head


def quote(line: str, limit: int = _QUOTE) -> str:
    """`'text'`, cut to `limit` characters."""
    flat = " ".join(line.split())
    return f"'{flat if len(flat) <= limit else flat[: limit - 1].rstrip() + '…'}'"


def minutes(count: int) -> str:
    """A window: `15 min`, `2 h`, `3 d`."""
    if count < 120 or count % 60:
        return f"{count} min"
    if count < 2 * 24 * 60 or count % (24 * 60):
        return f"{count // 60} h"
    return f"{count // (24 * 60)} d"


def seconds(value: JsonValue) -> str:
    """A duration in seconds as `45 s`, `2 min`, `1.5 h`."""
    count = float(value) if isinstance(value, int | float) else 0.0
    if count < 120:
        return f"{number(count)} s"
    if count < 2 * 3600:
        return f"{number(round(count / 60, 1))} min"
    return f"{number(round(count / 3600, 1))} h"


def ago(value: JsonValue, now: datetime | None = None) -> str:
    """An ISO time as `12 min ago` (`just now`, `3 h ago`, `2 d ago`); '' if unreadable."""
    try:
        then = datetime.fromisoformat(text(value))
    except ValueError:
        return ""
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    elapsed = ((now or datetime.now(UTC)) - then).total_seconds() / 60
    if elapsed < 1:
        return "just now"
    if elapsed < 120:
        return f"{elapsed:.0f} min ago"
    if elapsed < 48 * 60:
        return f"{elapsed / 60:.0f} h ago"
    return f"{elapsed / (24 * 60):.0f} d ago"


def failed(doing: str, result: ToolResult) -> str:
    """`Could not <doing>: <the error>`."""
    return f"Could not {doing}: {result.error or 'it failed'}"


# -- places and queries -----------------------------------------------------------------
def place(labels: Mapping[str, str]) -> str:
    """Where labels point: `shop/checkout` from namespace and service (or app, job...)."""
    namespace = labels.get("namespace", "")
    name = next((labels[k] for k in _PLACE[1:] if labels.get(k)), "")
    return "/".join(p for p in (namespace, name) if p)


def matchers(query: str) -> list[tuple[str, str, str]]:
    """The label matchers of a PromQL or LogQL query: (label, operator, value)."""
    return [(m[1], m[2], m[3]) for m in _MATCHER.finditer(query)]


def equal_labels(query: str) -> dict[str, str]:
    """The labels a query pins with `=`."""
    return {label: value for label, op, value in matchers(query) if op == "="}


def promql_subject(query: str) -> str:
    """What a PromQL query reads, for people: the query itself when short, else its
    metrics, the matchers beyond the place, and the place: `the 5xx ratio of
    http_requests_total for shop/checkout`."""
    flat = " ".join(query.split())
    if len(flat) <= _SHORT_QUERY:
        return f"`{flat}`"
    bare = _QUOTED.sub('""', flat)
    metrics = listed(_METRIC.findall(bare), 2) or "an expression"
    others = [(label, op, value) for label, op, value in matchers(flat) if label not in _PLACE]
    classes = [_HTTP_CLASS.sub(r"\1xx", v) for k, op, v in others if _is_http_class(k, op, v)]
    extra = listed([f"{k}{op}{v}" for k, op, v in others if not _is_http_class(k, op, v)], 2)
    where = place(equal_labels(flat))
    ratio = ""
    if "/" in re.sub(r"\[[^\]]*\]", "", bare):
        ratio = f"the {classes[0]} ratio of " if classes else "the ratio of "
    elif classes:
        extra = listed([*classes[:1], extra], 2)
    return (
        f"{ratio}{metrics}" + (f" ({extra})" if extra else "") + (f" for {where}" if where else "")
    )


def _is_http_class(label: str, op: str, value: str) -> bool:
    """`code=~"5.."`: a class of HTTP status codes."""
    return (
        label in ("code", "status", "status_code")
        and op == "=~"
        and bool(_HTTP_CLASS.fullmatch(value))
    )


def line_filter(query: str) -> str:
    """A LogQL query's first line filter as a word for its lines: `error`, `timeout/panic`,
    `matching` for a pattern; '' when the query has none."""
    found = _LINE_FILTER.search(query)
    if found is None:
        return ""
    wanted = (found.group(1) or found.group(2) or "").replace("(?i)", "")
    if re.fullmatch(r"[\w.=:-]+(\|[\w.=:-]+)*", wanted):
        return wanted.replace("|", "/")
    return "matching"


def log_gist(line: str) -> str:
    """The message of a log line without what varies: for logfmt, `msg` and up to two
    telling fields (`upstream timeout (upstream=payments.shop:8443)`); else the line."""
    pairs = [(k, v.strip('"').replace('\\"', '"')) for k, v in _LOGFMT.findall(line)]
    message = next((v for k, v in pairs if k in ("msg", "message")), "")
    if not message:
        return line.strip()
    telling = [f"{k}={v}" for k, v in pairs if not _NOISE_KEY.search(k)][:2]
    return f"{message} ({', '.join(telling)})" if telling else message


def frequent(lines: Sequence[str]) -> tuple[str, int]:
    """The most frequent gist among `lines` and how often it occurs."""
    counts = Counter(log_gist(line) for line in lines)
    if not counts:
        return "", 0
    return counts.most_common(1)[0]


# -- series -----------------------------------------------------------------------------
def varying(series: Sequence[JsonObject]) -> list[str]:
    """The label names whose values differ between series (what tells them apart)."""
    names = {k for s in series for k in labels_of(s.get("labels"))}
    return sorted(n for n in names if len({labels_of(s.get("labels")).get(n) for s in series}) > 1)


def series_name(one: JsonObject, names: Sequence[str]) -> str:
    """A series by the labels that tell it apart: `code=500, pod=a`."""
    labels = labels_of(one.get("labels"))
    return ", ".join(f"{n}={labels[n]}" for n in names[:2] if n in labels)


def _value(one: JsonObject, key: str) -> float:
    value = one.get(key)
    return float(value) if isinstance(value, int | float) else -math.inf


def instant_gist(series: Sequence[JsonObject], count: int) -> str:
    """Instant values: `0.12`, or `3 series; highest 0.5 (code=500)`."""
    if len(series) == 1:
        return number(series[0].get("value"))
    top = max(series, key=lambda s: _value(s, "value"))
    name = series_name(top, varying(series))
    return f"{plural(count, 'series', 'series')}; highest {number(top.get('value'))}" + (
        f" ({name})" if name else ""
    )


def shape(one: JsonObject) -> str:
    """One range summary in words: `rising from 0.002 to 0.12`, `flat at 250`."""
    if "last" not in one:
        return text(one.get("note")) or "no values"
    trend = text(one.get("trend"))
    if trend == "flat":
        return f"flat at {number(one.get('mean'))}"
    return f"{trend} from {number(one.get('first'))} to {number(one.get('last'))}"


def range_gist(series: Sequence[JsonObject], count: int) -> str:
    """Range summaries: `rising from 0.002 to 0.12; biggest jump from 0.00457 to 0.12 4
    min ago`, or for several series the one highest at the end."""
    if len(series) == 1:
        one = series[0]
        line = shape(one)
        change = get(one, "largest_change")
        if one.get("trend") not in ("flat", None) and isinstance(change, dict):
            line += (
                f"; biggest jump from {number(change.get('from'))} to "
                f"{number(change.get('to'))} {number(change.get('minutes_ago'))} min ago"
            )
        return line
    top = max(series, key=lambda s: _value(s, "last"))
    name = series_name(top, varying(series))
    return (
        f"{plural(count, 'series', 'series')}; highest at the end"
        + (f" {name}" if name else "")
        + f": {shape(top)}"
    )
