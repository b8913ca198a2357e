"""Actions a human may approve, listed explicitly in `ACTIONS`."""

from __future__ import annotations

from tools.actions.base import Action, ActionContext, ActionError
from tools.actions.kubernetes import ROLLBACK, RollbackInput

ACTIONS: tuple[Action, ...] = (ROLLBACK,)


def action_by_name(name: str) -> Action | None:
    """The action called `name` (e.g. `kubernetes.rollback`), None if there is none."""
    return next((a for a in ACTIONS if a.name == name), None)


__all__ = [
    "ACTIONS",
    "ROLLBACK",
    "Action",
    "ActionContext",
    "ActionError",
    "RollbackInput",
    "action_by_name",
]
