"""Tool, Toolset and ToolResult: typed functions the model (or the runbook planner) can call.

A tool is an async function `(ctx, args) -> ToolResult` whose `args` is a pydantic model:
the model sees the function's docstring as the tool's description and the model's JSON
schema as its input schema. Tools never check policy; the loop decides what to offer, and a
tool only declares which of its input fields names a Kubernetes namespace, so the loop can
refuse a call outside the run's scope before anything is sent.

A result is rendered to at most the tool's budget: the longest list in it is shortened
(the JSON stays valid) and a `truncated` note says what was cut and how to narrow the query.
For people, a tool describes each call in one line (`Tool.describe`), never in JSON.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_type_hints

import aiohttp
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from tools.http_backend import NO_AUTH, HttpAuth
from tools.kube_client import KubernetesApi

# About 4k tokens at ~4 characters a token.
DEFAULT_BUDGET_CHARS = 16_000
DEFAULT_NARROW = "fewer series, a shorter window, a label filter"
SUMMARY_CHARS = 160


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """The clients a tool call may use; built once per process, shared by every call."""

    http: aiohttp.ClientSession
    prometheus_url: str | None
    kubernetes: KubernetesApi | None  # with read-only credentials
    timeout_seconds: float = 20.0
    prometheus_auth: HttpAuth = NO_AUTH
    alertmanager_url: str | None = None
    alertmanager_auth: HttpAuth = NO_AUTH
    loki_url: str | None = None
    loki_auth: HttpAuth = NO_AUTH


class ToolResult(BaseModel):
    """What a tool returns: a status the model can branch on, the data, or the error."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "no_data", "error"]
    data: JsonValue = None
    error: str | None = None
    note: str | None = None
    truncated: str | None = None

    @classmethod
    def ok(cls, data: JsonValue, *, note: str | None = None) -> ToolResult:
        """A successful result."""
        return cls(status="ok", data=data, note=note)

    @classmethod
    def no_data(cls, note: str) -> ToolResult:
        """A successful call that found nothing; `note` says what was looked for."""
        return cls(status="no_data", note=note)

    @classmethod
    def fail(cls, error: str) -> ToolResult:
        """A failed call; `error` says what went wrong in words the model can act on."""
        return cls(status="error", error=error)

    def render(
        self,
        budget_chars: int = DEFAULT_BUDGET_CHARS,
        *,
        narrow: str = DEFAULT_NARROW,
        keep_last: bool = False,
    ) -> str:
        """The result as the model reads it: JSON of at most `budget_chars`, plus a note
        saying what was cut and how to narrow the query when it did not fit. The longest
        list keeps its first items, or its last ones with `keep_last` (newest log lines)."""
        text = self.model_dump_json(exclude_none=True)
        if len(text) <= budget_chars:
            return text
        shortened = _shorten(self, budget_chars, keep_last=keep_last)
        if shortened is not None:
            result, shown, total, where = shortened
            which = "last" if keep_last else "first"
            note = (
                f"showing the {which} {shown} of {total} {where}; {len(text) - len(result)} "
                f"of {len(text)} characters cut; to see the rest narrow the query ({narrow})"
            )
            return result[:-1] + ',"truncated":' + json.dumps(note) + "}"
        return text[:budget_chars] + (
            f"\n[truncated: {len(text) - budget_chars} of {len(text)} characters cut; "
            f"narrow the query ({narrow}) to see the rest]"
        )


def _longest_list(data: JsonValue) -> tuple[str | None, list[JsonValue]] | None:
    """The list to shorten: `data` itself, or its longest list-valued field."""
    if isinstance(data, list):
        return None, data
    if isinstance(data, dict):
        lists = [(k, v) for k, v in data.items() if isinstance(v, list) and v]
        if lists:
            return max(lists, key=lambda kv: len(json.dumps(kv[1], default=str)))
    return None


def _shorten(
    result: ToolResult, budget_chars: int, *, keep_last: bool
) -> tuple[str, int, int, str] | None:
    """(JSON with the longest list cut to fit, items kept, items in all, what they are)."""
    found = _longest_list(result.data)
    if found is None:
        return None
    key, items = found

    def dumped(count: int) -> str:
        kept: JsonValue = (items[len(items) - count :]) if keep_last else items[:count]
        data = kept if key is None else {**_as_dict(result.data), key: kept}
        return result.model_copy(update={"data": data}).model_dump_json(exclude_none=True)

    low, high = 0, len(items)  # dumped(low) fits, unless low == 0; binary search the most
    if len(dumped(0)) > budget_chars:
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if len(dumped(middle)) <= budget_chars:
            low = middle
        else:
            high = middle - 1
    where = "items" if key is None else f"items of `{key}`"
    return dumped(low), low, len(items), where


def _as_dict(data: JsonValue) -> dict[str, JsonValue]:
    return data if isinstance(data, dict) else {}


ToolFunction = Callable[[ToolContext, Any], Awaitable[ToolResult]]
# A tool's account of one call for people: `(args, result) -> "Queried ...: 0.12"`.
Describer = Callable[[Any, ToolResult], str]
InputT = TypeVar("InputT", bound=BaseModel)


