"""A local MCP server (the `mcp` SDK's MCPServer) for the MCP tool source tests.

`python tests/mcp_fixture_server.py` serves stdio; `--http PORT` streamable HTTP on
127.0.0.1. Its tools: `deploy_history` (many lines, one of them `FIXTURE_SECRET` from the
environment, which the policy passes through), `delete_namespace` (the policy never allows
it), `wait_forever` (never answers) and `exit_server` (crashes the server). With
`--require-header NAME=VALUE` every HTTP request must carry that header; with `--stderr` it
writes `FIXTURE_SECRET` to its stderr when it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("fixture")


@server.tool()
def deploy_history(service: str, lines: int = 400) -> str:
    """The deploy log of a service, one event a line."""
    secret = os.environ.get("FIXTURE_SECRET", "no secret")
    events = [f"{service}: deploy {i} rolled out" for i in range(lines)]
    events.insert(1, f"{service}: config loaded {secret}")
    return "\n".join(events)


@server.tool()
def delete_namespace(namespace: str) -> str:
    """Deletes a namespace."""
    return f"deleted {namespace}"


@server.tool()
async def wait_forever() -> str:
    """Never answers."""
    await asyncio.Event().wait()
    return "unreachable"


@server.tool()
def exit_server() -> str:
    """Ends the server process without answering (a crashed server)."""
    os._exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve streamable HTTP here")
    parser.add_argument("--require-header", default=None, help="NAME=VALUE every request needs")
    parser.add_argument("--stderr", action="store_true", help="write FIXTURE_SECRET to stderr")
    args = parser.parse_args()
    if args.stderr:
        print(os.environ.get("FIXTURE_SECRET", "no secret"), file=sys.stderr, flush=True)
    if args.http is None:
        server.run("stdio")
        return
    import uvicorn
    from starlette.responses import JSONResponse
    from starlette.types import ASGIApp, Receive, Scope, Send

    app: ASGIApp = server.streamable_http_app()
    if args.require_header:
        name, value = args.require_header.split("=", 1)
        inner = app

        async def checked(scope: Scope, receive: Receive, send: Send) -> None:
            headers = dict(scope.get("headers", []))
            if scope["type"] == "http" and headers.get(name.lower().encode()) != value.encode():
                await JSONResponse({"error": f"missing {name}"}, status_code=401)(
                    scope, receive, send
                )
                return
            await inner(scope, receive, send)

        app = checked
    uvicorn.run(app, host="127.0.0.1", port=args.http, log_level="warning")


if __name__ == "__main__":
    main()
