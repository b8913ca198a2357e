"""The one redactor for untrusted text: each secret becomes `[REDACTED:<kind>]`.

Applied wherever text the bot did not write enters it: tool results and tool errors, alert
labels and annotations, Slack thread text given to the model, the model's own text.

What counts as a secret is in `tools.secret_patterns` (detect-secrets' format plugins plus
our own patterns; the detector types are in `tools.secret_detectors`). Overlapping hits
merge into one replacement whose kind is the most specific one (a GitHub token inside
`password=...` counts as `github_token`), and a value found once is replaced wherever else
it occurs in the same text. `counts` says how many of each kind were replaced; the values
themselves are never kept.

Redaction is idempotent, and a replacement never splits a backslash escape, so redacting
the text of a JSON document leaves it valid JSON.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pydantic import JsonValue

from tools.digest_cache import DigestCache
from tools.secret_detectors import Hit, fold
from tools.secret_patterns import assigned_value, catalog, name_kind

_PLACEHOLDER = re.compile(r"\[REDACTED:[a-z0-9_]{1,40}\]")
_MIN_RECURRING = 8  # shorter values could be ordinary words elsewhere in the text
_MAX_RECURRING = 64  # distinct values searched for again: each search reads the whole text
# Texts this short are redacted once and remembered: label values, field names and log
# fields repeat on every alert and log line, and scanning them is most of the cost.
_CACHED_CHARS = 256


@dataclass(frozen=True, kw_only=True)
class Redaction:
    """Redacted text, and how many secrets of each kind were replaced."""

    text: str
    counts: Mapping[str, int]  # kind -> number replaced; empty when nothing found


def redact(text: str) -> Redaction:
    """Replace every secret in `text` with `[REDACTED:<kind>]`."""
    return _redact_short(text) if len(text) <= _CACHED_CHARS else _redact(text)


def _redact_shared(text: str) -> Redaction:
    """`_redact` with read-only counts: a remembered redaction is shared."""
    found = _redact(text)
    return Redaction(text=found.text, counts=MappingProxyType(dict(found.counts)))


# Short texts' redactions, remembered by digest (never the raw text: `DigestCache`).
_redact_short = DigestCache(_redact_shared, maxsize=8192)


def _redact(text: str) -> Redaction:
    hits = _hits(text)
    if not hits:
        return Redaction(text=text, counts={})
    parts: list[str] = []
    counts: Counter[str] = Counter()
    pos = 0
    for start, end, kind in _merge(hits):
        parts += (text[pos:start], f"[REDACTED:{kind}]")
        counts[kind] += 1
        pos = end
    parts.append(text[pos:])
    return Redaction(text="".join(parts), counts=dict(counts))


def redact_text(text: str) -> str:
    """`redact(text).text`."""
    return redact(text).text


def redact_value(value: JsonValue) -> tuple[JsonValue, dict[str, int]]:
    """Redact every string in a JSON-like value, dict keys included.

    A string under a secret-sounding name (`"password": ...`, or the `value` of a
    `{"name": "DB_PASSWORD", "value": ...}` entry) is replaced whole even when nothing in it
    looks like a secret on its own. Returns a new value (the input is not changed) and the
    counts by kind.
    """
    return _redact_in(value, None)


def redact_fields(fields: Mapping[str, JsonValue]) -> tuple[dict[str, JsonValue], dict[str, int]]:
    """`redact_value` of a document's fields, whose names are the caller's own: each value
    is redacted as it would be under its name, and the names are kept."""
    cleaned: dict[str, JsonValue] = {}
    counts: Counter[str] = Counter()
    for name, value in fields.items():
        cleaned[name], found = _redact_in(value, name)
        counts.update(found)
    return cleaned, dict(counts)


def redact_named(text: str, name: str | None) -> tuple[str, Mapping[str, int]]:
    """`redact_value` of one string found under `name` (None: not under a name): its
    secrets replaced, or all of it when the name sounds secret. Returns the counts too."""
    redaction = redact(text)
    if redaction.counts:
        return redaction.text, redaction.counts
    kind = _field_kind(name, text) if name is not None else None
    if kind is None:
        return text, {}
    return f"[REDACTED:{kind}]", {kind: 1}


def _redact_in(value: JsonValue, name: str | None) -> tuple[JsonValue, dict[str, int]]:
    """`redact_value` of a value found under `name` (None: at the top of a document)."""
    counts: Counter[str] = Counter()

    def text(item: str, name: str | None = None) -> str:
        cleaned, found = redact_named(item, name)
        counts.update(found)
        return cleaned

    def walk(item: JsonValue, name: str | None = None) -> JsonValue:
        if isinstance(item, str):
            return text(item, name)
        if isinstance(item, list):
            return [walk(element) for element in item]
        if isinstance(item, dict):
            return {
                text(key): walk(element, _field_name(item, key)) for key, element in item.items()
            }
        return item

    return walk(value, name), dict(counts)


def _field_kind(name: str, value: str) -> str | None:
    """The kind of secret a field holds judging by its name, or None: other names, and
    values that are references or masks. The verdict on a short name is remembered (label
    and field names repeat on every alert and log line; their values, such as a group
    key, often do not): a name that sounds like no secret needs no look at the value."""
    named = _short_name_kind(name) if len(name) <= _CACHED_CHARS else name_kind(name)
    return named if named is not None and assigned_value(value) else None


_short_name_kind = DigestCache(name_kind, maxsize=8192)


def _field_name(item: Mapping[str, JsonValue], key: str) -> str:
    """The name a field's value goes by: its key, or for the `value` of a `name`/`value`
    entry (Kubernetes env, tags), the entry's name."""
    if key == "value":
        for sibling in ("name", "key"):
            if isinstance(named := item.get(sibling), str):
                return named
    return key


