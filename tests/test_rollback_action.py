"""The rollback action against the sandbox: dry run, execution, idempotency, verification."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tools.actions import (
    ACTIONS,
    ROLLBACK,
    ActionContext,
    ActionError,
    RollbackInput,
)
from tools.kubernetes import get_deployment, rollout_history
from tools.prometheus import instant_value
from tools.toolset import ToolContext

pytest_plugins = ("tests.sandbox_fixtures",)

OLD = "registry.example/checkout:v2.3.1"
NEW = "registry.example/checkout:v2.4.0"
ERROR_RATIO = (
    'sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m]))'
    ' / sum(rate(http_requests_total{service="checkout"}[5m]))'
)
TO_V231 = RollbackInput(namespace="shop", deployment="checkout", to_revision=1)


def test_actions_are_listed_and_found_by_name() -> None:
    assert [a.name for a in ACTIONS] == [
        "kubernetes.rollback",
        "kubernetes.restart",
        "kubernetes.scale",
        "alertmanager.silence",
        "webhook.call",
    ]
    assert ROLLBACK.input_model is RollbackInput


async def test_dry_run_names_both_revisions(action_context: ActionContext) -> None:
    assert await ROLLBACK.dry_run(action_context, TO_V231) == (
        f"deployment shop/checkout: revision 2 ({NEW}) -> revision 1 ({OLD})"
    )


async def test_execute_rolls_back_and_the_error_ratio_recovers(
    action_context: ActionContext,
    tool_context: ToolContext,
    sandbox_state: Callable[[], Awaitable[Any]],
) -> None:
    assert await instant_value(tool_context, ERROR_RATIO) == 0.12
    done = await ROLLBACK.execute(action_context, TO_V231, "prop-123")
    assert done == (
        f"deployment shop/checkout: replaced the pod template of revision 2 ({NEW}) "
        f"with that of revision 1 ({OLD}); annotated incident-bot/proposal=prop-123"
    )
    deployment = await get_deployment.call(
        tool_context, get_deployment.validate_input({"namespace": "shop", "name": "checkout"})
    )
    assert isinstance(deployment.data, dict)
    assert deployment.data["revision"] == 3
    assert deployment.data["containers"] == [{"name": "checkout", "image": OLD}]
    history = await rollout_history.call(
        tool_context,
        rollout_history.validate_input({"namespace": "shop", "deployment": "checkout"}),
    )
    assert isinstance(history.data, list)
    assert [
        (r["revision"], r["images"], r["current"]) for r in history.data if isinstance(r, dict)
    ] == [
        (3, [OLD], True),
        (2, [NEW], False),
    ]
    assert await instant_value(tool_context, ERROR_RATIO) == 0.002
    observed = await ROLLBACK.observe(action_context, TO_V231)
    assert observed == (
        f"deployment shop/checkout: revision 3 ({OLD}), 3/3 ready, 3 updated, 3 available; "
        "rollout complete"
    )
    state = await sandbox_state()
    assert state["deployments"]["shop/checkout"]["patches"] == 1


async def test_executing_twice_patches_once(
    action_context: ActionContext, sandbox_state: Callable[[], Awaitable[Any]]
) -> None:
    await ROLLBACK.execute(action_context, TO_V231, "prop-1")
    again = await ROLLBACK.execute(action_context, TO_V231, "prop-1")
    assert again == (
        f"deployment shop/checkout: revision 3 ({OLD}) already runs the pod template of "
        f"revision 1 ({OLD}): nothing changed"
    )
    state = await sandbox_state()
    assert state["deployments"]["shop/checkout"] == {
        "image": OLD,
        "revision": 3,
        "replicas": 3,
        "patches": 1,
    }
    assert "already runs" in await ROLLBACK.dry_run(action_context, TO_V231)


async def test_rolling_forward_again_reuses_the_newer_replica_set(
    action_context: ActionContext, sandbox_state: Callable[[], Awaitable[Any]]
) -> None:
    await ROLLBACK.execute(action_context, TO_V231, "prop-1")
    forward = RollbackInput(namespace="shop", deployment="checkout", to_revision=2)
    await ROLLBACK.execute(action_context, forward, "prop-2")
    state = await sandbox_state()
    assert state["deployments"]["shop/checkout"] == {
        "image": NEW,
        "revision": 4,
        "replicas": 3,
        "patches": 2,
    }


async def test_unknown_revision_and_deployment_are_clear_errors(
    action_context: ActionContext,
) -> None:
    with pytest.raises(
        ActionError, match=r"shop/checkout has no revision 7 \(its revisions: 2, 1\)"
    ):
        await ROLLBACK.execute(
            action_context,
            RollbackInput(namespace="shop", deployment="checkout", to_revision=7),
            "prop-1",
        )
    with pytest.raises(ActionError, match="deployment shop/cart not found"):
        await ROLLBACK.dry_run(
            action_context, RollbackInput(namespace="shop", deployment="cart", to_revision=1)
        )