@dataclass(frozen=True, kw_only=True)
class Tool:
    """One read-only tool: a name, a description for the model, a typed input."""

    name: str
    description: str
    input_model: type[BaseModel]
    function: ToolFunction
    # The input field that names a Kubernetes namespace, for the run's scope check.
    namespace_field: str | None = None
    budget_chars: int = DEFAULT_BUDGET_CHARS
    narrow: str = DEFAULT_NARROW
    keep_last: bool = False  # when cut, keep a list's last items (logs: the newest lines)
    describer: Describer | None = None

    @property
    def toolset(self) -> str:
        """The toolset the tool belongs to: the first part of its dotted name."""
        return self.name.split(".", 1)[0]

    @property
    def api_name(self) -> str:
        """The name on the Messages API, which does not allow dots."""
        return self.name.replace(".", "_")

    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the tool's input."""
        return self.input_model.model_json_schema()

    def validate_input(self, raw: dict[str, JsonValue]) -> BaseModel:
        """Parse raw arguments; raises `ToolInputError` with a message for the model."""
        try:
            return self.input_model.model_validate(raw)
        except ValidationError as exc:
            raise ToolInputError(
                f"invalid arguments for {self.api_name}: {describe_validation_error(exc)}"
            ) from exc

    async def call(self, ctx: ToolContext, args: BaseModel) -> ToolResult:
        """Run the tool on validated arguments."""
        return await self.function(ctx, args)

    def namespace_of(self, args: BaseModel) -> str | None:
        """The namespace a validated call reads, None when the tool has no namespace."""
        if self.namespace_field is None:
            return None
        value = getattr(args, self.namespace_field, None)
        return None if value is None else str(value)

    def render(self, result: ToolResult) -> str:
        """A result of this tool as the model reads it, within the tool's budget."""
        return result.render(self.budget_chars, narrow=self.narrow, keep_last=self.keep_last)

    def describe(self, args: BaseModel, result: ToolResult) -> str:
        """The call in one line a person reads, with its key figure and no JSON; the
        default line (the tool in words and how it went) for a tool without a describer."""
        if self.describer is None:
            return describe_default(self.name, result)
        return one_line(self.describer(args, result))


def one_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    """`text` as one line of at most `limit` characters, cut before any JSON object."""
    flat = " ".join(text.split())
    if '{"' in flat:
        flat = flat.split('{"', 1)[0].rstrip(" :") + " …"
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def describe_default(name: str, result: ToolResult) -> str:
    """The line for a call no describer speaks for (an unknown tool, a refused call, a
    step recorded before tools described their calls): the tool in words, how it went."""
    words = name.replace(".", " ").replace("_", " ")
    if result.status == "error":
        return one_line(f"Could not run {words}: {result.error or 'it failed'}")
    if result.status == "no_data":
        return one_line(f"{words.capitalize()} found nothing: {result.note or 'no data'}")
    data = result.data
    if isinstance(data, list):
        got = f"{len(data)} {'result' if len(data) == 1 else 'results'}"
    elif isinstance(data, str | int | float):
        got = str(data)
    else:
        got = "done"
    return one_line(f"Ran {words}: {got}")


def describe_validation_error(exc: ValidationError) -> str:
    """A validation error as one line that names each bad field: `a.b: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in exc.errors()
    )


class ToolInputError(ValueError):
    """The arguments of a tool call do not fit its input model."""


def tool(
    name: str,
    *,
    namespace: str | None = None,
    budget_chars: int = DEFAULT_BUDGET_CHARS,
    narrow: str = DEFAULT_NARROW,
    keep_last: bool = False,
    describe: Callable[[InputT, ToolResult], str] | None = None,
) -> Callable[[Callable[[ToolContext, InputT], Awaitable[ToolResult]]], Tool]:
    """Make a `Tool` from an async function `(ctx, args: SomeInput) -> ToolResult`.

    `namespace` names the input field holding the Kubernetes namespace the call reads;
    `narrow` tells the model how to ask for less when a result is cut to `budget_chars`;
    `describe(args, result)` words a call for people (the progress views, the report).
    """

    def wrap(function: Callable[[ToolContext, InputT], Awaitable[ToolResult]]) -> Tool:
        params = list(inspect.signature(function).parameters)
        input_model = get_type_hints(function)[params[1]]
        description = inspect.cleandoc(function.__doc__ or "")
        if not description:
            raise TypeError(f"tool {name} needs a docstring: it is the model's description")
        if namespace is not None and namespace not in input_model.model_fields:
            raise TypeError(f"tool {name}: its input has no namespace field {namespace!r}")
        return Tool(
            name=name,
            description=description,
            input_model=input_model,
            function=function,
            namespace_field=namespace,
            budget_chars=budget_chars,
            narrow=narrow,
            keep_last=keep_last,
            describer=describe,
        )

    return wrap


@dataclass(frozen=True, kw_only=True)
class Health:
    """Whether a toolset's backend is configured and answers, with the reason."""

    configured: bool
    reachable: bool
    detail: str


@dataclass(frozen=True, kw_only=True)
class Toolset:
    """A named group of tools that share a backend."""

    name: str
    tools: tuple[Tool, ...]
    # Checks the backend within the context's timeout (for `incident-bot tools list`).
    probe: Callable[[ToolContext], Awaitable[Health]] | None = None

    def __post_init__(self) -> None:
        strays = [t.name for t in self.tools if t.toolset != self.name]
        if strays:
            # Scoping finds a tool's toolset from its name, so the two must agree.
            raise ValueError(f"tools of toolset {self.name} must be named {self.name}.*: {strays}")


def index_tools(toolsets: tuple[Toolset, ...]) -> dict[str, Tool]:
    """Every tool by its API name (the name tool calls use)."""
    return {t.api_name: t for toolset in toolsets for t in toolset.tools}


def compact_json(value: Any) -> str:
    """JSON without spaces, for tool arguments in logs and transcripts."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
