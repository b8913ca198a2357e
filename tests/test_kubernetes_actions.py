"""`kubernetes.restart` and `kubernetes.scale` with the real client against the sandbox API
server: dry runs, one write per proposal, and the read-only credentials that cannot write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bot.deps import open_deps
from bot.settings import Settings
from tools.actions import (
    RESTART,
    ROLLBACK,
    SCALE,
    ActionContext,
    ActionError,
    RestartInput,
    RollbackInput,
    ScaleInput,
)
from tools.actions.deployments import RESTART_PROPOSAL, RESTARTED_AT
from tools.kube_client import read_deployment
from tools.kubernetes import get_deployment
from tools.sandbox import create_sandbox_app, load_scenario
from tools.sandbox.credentials import credentials

pytest_plugins = ("tests.sandbox_fixtures",)

CHECKOUT = RestartInput(namespace="shop", deployment="checkout")
State = Callable[[], Awaitable[Any]]


async def _checkout(state: State) -> dict[str, Any]:
    return dict((await state())["deployments"]["shop/checkout"])


async def test_restart_dry_run_then_one_rollout_per_proposal(
    action_context: ActionContext, sandbox_state: State
) -> None:
    assert await RESTART.dry_run(action_context, CHECKOUT) == (
        "deployment shop/checkout: 3 pod(s) of revision 2 (registry.example/checkout:v2.4.0) "
        "-> replaced one by one with 3 new pod(s) of the same template "
        f"(rolling restart: {RESTARTED_AT} set, keyed by the proposal)"
    )
    done = await RESTART.execute(action_context, CHECKOUT, "prop-a")
    assert done.startswith("deployment shop/checkout: rolling restart of 3 pod(s) of revision 2")
    again = await RESTART.execute(action_context, CHECKOUT, "prop-a")
    assert again.startswith("deployment shop/checkout: already restarted for prop-a at ")
    assert again.endswith(": nothing changed")
    after = await _checkout(sandbox_state)
    assert (after["patches"], after["revision"], after["image"]) == (
        1,
        3,
        "registry.example/checkout:v2.4.0",  # same image, new pods
    )
    deployment = await read_deployment(action_context.kubernetes, "shop", "checkout", 5)
    template = deployment.spec.template.metadata.annotations
    assert template[RESTART_PROPOSAL] == "prop-a" and template[RESTARTED_AT]
    assert deployment.metadata.annotations["incident-bot/proposal"] == "prop-a"
    # Another proposal restarts again.
    await RESTART.execute(action_context, CHECKOUT, "prop-b")
    assert (await _checkout(sandbox_state))["patches"] == 2
    observed = await RESTART.observe(action_context, CHECKOUT)
    assert observed.startswith("deployment shop/checkout: revision 4, 3/3 ready, rollout complete")
    assert observed.endswith("for prop-b")


async def test_scale_is_absolute_so_repeating_it_writes_nothing(
    action_context: ActionContext, sandbox_state: State
) -> None:
    six = ScaleInput(namespace="shop", deployment="checkout", replicas=6)
    assert await SCALE.dry_run(action_context, six) == (
        "deployment shop/checkout: 3 replicas -> 6 replicas"
    )
    assert await SCALE.execute(action_context, six, "prop-1") == (
        "deployment shop/checkout: scaled from 3 to 6 replicas"
    )
    assert await SCALE.execute(action_context, six, "prop-1") == (
        "deployment shop/checkout: already 6 replicas: nothing changed"
    )
    assert await SCALE.dry_run(action_context, six) == (
        "deployment shop/checkout: already 6 replicas: nothing to change"
    )
    after = await _checkout(sandbox_state)
    assert (after["replicas"], after["patches"], after["revision"]) == (6, 1, 2)
    assert await SCALE.observe(action_context, six) == (
        "deployment shop/checkout: revision 2, 6/6 ready, rollout complete"
    )
    with pytest.raises(ActionError, match="deployment shop/cart not found"):
        await SCALE.execute(
            action_context, ScaleInput(namespace="shop", deployment="cart", replicas=2), "p"
        )


# -- separate credentials ------------------------------------------------------------------
READ_TOKEN, WRITE_TOKEN = "read-token-1f3a", "write-token-9c2e"


@pytest.fixture
async def guarded_sandbox() -> AsyncIterator[str]:
    """The sandbox's Kubernetes API accepting only the two tokens; writes need the second."""
    app = create_sandbox_app(load_scenario("bad-deploy"))
    app.middlewares.insert(0, credentials(read=READ_TOKEN, write=WRITE_TOKEN))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def _kubeconfig(path: Path, server: str, user: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sandbox", "cluster": {"server": server}}],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": user, "context": {"cluster": "sandbox", "user": user}}],
                "current-context": user,
            }
        )
    )
    return path


async def test_the_tools_credentials_cannot_write_and_the_actions_can(
    guarded_sandbox: str, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        REDIS_URL=redis_url,
        KUBECONFIG=_kubeconfig(tmp_path / "read", guarded_sandbox, "reader", READ_TOKEN),
        INCIDENT_BOT_ACTIONS_KUBECONFIG=_kubeconfig(
            tmp_path / "write", guarded_sandbox, "writer", WRITE_TOKEN
        ),
    )
    to_v1 = RollbackInput(namespace="shop", deployment="checkout", to_revision=1)
    async with open_deps(settings) as deps:
        assert deps.tool_context.kubernetes is not deps.action_context.kubernetes
        read = await get_deployment.call(
            deps.tool_context,
            get_deployment.validate_input({"namespace": "shop", "name": "checkout"}),
        )
        assert read.status == "ok", read.error
        # A compromised investigation holding the tools' client: every write is refused.
        stolen = replace(deps.action_context, kubernetes=deps.tool_context.kubernetes)
        for action, args in ((ROLLBACK, to_v1), (RESTART, CHECKOUT)):
            with pytest.raises(ActionError, match=r"403 Forbidden.*may not write"):
                await action.execute(stolen, args, "prop-x")
        with pytest.raises(ActionError, match="403"):
            await SCALE.execute(
                stolen, ScaleInput(namespace="shop", deployment="checkout", replicas=9), "p"
            )
        # The actions' own client writes.
        done = await ROLLBACK.execute(deps.action_context, to_v1, "prop-y")
        assert "replaced the pod template" in done
