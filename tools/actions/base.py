"""What every action is: a typed input, a read-only dry run, an execution and an observation.

Actions change production, so they run only after a human approved a proposal, exactly once
in effect (the caller keeps an idempotency record per proposal); each one is written to be
idempotent by construction as well, so a repeated execution changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from pydantic import BaseModel


class ActionError(Exception):
    """An action cannot be planned or carried out; the message says why, for humans."""


@dataclass(frozen=True, kw_only=True)
class WebhookEndpoint:
    """A URL the operator listed for `webhook.call`, with its HMAC signing secret."""

    name: str
    url: str
    secret: bytes | None


@dataclass(frozen=True, kw_only=True)
class ActionContext:
    """The clients an action may use; the Kubernetes client holds the *write* credentials.

    `run_id` and `proposal_id` name the execution (set by the executor for one call):
    actions derive ids and markers from them, so a repeated execution finds its own work.
    """

    http: aiohttp.ClientSession
    kubernetes: Any  # kubernetes_asyncio ApiClient, separate from the tools' read-only one
    prometheus_url: str | None
    timeout_seconds: float = 30.0
    alertmanager_url: str | None = None
    webhooks: Mapping[str, WebhookEndpoint] = field(default_factory=dict)
    run_id: str = ""
    proposal_id: str = ""

    def for_proposal(self, run_id: str, proposal_id: str) -> ActionContext:
        """This context for executing (or observing) one run's proposal."""
        return replace(self, run_id=run_id, proposal_id=proposal_id)


@dataclass(frozen=True, kw_only=True)
class Action:
    """One remediation a proposal may name (e.g. `kubernetes.rollback`)."""

    name: str
    description: str
    input_model: type[BaseModel]
    # "before -> after" in one line, read-only; shown to the approver.
    dry_run: Callable[[ActionContext, Any], Awaitable[str]]
    # (ctx, args, proposal_id) -> what it did; idempotent.
    execute: Callable[[ActionContext, Any, str], Awaitable[str]]
    # The target's current state in one line, read-only; used after execution.
    observe: Callable[[ActionContext, Any], Awaitable[str]]
