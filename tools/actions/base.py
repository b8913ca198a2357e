"""What every action is: a typed input, a read-only dry run, an execution and an observation.

Actions change production, so they run only after a human approved a proposal, exactly once
in effect (the caller keeps an idempotency record per proposal); each one is written to be
idempotent by construction as well, so a repeated execution changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ValidationError

from policies.target import Target
from tools.http_backend import NO_AUTH, HttpAuth
from tools.kube_client import KubernetesApi
from tools.toolset import describe_validation_error

# Whether a proposal's action took effect, read from the marks it leaves on its target:
# `unknown` when the target cannot be asked (or cannot tell).
Effect = Literal["applied", "not_applied", "unknown"]


class ActionError(Exception):
    """An action cannot be planned or carried out; the message says why, for humans."""


@dataclass(frozen=True, kw_only=True)
class WebhookEndpoint:
    """A URL the operator listed for `webhook.call`, with its HMAC signing secret."""

    name: str
    url: str
    secret: bytes | None
    # The policy allowed plain http for this URL (`insecure: true`).
    insecure: bool = False
    # Where the receiver says whether it ran an Idempotency-Key (None: it cannot be asked).
    status_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class ActionContext:
    """The clients an action may use; the Kubernetes client holds the *write* credentials.

    `run_id` and `proposal_id` name the execution (set by the executor for one call):
    actions derive ids and markers from them, so a repeated execution finds its own work.
    """

    http: aiohttp.ClientSession
    kubernetes: KubernetesApi | None  # separate from the tools' read-only one
    prometheus_url: str | None
    timeout_seconds: float = 30.0
    alertmanager_url: str | None = None
    # The same bearer/basic auth and CA as the read-only Alertmanager tools.
    alertmanager_auth: HttpAuth = NO_AUTH
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
    # (ctx, args, proposal_id) -> whether this proposal's execution took effect, from the
    # mark it leaves (an annotation, a silence comment, the receiver's idempotency log);
    # read-only. Used when a process died between the action's `started` and its outcome.
    observe_effect: Callable[[ActionContext, Any, str], Awaitable[Effect]]
    # What the validated arguments change; the policy judges this, channels show it.
    target: Callable[[Any], Target]
    # Bounded and reversible by construction: only such an action may be auto-approved.
    reversible: bool = False
    # Executing it again for the same proposal changes nothing once it took effect (it is
    # keyed by the proposal id or sets absolute values), so an execution whose effect is
    # observed `not_applied` may be run again under the same action record.
    idempotent_by_proposal: bool = False

    def target_of(self, arguments: Mapping[str, Any]) -> Target:
        """The target of raw arguments (an invalid target when they do not validate)."""
        try:
            return self.target(self.input_model.model_validate(arguments))
        except ValidationError as exc:
            return Target.invalid(describe_validation_error(exc))
