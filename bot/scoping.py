"""The scope of a run applied to tools: which are offered, and which calls are refused.

The rules are the policy's `scopes` (see `policies.scope`); this module only applies the
pure decision to `Tool`s, so the Claude engine and the loop agree on it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from bot.models import Run
from policies.scope import Scope, ScopeRule, scope_for
from tools.toolset import Tool


def run_scope(rules: Sequence[ScopeRule], run: Run) -> Scope:
    """The scope of `run`, from its alert's labels."""
    return scope_for(rules, run.alert.labels)


def offered_tools(scope: Scope, tools: Sequence[Tool]) -> list[Tool]:
    """The tools the run may use, in their order."""
    return [t for t in tools if scope.allows_toolset(t.toolset)]


def refusal(scope: Scope, tool: Tool, args: BaseModel) -> str | None:
    """Why the call may not run in this scope, None when it may."""
    if not scope.allows_toolset(tool.toolset):
        return (
            f"{tool.api_name} is outside this run's scope ({scope.describe()}); "
            "the call was not sent"
        )
    namespace = tool.namespace_of(args)
    if namespace is not None and not scope.allows_namespace(namespace):
        return (
            f"namespace {namespace!r} is outside this run's scope ({scope.describe()}); "
            "the call was not sent"
        )
    return None
