"""`incident-bot tools list|run`: the operators' view of the read-only tools.

`tools list` probes every toolset's backend once, in parallel and within the tool timeout
(INCIDENT_BOT_TOOL_TIMEOUT), and prints each tool with whether its backend is configured
and reachable, and why not; each tool the policy allows an MCP server is listed with the
server's state (up, or down and why) or why it is not offered. `tools run NAME --input
JSON` runs one built-in tool and prints its result exactly as the model would read it
(rendered within the tool's budget).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from bot.approvals import KNOWN_ACTIONS, REVERSIBLE_ACTIONS
from bot.deps import TOOLSETS
from bot.mcp_tools import open_mcp_tools
from bot.settings import Settings
from bot.tool_context import open_tool_context
from policies.schema import load_policy
from tools.toolset import Health, Tool, ToolContext, ToolInputError, ToolResult, Toolset

if TYPE_CHECKING:
    from tools.mcp_source import McpSources

EXIT_OK = 0
EXIT_ERROR = 1


def add_tools_commands(sub: Any) -> None:
    """Register `tools list` and `tools run` on the top-level subparsers."""
    tools = sub.add_parser("tools", help="list the read-only tools, or run one").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = tools.add_parser(
        "list", help="each tool, and whether its backend is configured and reachable"
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=tools_list)
    run = tools.add_parser("run", help="run one tool and print its result as the model sees it")
    run.add_argument("name", help="the tool, e.g. prometheus.query or prometheus_query")
    run.add_argument("--input", default="{}", help="the tool's arguments as a JSON object")
    run.set_defaults(handler=tools_run)


async def probe(toolset: Toolset, ctx: ToolContext) -> Health:
    """The toolset's health, never taking much longer than the tool timeout."""
    if toolset.probe is None:
        return Health(configured=True, reachable=True, detail="no backend to check")
    try:
        async with asyncio.timeout(ctx.timeout_seconds + 1):
            return await toolset.probe(ctx)
    except TimeoutError:
        return Health(
            configured=True,
            reachable=False,
            detail=f"no answer within {ctx.timeout_seconds:g}s",
        )


def _state(health: Health) -> str:
    if not health.configured:
        return "not configured"
    return "reachable" if health.reachable else "unreachable"


async def tools_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print every tool with its backend's state (the policy's MCP servers' too); exit 1
    when a configured one fails."""
    toolsets = TOOLSETS
    policy = load_policy(
        settings.policy_dir, known_actions=KNOWN_ACTIONS, reversible_actions=REVERSIBLE_ACTIONS
    )
    async with (
        open_tool_context(settings) as ctx,
        open_mcp_tools(policy, reserved=[t.name for t in toolsets]) as (sources, offered),
    ):
        healths = await asyncio.gather(*(probe(t, ctx) for t in toolsets))
    rows = [
        {
            "tool": tool.name,
            "toolset": toolset.name,
            "state": _state(health),
            "reason": health.detail,
        }
        for toolset, health in zip(toolsets, healths, strict=True)
        for tool in toolset.tools
    ]
    mcp_rows = _mcp_rows(sources, offered)
    rows += mcp_rows
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        width = max(len(r["tool"]) for r in rows)
        for row in rows:
            print(f"{row['tool']:<{width}}  {row['state']:<14}  {row['reason']}")
    failing = any(h.configured and not h.reachable for h in healths)
    failing = failing or any(r["state"] != "reachable" for r in mcp_rows)
    return EXIT_ERROR if failing else EXIT_OK


def _mcp_rows(sources: McpSources | None, offered: dict[str, Tool]) -> list[dict[str, str]]:
    """A row per tool the policy allows an MCP server: reachable, unreachable (the server
    is down, and why) or not offered (the server does not list it as a read-only tool)."""
    rows = []
    for source in sources.sources if sources is not None else ():
        server = source.server
        for declared in server.tools:
            name = f"{server.name}.{declared.name}"
            if source.state != "up":
                state, reason = "unreachable", f"MCP server {source.state}"
            elif name.replace(".", "_") in offered:
                state, reason = "reachable", "MCP server up"
            elif declared.name in source.listed:
                state, reason = "not offered", "the MCP server marks it as not read-only"
            else:
                state, reason = "not offered", "the MCP server does not list it"
            rows.append({"tool": name, "toolset": server.name, "state": state, "reason": reason})
    return rows


def find_tool(name: str, toolsets: tuple[Toolset, ...]) -> Tool | None:
    """A tool by its dotted name or its API name."""
    return next(
        (t for ts in toolsets for t in ts.tools if name in (t.name, t.api_name)),
        None,
    )


async def tools_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one tool; print what the model would read. Exit 1 on an `error` result."""
    toolsets = TOOLSETS
    tool = find_tool(args.name, toolsets)
    if tool is None:
        known = ", ".join(t.name for ts in toolsets for t in ts.tools)
        print(f"incident-bot: no tool {args.name!r}; tools: {known}", file=sys.stderr)
        return EXIT_ERROR
    try:
        raw = json.loads(args.input)
        if not isinstance(raw, dict):
            raise ValueError("--input must be a JSON object")
        tool_args = tool.validate_input(raw)
    except (ValueError, ToolInputError) as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return EXIT_ERROR
    async with open_tool_context(settings) as ctx:
        try:
            async with asyncio.timeout(ctx.timeout_seconds):
                result = await tool.call(ctx, tool_args)
        except TimeoutError:
            result = ToolResult.fail(f"timed out after {ctx.timeout_seconds:g}s")
    print(tool.render(result))
    return EXIT_ERROR if result.status == "error" else EXIT_OK
