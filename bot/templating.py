"""`{{ path | filter }}` templates over alert labels and tool results, for runbooks.

A path is dotted (`labels.service`, `steps.history.data.revisions.1.revision`); numeric
parts index lists. A string that is one whole template keeps the value's type (so a
revision stays an int); inside longer text values are formatted. No code is evaluated.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import JsonValue

_TEMPLATE = re.compile(r"\{\{\s*([\w.\-]+)\s*(?:\|\s*(\w+)\s*)?\}\}")


class MissingValue(LookupError):
    """A template names a path that the context does not have."""


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


def render(template: JsonValue, context: dict[str, Any]) -> JsonValue:
    """Render templates inside strings, lists and objects; raise `MissingValue` on gaps."""
    if isinstance(template, dict):
        return {k: render(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, context) for v in template]
    if not isinstance(template, str):
        return template
    whole = _TEMPLATE.fullmatch(template.strip())
    if whole:
        value: JsonValue = _format(lookup(context, whole.group(1)), whole.group(2))
        return value
    return _TEMPLATE.sub(lambda m: str(_format(lookup(context, m.group(1)), m.group(2))), template)


def references(template: JsonValue) -> set[str]:
    """Every path a template mentions."""
    if isinstance(template, dict):
        return set().union(*(references(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(references(v) for v in template)) if template else set()
    if isinstance(template, str):
        return {m.group(1) for m in _TEMPLATE.finditer(template)}
    return set()
