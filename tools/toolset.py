"""Tool, Toolset and ToolResult: typed functions the model (or the runbook planner) can call.

A tool is an async function `(ctx, args) -> ToolResult` whose `args` is a pydantic model:
the model sees the function's docstring as the tool's description and the model's JSON
schema as its input schema. Tools never check policy; the loop decides what to offer.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, get_type_hints

import aiohttp
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

# About 4k tokens at ~4 characters a token.
DEFAULT_BUDGET_CHARS = 16_000


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """The clients a tool call may use; built once per process, shared by every call."""

    http: aiohttp.ClientSession
    prometheus_url: str | None
    kubernetes: Any | None  # kubernetes_asyncio ApiClient with read-only credentials
    timeout_seconds: float = 20.0


class ToolResult(BaseModel):
    """What a tool returns: a status the model can branch on, the data, or the error."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "no_data", "error"]
    data: JsonValue = None
    error: str | None = None
    note: str | None = None

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

    def render(self, budget_chars: int = DEFAULT_BUDGET_CHARS) -> str:
        """The result as the model reads it: JSON, cut to the budget with a note saying so."""
        text = self.model_dump_json(exclude_none=True)
        if len(text) <= budget_chars:
            return text
        cut = text[:budget_chars]
        return cut + (
            f"\n[truncated: {len(text) - budget_chars} of {len(text)} characters cut; "
            "narrow the query (fewer series, a shorter window, a label filter) to see the rest]"
        )


ToolFunction = Callable[[ToolContext, Any], Awaitable[ToolResult]]


@dataclass(frozen=True, kw_only=True)
class Tool:
    """One read-only tool: a name, a description for the model, a typed input."""

    name: str
    description: str
    input_model: type[BaseModel]
    function: ToolFunction

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


def describe_validation_error(exc: ValidationError) -> str:
    """A validation error as one line that names each bad field: `a.b: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}" for err in exc.errors()
    )


class ToolInputError(ValueError):
    """The arguments of a tool call do not fit its input model."""


def tool(name: str) -> Callable[[ToolFunction], Tool]:
    """Make a `Tool` from an async function `(ctx, args: SomeInput) -> ToolResult`."""

    def wrap(function: ToolFunction) -> Tool:
        params = list(inspect.signature(function).parameters)
        input_model = get_type_hints(function)[params[1]]
        description = inspect.cleandoc(function.__doc__ or "")
        if not description:
            raise TypeError(f"tool {name} needs a docstring: it is the model's description")
        return Tool(name=name, description=description, input_model=input_model, function=function)

    return wrap


@dataclass(frozen=True, kw_only=True)
class Toolset:
    """A named group of tools that share a backend."""

    name: str
    tools: tuple[Tool, ...]


def index_tools(toolsets: tuple[Toolset, ...]) -> dict[str, Tool]:
    """Every tool by its API name (the name tool calls use)."""
    return {t.api_name: t for toolset in toolsets for t in toolset.tools}


def compact_json(value: Any) -> str:
    """JSON without spaces, for tool arguments in logs and transcripts."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
