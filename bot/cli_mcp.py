"""`incident-bot mcp [--scope NAME]`: the bot's read-only tools as an MCP server on stdio.

An engineer's assistant gets the tools the model gets, the way a run gets them: only the
toolsets of the policy's scope called NAME (its namespaces; a rule without `namespaces`
reads none), a call outside them refused before anything is sent, each call bounded by
the tool timeout, each result redacted and cut to the tool's budget, each call logged on
stderr (stdout carries MCP). Without `--scope`: every toolset, any namespace, as
`incident-bot tools run`. Actions and remediations are never offered.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.approvals import KNOWN_ACTIONS, REVERSIBLE_ACTIONS
from bot.deps import TOOLSETS
from bot.mcp_tools import open_mcp_tools
from bot.scoping import offered_tools, refusal
from bot.settings import Settings
from bot.tool_calls import call_bounded
from bot.tool_context import open_tool_context
from bot.untrusted import redact_result
from policies.documents import PolicyConfigError
from policies.schema import load_policy
from policies.scope import Scope, named_scope
from tools.toolset import Tool, ToolContext, ToolInputError, ToolResult, index_tools

if TYPE_CHECKING:
    from mcp.server import Server

log = logging.getLogger(__name__)

EVERYTHING = Scope(toolsets=None, namespaces=None)


def add_mcp_command(sub: Any) -> None:
    """Register `mcp` on the top-level subparsers."""
    command = sub.add_parser("mcp", help="serve the read-only tools over MCP (stdio)")
    command.add_argument("--scope", help="the policy scope (its `name`) the tools are limited to")
    command.set_defaults(handler=serve_mcp)


async def serve_mcp(args: argparse.Namespace, settings: Settings) -> int:
    """Serve MCP on stdin/stdout until the client closes it."""
    from mcp.server.stdio import stdio_server

    policy = load_policy(
        settings.policy_dir, known_actions=KNOWN_ACTIONS, reversible_actions=REVERSIBLE_ACTIONS
    )
    scope = EVERYTHING
    if args.scope is not None:
        found = named_scope(policy.scopes, args.scope)
        if found is None:
            named = sorted(r.name for r in policy.scopes if r.name) or ["none"]
            raise PolicyConfigError(f"no scope {args.scope!r}; named scopes: {', '.join(named)}")
        scope = found
    async with (
        open_tool_context(settings) as ctx,
        open_mcp_tools(policy, reserved=[t.name for t in TOOLSETS]) as (_, mcp_tools),
    ):
        tools = offered_tools(scope, [*index_tools(TOOLSETS).values(), *mcp_tools.values()])
        server = tool_server(tools, scope, ctx)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    return 0


def tool_server(tools: Sequence[Tool], scope: Scope, ctx: ToolContext) -> Server:
    """A low-level MCP server answering `tools/list` and `tools/call` with `tools`."""
    import mcp_types as types
    from mcp.server import Server, ServerRequestContext

    by_name = {t.api_name: t for t in tools}
    listing = types.ListToolsResult(
        tools=[
            types.Tool(
                name=t.api_name,
                description=t.description,
                input_schema=t.input_schema(),
                annotations=types.ToolAnnotations(read_only_hint=True, destructive_hint=False),
            )
            for t in tools
        ]
    )

    async def list_tools(
        _: ServerRequestContext[Any], __: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return listing

    async def call_tool(
        _: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        content, failed = await run_call(by_name, scope, ctx, params.name, params.arguments or {})
        return types.CallToolResult(content=[types.TextContent(text=content)], is_error=failed)

    return Server("incident-bot", on_list_tools=list_tools, on_call_tool=call_tool)


async def run_call(
    tools: dict[str, Tool], scope: Scope, ctx: ToolContext, name: str, raw: dict[str, Any]
) -> tuple[str, bool]:
    """One call as a run makes it: validated, scoped, bounded, redacted, cut to budget.
    Returns the text the client reads and whether it is an error."""
    started = time.monotonic()
    tool = tools.get(name)
    if tool is None:
        result = ToolResult.fail(f"unknown tool {name!r}; available: {', '.join(sorted(tools))}")
    else:
        try:
            args = tool.validate_input(raw)
        except ToolInputError as exc:
            result = ToolResult.fail(str(exc))
        else:
            refused = refusal(scope, tool, args)
            result = ToolResult.fail(refused) if refused else await call_bounded(tool, ctx, args)
    result, redactions = redact_result(result)
    content = tool.render(result) if tool is not None else result.render()
    log.info(
        "mcp tool call",
        extra={
            "tool": name,
            "status": result.status,
            "seconds": round(time.monotonic() - started, 3),
            "redactions": sum(redactions.values()),
        },
    )
    return content, result.status == "error"
