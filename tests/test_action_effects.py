"""Each action's `observe_effect` against a real target: the sandbox's Kubernetes API for the
deployment actions and a local receiver for `webhook.call` (the silence, against a real
Alertmanager, is in `tests/e2e/test_silence_reconcile.py`), and a run whose webhook call
was interrupted before the receiver got it. And the rollback's "already done" check compares
the whole pod template: a revision that changed only an environment variable is rolled
back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from bot.deps import open_deps, webhook_endpoints
from bot.models import ActionRecord, Decision, RunStatus, utcnow
from bot.runs import record_decision, start_run
from bot.settings import Settings
from policies.schema import Policy, Webhook
from tests.factories import alert
from tests.policy_helpers import policy_dir
from tools.actions import (
    RESTART,
    ROLLBACK,
    SCALE,
    WEBHOOK,
    ActionContext,
    RestartInput,
    RollbackInput,
    ScaleInput,
    WebhookEndpoint,
    WebhookInput,
)
from tools.actions.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_valid,
)
from tools.kube_client import KubernetesApi, read_deployment
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox
from tools.sandbox.scenario import Scenario, World
from tools.sandbox.scenario_parts import Fault

pytest_plugins = ("tests.sandbox_fixtures",)

CHECKOUT = {"namespace": "shop", "deployment": "checkout"}
SECRET = b"status-secret-77"


def _refuse_reads(sandbox: RunningSandbox) -> None:
    """From now on the API refuses to read the deployment (403)."""
    sandbox.world.scenario = sandbox.world.scenario.model_copy(
        update={
            "faults": [Fault(path="/deployments/checkout$", method="GET", status=403, times=None)]
        }
    )


@pytest.mark.parametrize(
    ("action", "args"),
    [
        (ROLLBACK, RollbackInput(**CHECKOUT, to_revision=1)),
        (RESTART, RestartInput(**CHECKOUT)),
        (SCALE, ScaleInput(**CHECKOUT, replicas=5)),
    ],
    ids=["rollback", "restart", "scale"],
)
async def test_a_deployment_action_is_applied_only_once_its_proposal_marked_the_target(
    action: Any, args: Any, action_context: ActionContext, sandbox: RunningSandbox
) -> None:
    assert action.idempotent_by_proposal
    assert await action.observe_effect(action_context, args, "prop-1") == "not_applied"

    await action.execute(action_context, args, "prop-1")

    assert await action.observe_effect(action_context, args, "prop-1") == "applied"
    # Another proposal's mark is not this one's.
    assert await action.observe_effect(action_context, args, "prop-2") == "not_applied"
    _refuse_reads(sandbox)
    assert await action.observe_effect(action_context, args, "prop-1") == "unknown"


# -- the rollback compares whole pod templates -------------------------------------------
ENV_ONLY = """
name: env-flag
deployments:
  - namespace: shop
    name: checkout
    labels: {app: checkout}
    replicas: 3
    container: checkout
    revisions:
      - {revision: 1, image: registry.example/checkout:v2.4.0, at: -3600,
         env: {PAYMENTS_TIMEOUT: 2s}}
      - {revision: 2, image: registry.example/checkout:v2.4.0, at: -240,
         env: {PAYMENTS_TIMEOUT: 50ms}, change_cause: lower the payments timeout}
