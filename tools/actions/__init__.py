"""Actions a human may approve, listed explicitly in `ACTIONS`."""

from __future__ import annotations

from tools.actions.alertmanager import SILENCE, SilenceInput
from tools.actions.base import Action, ActionContext, ActionError, Effect, WebhookEndpoint
from tools.actions.deployments import RESTART, SCALE, RestartInput, ScaleInput
from tools.actions.kubernetes import ROLLBACK, RollbackInput
from tools.actions.webhook import WEBHOOK, WebhookInput

ACTIONS: tuple[Action, ...] = (ROLLBACK, RESTART, SCALE, SILENCE, WEBHOOK)


__all__ = [
    "ACTIONS",
    "RESTART",
    "ROLLBACK",
    "SCALE",
    "SILENCE",
    "WEBHOOK",
    "Action",
    "ActionContext",
    "ActionError",
    "Effect",
    "RestartInput",
    "RollbackInput",
    "ScaleInput",
    "SilenceInput",
    "WebhookEndpoint",
    "WebhookInput",
]
