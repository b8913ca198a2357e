"""The policy's MCP servers as tool sources, opened with the deps and closed with them.

The `mcp` SDK is imported only when the policy names a server, so a bot without one
never loads it. The servers' tools are listed once, in parallel, each server within its
`connect_seconds`: the model's tool list is the cached prefix of every
request, so it is fixed while the process runs. A server down then offers nothing until
the next start; one lost later is reconnected on the next call.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from policies.documents import PolicyConfigError
from policies.schema import Policy
from tools.toolset import Tool

if TYPE_CHECKING:
    from tools.mcp_source import McpSources


@asynccontextmanager
async def open_mcp_tools(
    policy: Policy, *, reserved: Collection[str]
) -> AsyncIterator[tuple[McpSources | None, dict[str, Tool]]]:
    """The sources (None without servers) and their offered tools by API name.

    `reserved` are the built-in toolsets' names, which no server may take: scopes name
    toolsets, and one name must mean one set of tools.
    """
    if not policy.mcp_servers:
        yield None, {}
        return
    clash = sorted({s.name for s in policy.mcp_servers} & set(reserved))
    if clash:
        raise PolicyConfigError(f"mcp_servers: {', '.join(clash)} is a built-in toolset's name")
    from tools.mcp_source import McpSources

    sources = McpSources(policy.mcp_servers, environ=os.environ)
    try:
        tools = await sources.discover()
        yield sources, {t.api_name: t for t in tools}
    finally:
        await sources.aclose()
