"""Validate a YAML file against a pydantic model, reporting every problem with its line.

The file is composed into YAML nodes (which keep their positions) and loaded as data;
each pydantic error location (`('actions', 2, 'approvals')`) is followed through the
nodes to the line it points at. A key that should not be there points at the key itself;
a missing field points at the mapping that lacks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong in a file: where, which field, and what."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        field = f"{self.field}: " if self.field else ""
        return f"{self.file}:{self.line}: {field}{self.message}"


class PolicyConfigError(Exception):
    """A policy that cannot be used (the pure layer's own error: it imports nothing above)."""


class PolicyError(PolicyConfigError):
    """Policy files that cannot be used; `problems` lists all of them."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        listed = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the policy:\n{listed}")


def field_path(loc: Sequence[int | str]) -> str:
    """`('actions', 2, 'approvals')` -> `actions[2].approvals`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def node_line(root: yaml.Node | None, loc: Sequence[int | str], *, key: bool = False) -> int:
    """The 1-based line of the node at `loc`, or of the deepest node on the way to it."""
    if root is None:
        return 1
    node: yaml.Node = root
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            found = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == part
                ),
                None,
            )
            if found is None:
                break
            node = found[0] if (last and key) else found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
        else:
            break
    return int(node.start_mark.line) + 1


def _message(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in {"extra_forbidden", "missing"} or isinstance(error["input"], dict):
        return message
    return f"{message} (got {error['input']!r})"


def validate_text(
    model: type[M], text: str, *, file: str, context: dict[str, Any] | None = None
) -> tuple[M | None, list[Problem], yaml.Node | None]:
    """The model read from YAML `text`, or None with every problem found in it."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        return (
            None,
            [Problem(file=file, line=line, field="", message=f"not YAML: {exc.problem}")],
            None,
        )
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [Problem(file=file, line=1, field="", message="must be a mapping")], root
    try:
        return model.model_validate(data, context=context), [], root
    except ValidationError as exc:
        problems = [
            Problem(
                file=file,
                line=node_line(root, e["loc"], key=e["type"] == "extra_forbidden"),
                field=field_path(e["loc"]),
                message=_message(e),
            )
            for e in exc.errors()
        ]
        return None, problems, root
