"""The read-only tools of MCP servers (the policy's `mcp_servers`), offered like built-in ones.

One `McpSource` per server keeps one session: opened on first use by a task of its own (the
SDK's task groups must close in the task that opened them), shared by every call, opened
again after it is lost, closed by `aclose`. At most the server's `max_calls` calls run at
once. `discover` lists the server's tools: the tools offered are those the policy allows
and the server lists too, never another. A server that is down offers nothing and says
why in `state`; a call to a server lost later is retried on a new session (`tools.retry`),
then fails as an `error` result. Tool results are text: JSON when it parses, else lines,
so a long one is cut like any other tool's. A stdio server's stderr is logged, redacted
(`tools.mcp_stderr`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar, cast

import anyio
import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CONNECTION_CLOSED, CallToolResult, Implementation, TextContent
from mcp_types import Tool as ListedTool
from pydantic import BaseModel, ConfigDict, JsonValue, create_model

from policies.mcp import McpServer, McpTool
from tools.mcp_stderr import server_stderr
from tools.redaction import redact_text
from tools.retry import BackendUnavailable, call_with_retries
from tools.toolset import Tool, ToolContext, ToolResult

log = logging.getLogger(__name__)
T = TypeVar("T")

_CLIENT_INFO = Implementation(name="incident-bot", version="0.1.0")
_DESCRIPTION_CHARS = 1_000
_LIST_PAGES = 20
_NARROW = "the tool's own arguments for less output"
# Lost connections: the session is dropped and the call retried on a new one.
_LOST = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)


class McpSource:
    """One MCP server's session and the tools the policy lets it offer."""

    def __init__(self, server: McpServer, *, environ: Mapping[str, str]) -> None:
        self.server = server
        self._environ = environ
        self._lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(server.max_calls)
        self._client: Client | None = None
        self._closing: asyncio.Event | None = None
        self._holders: set[asyncio.Task[None]] = set()
        self.state = "not connected"
        self.listed: frozenset[str] = frozenset()

    async def discover(self) -> list[Tool]:
        """The allowed tools the server lists (within its `connect_seconds`); none when it
        is down."""
        try:
            async with asyncio.timeout(self.server.connect_seconds):
                listing = await self._listing()
        except TimeoutError:
            return self._down(f"no answer within {self.server.connect_seconds:g}s")
        except (BackendUnavailable, MCPError, *_LOST) as exc:
            return self._down(_reason(exc))
        self.listed = frozenset(listing)
        allowed = [t for t in self.server.tools if _offerable(listing.get(t.name))]
        return [self._tool(declared, listing[declared.name]) for declared in allowed]

    async def call(
        self, name: str, arguments: dict[str, Any], *, timeout_seconds: float
    ) -> ToolResult:
        """Call one tool (retrying on a new session when the connection is lost)."""

        async def once() -> CallToolResult:
            return await self._call_once(name, arguments)

        async with self._slots:
            try:
                answer = await call_with_retries(once, timeout_seconds=timeout_seconds)
            except BackendUnavailable as exc:
                self.state = f"down: {redact_text(str(exc))}"
                return ToolResult.fail(f"MCP server {self.server.name} is unavailable: {exc}")
            except MCPError as exc:
                return ToolResult.fail(f"MCP server {self.server.name}: {exc.error.message}")
        return tool_result(answer)

    async def aclose(self) -> None:
        """Close the session and wait for its task to end."""
        if self._closing is not None:
            self._closing.set()
        self._client = self._closing = None
        await asyncio.gather(*self._holders, return_exceptions=True)

    def _down(self, reason: str) -> list[Tool]:
        self.state = f"down: {redact_text(reason)}"
        log.warning("MCP server %s offers no tools: %s", self.server.name, self.state)
        return []

    async def _listing(self) -> dict[str, ListedTool]:
        client = await self._session()
        tools: dict[str, ListedTool] = {}
        cursor: str | None = None
        for _ in range(_LIST_PAGES):
            page = await self._lost_as_unavailable(client, client.list_tools(cursor=cursor))
            tools.update((t.name, t) for t in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def _call_once(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        client = await self._session()
        return await self._lost_as_unavailable(client, client.call_tool(name, arguments))

    async def _lost_as_unavailable(self, client: Client, request: Awaitable[T]) -> T:
        try:
            return await request
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise
            self._drop(client)
            raise BackendUnavailable(exc.error.message) from exc
        except (*_LOST, httpx2.TransportError) as exc:
            self._drop(client)
            raise BackendUnavailable(_reason(exc)) from exc

    def _drop(self, client: Client) -> None:
        if self._client is client and self._closing is not None:
            self._closing.set()
            self._client = self._closing = None

    async def _session(self) -> Client:
        async with self._lock:
            if self._client is not None:
                return self._client
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            closing = asyncio.Event()
            holder = asyncio.create_task(self._hold(ready, closing))
            self._holders.add(holder)
            holder.add_done_callback(self._holders.discard)
            try:
                client = await ready
            except BaseException:
                holder.cancel()
                raise
            self._client, self._closing = client, closing
            self.state = "up"
            return client

    async def _hold(self, ready: asyncio.Future[Client], closing: asyncio.Event) -> None:
        """Open the session, hand it over, keep it until `closing` is set, then close it."""
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(
                    Client(await self._transport(stack), client_info=_CLIENT_INFO, cache=None)
                )
                ready.set_result(client)
                await closing.wait()
        except Exception as exc:  # the boundary of the session's task: its caller reads it
            if not ready.done():
                ready.set_exception(BackendUnavailable(_reason(exc)))
            else:
                log.info("MCP server %s session ended: %s", self.server.name, _reason(exc))

    async def _transport(self, stack: AsyncExitStack) -> Any:
        server = self.server
        if server.command is not None:
            env = {name: self._environ[name] for name in server.env if name in self._environ}
            command, *args = server.command
            # The server's own log is untrusted text: logged line by line, redacted.
            errlog = await stack.enter_async_context(server_stderr(server.name))
            params = StdioServerParameters(command=command, args=args, env=env)
            return stdio_client(params, errlog=errlog)
        missing = sorted({v for v in server.headers.values() if v not in self._environ})
        if missing:
            raise BackendUnavailable(f"headers need unset variables: {', '.join(missing)}")
        headers = {name: self._environ[var] for name, var in server.headers.items()}
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300))
        )
        assert server.url is not None  # noqa: S101 - the policy gives a command or a url
        return streamable_http_client(server.url, http_client=http)

    def _tool(self, declared: McpTool, listed: ListedTool) -> Tool:
        schema = dict(listed.input_schema)

        def replace(generated: dict[str, Any]) -> None:
            generated.clear()
            generated.update(schema)

        model = create_model(
            f"{self.server.name}_{declared.name}_input",
            __config__=ConfigDict(extra="allow", json_schema_extra=replace),
        )
        # The server's words reach the model as the tool's description: untrusted text.
        text = redact_text(listed.description or declared.name)[:_DESCRIPTION_CHARS]
        name = declared.name

        async def function(ctx: ToolContext, args: BaseModel) -> ToolResult:
            return await self.call(name, args.model_dump(), timeout_seconds=ctx.timeout_seconds)

        return Tool(
            name=f"{self.server.name}.{declared.name}",
            description=f"{text}\n(Read-only tool of the MCP server {self.server.name}.)",
            input_model=model,
            function=function,
            budget_chars=declared.budget_chars,
            narrow=_NARROW,
        )


