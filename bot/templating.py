"""`{{ path | filter }}` templates over alert labels and tool results, for runbooks.

A path is dotted (`labels.service`, `steps.history.data.revisions.1.revision`); numeric
parts index lists. A string that is one whole template keeps the value's type (so a
revision stays an int); inside longer text values are formatted. No code is evaluated.

Label values come from whoever can send an alert, so where a template sits inside a
query (`render(..., escape=True)`: a runbook's tool arguments and verification query)
its value is escaped for the place it lands, as PromQL, LogQL and Alertmanager matchers
read it: inside a quoted string, backslash, the quote and line breaks are escaped (and,
in a string after `=~`, `!~` or `|~`, regular-expression metacharacters too, so the
value matches only itself); outside quotes only `[A-Za-z0-9_.:-]` may appear. A value
that cannot be placed safely raises `UnsafeValue`. Findings and summaries are rendered
without escaping: they are text for people, not queries.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import JsonValue

_TEMPLATE = re.compile(r"\{\{\s*([\w.\-]+)\s*(?:\|\s*(\w+)\s*)?\}\}")
_BARE = re.compile(r"[A-Za-z0-9_.:-]*")
_REGEX_OPERATORS = ("=~", "!~", "|~")
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
_STRING_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class TemplateError(LookupError):
    """A template that cannot be rendered."""


class MissingValue(TemplateError):
    """A template names a path that the context does not have."""


class UnsafeValue(TemplateError):
    """A value that cannot be placed where its template sits without changing the query."""


def lookup(context: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or raise `MissingValue`."""
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise MissingValue(path)
    return value


def _format(value: Any, filter_name: str | None) -> Any:
    if filter_name is None:
        return value
    if filter_name == "percent":
        return f"{float(value) * 100:.1f}%"
    if filter_name == "int":
        return int(float(value))
    raise MissingValue(f"unknown filter {filter_name!r}")


def render(template: JsonValue, context: dict[str, Any], *, escape: bool = False) -> JsonValue:
    """Render templates inside strings, lists and objects; raise `MissingValue` on gaps.

    With `escape`, a template inside a longer string is escaped for its place in a query
    (see the module's docstring) or raises `UnsafeValue`; a whole-string template keeps
    its value as it is either way.
    """
    if isinstance(template, dict):
        return {k: render(v, context, escape=escape) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, context, escape=escape) for v in template]
    if not isinstance(template, str):
        return template
    whole = _TEMPLATE.fullmatch(template.strip())
    if whole:
        value: JsonValue = _format(lookup(context, whole.group(1)), whole.group(2))
        return value
    if not escape:
        return _TEMPLATE.sub(
            lambda m: str(_format(lookup(context, m.group(1)), m.group(2))), template
        )
    return _render_in_query(template, context)


def _render_in_query(template: str, context: dict[str, Any]) -> str:
    out: list[str] = []
    place = _Place()
    end = 0
    for found in _TEMPLATE.finditer(template):
        literal = template[end : found.start()]
        place.read(literal)
        value = str(_format(lookup(context, found.group(1)), found.group(2)))
        out += [literal, place.escaped(found.group(1), value)]
        end = found.end()
    out.append(template[end:])
    return "".join(out)


class _Place:
    """Where the query text read so far leaves the next value: outside quotes, or inside
    a string opened with `quote` (a regular expression when it follows `=~`/`!~`/`|~`)."""

    def __init__(self) -> None:
        self.quote: str | None = None
        self.regex = False
        self._before = ""  # the text since the last string closed, outside quotes
        self._backslash = False

    def read(self, text: str) -> None:
        for char in text:
            if self.quote is None:
                if char in "\"'`":
                    self.quote = char
                    self.regex = self._before.rstrip().endswith(_REGEX_OPERATORS)
                else:
                    self._before = (self._before + char)[-8:]
            elif self._backslash:
                self._backslash = False
            elif char == "\\" and self.quote != "`":
                self._backslash = True
            elif char == self.quote:
                self.quote, self._before = None, ""

    def escaped(self, path: str, value: str) -> str:
        if self.quote is None:
            if _BARE.fullmatch(value) is None:
                raise UnsafeValue(
                    f"{path} = {value!r} cannot go outside a quoted string in a query; "
                    "put its template inside quotes"
                )
            return value
        if self.regex:
            value = "".join("\\" + c if c in _REGEX_META else c for c in value)
        if self.quote == "`":  # a raw string: nothing in it can be escaped
            if "`" in value:
                raise UnsafeValue(f"{path} = {value!r} cannot go inside a `raw string`")
            return value
        return "".join(_string_escape(c, self.quote) for c in value)


def _string_escape(char: str, quote: str) -> str:
    if char == quote:
        return "\\" + char
    if char in _STRING_ESCAPES:
        return _STRING_ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\x{ord(char):02x}"
    return char


def references(template: JsonValue) -> set[str]:
    """Every path a template mentions."""
    if isinstance(template, dict):
        return set().union(*(references(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(references(v) for v in template)) if template else set()
    if isinstance(template, str):
        return {m.group(1) for m in _TEMPLATE.finditer(template)}
    return set()
