"""Run the read-only tool calls of one turn: scope, timeout, redaction, audit, the line for people.

Each call is validated against its tool's input, refused before anything is sent when it
reads outside the run's scope, bounded by the tool timeout, and its result is redacted
before anything stores or shows it. A failing tool becomes an `error` result the model
reads, never a crash of the run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from bot.checkpoints import Checkpointer
from bot.metrics import Metrics
from bot.models import Flag, Run, Step, ToolCallPart, ToolResultPart
from bot.scoping import offered_tools, refusal, run_scope
from bot.untrusted import count, flags_in, record_flags, redact_result
from policies.schema import Policy
from tools.toolset import (
    Tool,
    ToolContext,
    ToolInputError,
    ToolResult,
    compact_json,
    describe_default,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ToolRunner:
    """Runs tool calls for the investigation loop."""

    tools: dict[str, Tool]
    tool_context: ToolContext
    policy: Policy
    metrics: Metrics
    checkpoints: Checkpointer

    async def run_batch(
        self, run: Run, calls: Sequence[ToolCallPart], *, index: int
    ) -> tuple[Step, list[Flag]]:
        """The results of a batch of tool calls (run in parallel) as one transcript step,
        and the flags raised by their text."""
        answers = await asyncio.gather(*(self._run_tool(run, call) for call in calls))
        results = [part for part, _ in answers]
        flags = [flag for _, found in answers for flag in found]
        return Step(index=index, role="user", author="tools", content=results), flags

    async def _run_tool(self, run: Run, call: ToolCallPart) -> tuple[ToolResultPart, list[Flag]]:
        tool = self.tools.get(call.name)
        started = time.monotonic()
        scope = run_scope(self.policy.scopes, run)
        args: BaseModel | None = None
        if tool is None:
            available = [t.api_name for t in offered_tools(scope, list(self.tools.values()))]
            result = ToolResult.fail(
                f"unknown tool {call.name!r}; available: {', '.join(sorted(available))}"
            )
        else:
            try:
                args = tool.validate_input(call.input)
            except ToolInputError as exc:
                result = ToolResult.fail(str(exc))
            else:
                # Scope is checked here, before the call, so a refused call sends nothing.
                refused = refusal(scope, tool, args)
                result = ToolResult.fail(refused) if refused else await self._call(tool, args)
        seconds = time.monotonic() - started
        name = tool.name if tool else "unknown"
        # Tool output is untrusted: its secrets go before anything stores or shows it.
        result, redactions = redact_result(result)
        count(self.metrics, "tool_result", redactions)
        self.metrics.tool_calls.labels(name, result.status).inc()
        self.metrics.tool_call_duration.labels(name).observe(seconds)
        content = tool.render(result) if tool is not None else result.render()
        flags = flags_in(f"tool:{call.name}", content)
        summary = self._summary(run, call, tool, args, result)
        # Noted: the batch's checkpoint writes these events (`Checkpointer.note`).
        await self.checkpoints.note(
            run.id,
            "tool_call",
            tool=call.name,
            input=compact_json(call.input),
            summary=summary,
            status=result.status,
            seconds=round(seconds, 3),
            error=result.error,
            redactions=redactions or None,
        )
        where = compact_json(call.input)
        await record_flags(self.checkpoints.note, self.metrics, run.id, [(where, f) for f in flags])
        part = ToolResultPart(
            tool_use_id=call.id,
            content=content,
            is_error=result.status == "error",
            summary=summary,
        )
        return part, flags

    def _summary(
        self,
        run: Run,
        call: ToolCallPart,
        tool: Tool | None,
        args: BaseModel | None,
        result: ToolResult,
    ) -> str:
        """The tool's own line for people about the redacted result; the default line for
        a call that never reached a tool, or when its describer fails (never the run)."""
        if tool is None or args is None:
            return describe_default(call.name, result)
        try:
            return tool.describe(args, result)
        except Exception:  # a describer's bug must not break the run: log, use the default
            log.exception(
                "tool %s could not describe its call", tool.name, extra={"run_id": run.id}
            )
            return describe_default(tool.name, result)

    async def _call(self, tool: Tool, args: BaseModel) -> ToolResult:
        return await call_bounded(tool, self.tool_context, args)


async def call_bounded(tool: Tool, ctx: ToolContext, args: BaseModel) -> ToolResult:
    """Run one validated call within the tool timeout; a failure is an `error` result."""
    try:
        async with asyncio.timeout(ctx.timeout_seconds):
            return await tool.call(ctx, args)
    except TimeoutError:
        return ToolResult.fail(f"timed out after {ctx.timeout_seconds:g}s; narrow the query")
    except Exception as exc:  # the boundary of one tool call: the model reads the error
        log.exception("tool %s failed", tool.name)
        return ToolResult.fail(f"{type(exc).__name__}: {exc}")
