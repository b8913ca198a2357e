"""The policy's `mcp_servers`: MCP servers whose allow-listed read-only tools the bot offers.

    mcp_servers:
      - name: github                      # the toolset name scopes list
        command: [github-mcp, --read-only]  # stdio: argv of a process the bot starts
        env: [GITHUB_TOKEN]               # names passed through from the bot's environment
        tools:
          - {name: search_issues, read_only: true}
      - name: runbooks
        url: https://mcp.example.com/mcp  # streamable HTTP
        headers: {Authorization: RUNBOOKS_MCP_AUTHORIZATION}  # header -> env variable
        tools:
          - {name: find_runbook, read_only: true, budget_chars: 8000}

Nothing is offered by default: only the tools listed here, and only those the server lists
too. Secrets never live in the YAML: `env` and `headers` name environment variables.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


class McpTool(BaseModel):
    """One tool of a server the bot may offer; it must be declared read-only."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    read_only: Literal[True]
    budget_chars: int = Field(default=16_000, ge=200)


class McpServer(BaseModel):
    """An MCP server: a stdio command or a streamable HTTP URL, and its allowed tools."""

    model_config = ConfigDict(extra="forbid")
    # No `_`: the tools' API names are `<server>_<tool>`, and must read back one way.
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    command: list[str] | None = Field(default=None, min_length=1)
    env: list[str] = Field(default_factory=list)
    url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    headers: dict[str, str] = Field(default_factory=dict)
    tools: list[McpTool] = Field(default_factory=list)
    # Calls in flight at once; more wait their turn (within the tool timeout).
    max_calls: int = Field(default=4, ge=1, le=32)
    # How long the server has to start (or answer) and list its tools.
    connect_seconds: float = Field(default=15.0, gt=0, le=120)

    @field_validator("env")
    @classmethod
    def _env_names(cls, names: list[str]) -> list[str]:
        return [_env_name(n) for n in names]

    @field_validator("headers")
    @classmethod
    def _header_envs(cls, headers: dict[str, str]) -> dict[str, str]:
        return {header: _env_name(env) for header, env in headers.items()}

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either `command` (stdio) or `url` (streamable HTTP)")
        if self.command is not None and self.headers:
            raise ValueError("`headers` apply to a `url` server only")
        if self.url is not None and self.env:
            raise ValueError("`env` applies to a `command` server only")
        names = [t.name for t in self.tools]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tools listed twice: {', '.join(twice)}")
        return self


def _env_name(name: str) -> str:
    if re.fullmatch(_ENV_NAME, name) is None:
        raise ValueError(f"{name!r} is not an environment variable name (A-Z, 0-9, _)")
    return name


def unique_servers(servers: list[McpServer]) -> list[McpServer]:
    """`servers`, when no two share a name; raises ValueError naming those that do."""
    names = [s.name for s in servers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"MCP server names must be unique: {', '.join(twice)}")
    return servers