def merge_counts(*counts: Mapping[str, int]) -> dict[str, int]:
    """Sum several `counts` mappings by kind."""
    total: Counter[str] = Counter()
    for each in counts:
        total.update(each)
    return dict(total)


def _hits(text: str) -> list[Hit]:
    folded = fold(text)
    protected = _placeholders(text) if "[redacted:" in folded else []

    def kept(found: Iterator[Hit]) -> list[Hit]:
        hits = (_whole_escapes(text, hit) for hit in found)
        return [h for h in hits if h.start < h.end and not _overlaps(h, protected)]

    hits = [hit for d in catalog().wanted(text, folded) for hit in kept(d.find(text, folded))]
    return hits + kept(_recurrences(text, hits)) if hits else hits


def _recurrences(text: str, hits: list[Hit]) -> Iterator[Hit]:
    """Every other occurrence of a value found once: a password quoted in a log line
    and repeated in a probe command is the same secret."""
    seen: set[str] = set()
    for hit in hits:
        value = text[hit.start : hit.end]
        if len(value) < _MIN_RECURRING or value in seen:
            continue
        if len(seen) == _MAX_RECURRING:
            return
        seen.add(value)
        start = text.find(value)
        while start != -1:
            if start != hit.start:
                yield Hit(start, start + len(value), hit.kind, hit.rank)
            start = text.find(value, start + len(value))


def _merge(hits: list[Hit]) -> list[tuple[int, int, str]]:
    """Union overlapping hits; each union takes the kind of its highest-ranked hit."""
    hits.sort(key=lambda h: (h.start, -h.end))
    merged: list[tuple[int, int, str]] = []
    start, end, best = hits[0].start, hits[0].end, hits[0]
    for hit in hits[1:]:
        if hit.start < end:
            end = max(end, hit.end)
            if (hit.rank, hit.end - hit.start) > (best.rank, best.end - best.start):
                best = hit
        else:
            merged.append((start, end, best.kind))
            start, end, best = hit.start, hit.end, hit
    merged.append((start, end, best.kind))
    return merged


def _placeholders(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _PLACEHOLDER.finditer(text)]


def _overlaps(hit: Hit, protected: list[tuple[int, int]]) -> bool:
    """Whether `hit` touches an earlier replacement (which keeps redaction idempotent)."""
    index = bisect_right(protected, (hit.end,))
    return index > 0 and protected[index - 1][1] > hit.start


def _whole_escapes(text: str, hit: Hit) -> Hit:
    """Shrink `hit` so it neither starts on a backslash-escaped character nor ends on the
    backslash of an escape: inside a JSON string the replacement must not break one."""
    start, end = hit.start, hit.end
    if _escaped(text, start):
        start += 1
    if end < len(text) and _escaped(text, end):
        end -= 1
    if (start, end) == (hit.start, hit.end):
        return hit
    return Hit(start, end, hit.kind, hit.rank)


def _escaped(text: str, index: int) -> bool:
    run = 0
    while index - run > 0 and text[index - run - 1] == "\\":
        run += 1
    return run % 2 == 1