class McpSources:
    """Every MCP server of the policy, opened on first use and closed together."""

    def __init__(self, servers: Sequence[McpServer], *, environ: Mapping[str, str]) -> None:
        self.sources = tuple(McpSource(s, environ=environ) for s in servers)

    async def discover(self) -> list[Tool]:
        """The offered tools of every server, listed in parallel."""
        found = await asyncio.gather(*(s.discover() for s in self.sources))
        return [tool for tools in found for tool in tools]

    async def aclose(self) -> None:
        """Close every session."""
        await asyncio.gather(*(s.aclose() for s in self.sources))


def _offerable(listed: ListedTool | None) -> bool:
    """Whether a listed tool may be offered: listed, and not marked as writing."""
    if listed is None:
        return False
    hints = listed.annotations
    return hints is None or hints.read_only_hint is not False


def tool_result(answer: CallToolResult) -> ToolResult:
    """An MCP tool's answer as a `ToolResult`: its text as JSON when it parses, else lines."""
    texts = [block.text for block in answer.content if isinstance(block, TextContent)]
    others = sorted({block.type for block in answer.content if not isinstance(block, TextContent)})
    if answer.is_error:
        return ToolResult.fail(" ".join(texts) or "the tool reported an error")
    note = f"left out content of type {', '.join(others)}" if others else None
    if texts:
        return ToolResult.ok(_parsed("\n".join(texts)), note=note)
    if answer.structured_content is not None:
        return ToolResult.ok(cast(JsonValue, answer.structured_content), note=note)
    return ToolResult.no_data(note or "the tool returned nothing")


def _parsed(text: str) -> JsonValue:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict | list):
        return cast(JsonValue, value)
    return {"lines": cast(JsonValue, text.splitlines())}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _reason(exc.exceptions[0])
    if isinstance(exc, BackendUnavailable) or not str(exc):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