"""


@pytest.fixture
async def env_sandbox(tmp_path: Path) -> AsyncIterator[RunningSandbox]:
    path = tmp_path / "env-flag.yaml"
    path.write_text(ENV_ONLY)
    async with run_sandbox(load_scenario(path)) as running:
        yield running


def test_a_revision_s_environment_is_in_its_pod_template() -> None:
    scenario = Scenario.model_validate(
        {
            "name": "env",
            "deployments": [
                {
                    "namespace": "shop",
                    "name": "checkout",
                    "labels": {"app": "checkout"},
                    "replicas": 1,
                    "container": "checkout",
                    "revisions": [
                        {"revision": 1, "image": "a:1", "at": -10, "env": {"MODE": "safe"}},
                        {"revision": 2, "image": "a:1", "at": -5, "env": {"MODE": "fast"}},
                    ],
                }
            ],
        }
    )
    checkout = World.start(scenario).deployments["shop/checkout"]
    containers = [rs.template["spec"]["containers"] for rs in checkout.replica_sets]
    assert containers == [
        [{"name": "checkout", "image": "a:1", "env": [{"name": "MODE", "value": "safe"}]}],
        [{"name": "checkout", "image": "a:1", "env": [{"name": "MODE", "value": "fast"}]}],
    ]
    # Same image, different environment: two ReplicaSets, revision 2 running.
    assert len({rs.name for rs in checkout.replica_sets}) == 2
    assert checkout.current.revision == 2


async def test_a_rollback_of_an_environment_only_change_is_rolled_back(
    env_sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    image = "registry.example/checkout:v2.4.0"
    async with KubernetesApi(env_sandbox.url, None) as kube:
        ctx = ActionContext(http=http, prometheus_url=None, kubernetes=kube, timeout_seconds=5)
        args = RollbackInput(**CHECKOUT, to_revision=1)
        assert await ROLLBACK.dry_run(ctx, args) == (
            f"deployment shop/checkout: revision 2 ({image}) -> revision 1 ({image})"
        )

        done = await ROLLBACK.execute(ctx, args, "prop-env")

        assert done == (
            f"deployment shop/checkout: replaced the pod template of revision 2 ({image}) with "
            f"that of revision 1 ({image}); annotated incident-bot/proposal=prop-env"
        )
        deployment = await read_deployment(kube, "shop", "checkout", 5)
        (container,) = deployment.spec.template.spec.containers
        assert [(e.name, e.value) for e in container.env] == [("PAYMENTS_TIMEOUT", "2s")]
        again = await ROLLBACK.execute(ctx, args, "prop-env")
        assert again.endswith(
            f"already runs the pod template of revision 1 ({image}): nothing changed"
        )
    checkout = env_sandbox.world.deployments["shop/checkout"]
    assert (checkout.patches, checkout.current.revision, checkout.current.history) == (1, 3, [1])


async def test_a_restart_after_the_target_revision_does_not_count_as_a_change(
    action_context: ActionContext, sandbox: RunningSandbox
) -> None:
    to_v1 = RollbackInput(**CHECKOUT, to_revision=1)
    await ROLLBACK.execute(action_context, to_v1, "prop-1")
    await RESTART.execute(action_context, RestartInput(**CHECKOUT), "prop-2")

    # Only the restart annotations differ from revision 1's template: nothing to roll back.
    again = await ROLLBACK.execute(action_context, to_v1, "prop-3")

    assert again.endswith(": nothing changed")
    assert sandbox.world.deployments["shop/checkout"].patches == 2


# -- webhook.call: asked at the receiver's status URL -------------------------------------
@dataclass
class StatusReceiver:
    """Keeps the Idempotency-Keys it ran; its status URL answers 200 for those, 404 for
    others (or `status_override`), after checking the signature."""

    url: str = ""
    ran: set[str] = field(default_factory=set)
    status_override: int | None = None
    asked: list[str] = field(default_factory=list)
    posts: int = 0

    async def post(self, request: web.Request) -> web.Response:
        self.posts += 1
        self.ran.add(request.headers[IDEMPOTENCY_HEADER])
        return web.json_response({"ok": True})

    async def status(self, request: web.Request) -> web.Response:
        key = request.headers[IDEMPOTENCY_HEADER]
        self.asked.append(key)
        timestamp = request.headers[TIMESTAMP_HEADER]
        if not signature_valid(SECRET, timestamp, key.encode(), request.headers[SIGNATURE_HEADER]):
            return web.Response(status=401)
        if self.status_override is not None:
            return web.Response(status=self.status_override)
        return web.Response(status=200 if key in self.ran else 404)


@pytest.fixture
async def receiver() -> AsyncIterator[StatusReceiver]:
    hook = StatusReceiver()
    app = web.Application()
    app.router.add_post("/hooks/flush", hook.post)
    app.router.add_get("/hooks/flush/status", hook.status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    hook.url = f"http://{host}:{port}/hooks/flush"
    try:
        yield hook
    finally:
        await runner.cleanup()


def _webhook_context(
    http: aiohttp.ClientSession, receiver: StatusReceiver, *, status_url: str | None
) -> ActionContext:
    endpoint = WebhookEndpoint(
        name="flush", url=receiver.url, secret=SECRET, insecure=True, status_url=status_url
    )
    return ActionContext(
        http=http, kubernetes=None, prometheus_url=None, webhooks={"flush": endpoint}
    ).for_proposal("run-1", "prop-1")


async def test_the_webhook_receiver_says_whether_it_ran_the_key(
    http: aiohttp.ClientSession, receiver: StatusReceiver
) -> None:
    ctx = _webhook_context(http, receiver, status_url=f"{receiver.url}/status")
    args = WebhookInput(webhook="flush")
    assert WEBHOOK.idempotent_by_proposal
    assert await WEBHOOK.observe_effect(ctx, args, "prop-1") == "not_applied"

    await WEBHOOK.execute(ctx, args, "prop-1")

    assert await WEBHOOK.observe_effect(ctx, args, "prop-1") == "applied"
    assert await WEBHOOK.observe_effect(ctx, args, "prop-2") == "not_applied"
    receiver.status_override = 503
    assert await WEBHOOK.observe_effect(ctx, args, "prop-1") == "unknown"
    assert receiver.asked == ["prop-1", "prop-1", "prop-2", "prop-1"]


async def test_a_webhook_without_a_status_url_cannot_be_asked(
    http: aiohttp.ClientSession, receiver: StatusReceiver
) -> None:
    ctx = _webhook_context(http, receiver, status_url=None)
    await WEBHOOK.execute(ctx, WebhookInput(webhook="flush"), "prop-1")
    assert await WEBHOOK.observe_effect(ctx, WebhookInput(webhook="flush"), "prop-1") == "unknown"
    assert receiver.asked == []


async def test_an_unreachable_status_url_is_unknown(
    http: aiohttp.ClientSession, receiver: StatusReceiver
) -> None:
    ctx = _webhook_context(http, receiver, status_url="http://127.0.0.1:9/status")
    assert await WEBHOOK.observe_effect(ctx, WebhookInput(webhook="flush"), "prop-1") == "unknown"


def test_a_plain_http_status_url_needs_insecure_and_is_carried_to_the_action() -> None:
    hook = {"name": "flush", "url": "https://automation.example/flush"}
    with pytest.raises(ValidationError, match=r"status_url http://automation\.example/status is"):
        Webhook.model_validate(hook | {"status_url": "http://automation.example/status"})
    policy = Policy.model_validate(
        {"webhooks": [hook | {"status_url": "https://automation.example/status"}]}
    )
    (endpoint,) = webhook_endpoints(policy, Settings()).values()
    assert endpoint.status_url == "https://automation.example/status"


async def test_an_interrupted_webhook_the_receiver_never_got_is_sent_once_more(
    receiver: StatusReceiver, redis_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    directory = policy_dir(
        tmp_path,
        policy=(
            "actions:\n  - action: webhook.call\n"
            f"webhooks:\n  - {{name: flush, url: '{receiver.url}', "
            f"status_url: '{receiver.url}/status', insecure: true}}\n"
        ),
        alertname="HighErrorRate",
        action="webhook.call",
        arguments={"webhook": "flush"},
    )
    settings = Settings(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        INCIDENT_BOT_POLICY_DIR=directory,
        INCIDENT_BOT_ACTIONS_WEBHOOK_SECRET=SECRET.decode(),
        INCIDENT_BOT_VERIFY_INTERVAL=0.05,
    )
    async with open_deps(settings) as deps:
        run = await start_run(deps, alert(severity="critical"))
        run = await deps.driver().drive(run.id)
        assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
        await record_decision(
            deps,
            Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve"),
        )
        # A process claimed the call a minute ago and died before sending it.
        await deps.store.acquire_lease(run.id, "dead-process", 30)
        await deps.store.checkpoint(
            run.model_copy(update={"status": RunStatus.EXECUTING}), owner="dead-process"
        )
        await deps.store.begin_action(
            ActionRecord(
                run_id=run.id,
                proposal_id=run.proposal.id,
                action="webhook.call",
                arguments=run.proposal.arguments,
                state="started",
                owner="dead-process",
                started_at=utcnow() - timedelta(minutes=1),
            )
        )
        await deps.store.release_lease(run.id, "dead-process")

        done = await deps.driver().drive(run.id)
        again = await deps.driver().drive(run.id)

    # The runbook's check passed before the action, so it was dropped: nothing verifies it.
    assert done.status is RunStatus.NEEDS_ATTENTION, done.outcome
    assert done.outcome == "the action ran; no check to verify it with"
    assert again.version == done.version
    assert receiver.ran == {run.proposal.id}
    assert receiver.posts == 1
    assert receiver.asked == [run.proposal.id]
