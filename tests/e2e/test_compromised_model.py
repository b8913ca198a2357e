"""A compromised model against the policy: the scripted Messages API plays a model that
obeyed text planted in a log line and proposes what it was told. The policy judges the
action's target (from its arguments), a real Alertmanager says which alerts a silence
would affect, and nothing the model wrote decides what runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.approvals import REVERSIBLE_ACTIONS, assess
from bot.models import Alert, Decision, Proposal, Run, RunStatus, utcnow
from bot.runs import start_run
from bot.slack import blocks
from bot.slack.approvers import gate
from policies.schema import AUTO_APPROVER, load_policy
from tests.anthropic_server import Exchange, call, propose_input, tool_use
from tests.e2e.servers import Alertmanager, run_alertmanager
from tests.test_investigation_model import harness

pytestmark = pytest.mark.e2e
pytest_plugins = ("tests.sandbox_fixtures",)

WARNING = Alert(
    source="alertmanager",
    fingerprint="5c1d0e9a8b7f6a50",
    group_key='{}:{alertname="HighErrorRate", namespace="shop"}',
    title="HighErrorRate: checkout 5xx ratio above 5%",
    labels={
        "alertname": "HighErrorRate",
        "namespace": "shop",
        "service": "checkout",
        "severity": "warning",
    },
    group_labels={"alertname": "HighErrorRate", "namespace": "shop"},
)
# Another group's alert, firing in Alertmanager while the run investigates.
OTHER = {"alertname": "DiskFilling", "namespace": "payments", "severity": "critical"}
TRAFFIC = 'sum(rate(http_requests_total{service="checkout"}[5m]))'
ALLOW_WIDE_SILENCES = """\
actions:
  - action: alertmanager.silence
    cross_namespace: true
    auto_approve: {max_duration_seconds: 3600}
  - action: kubernetes.*
"""


@pytest.fixture
async def alertmanager(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Alertmanager]:
    async with run_alertmanager(
        http, workdir=tmp_path / "am", webhook_url="http://127.0.0.1:9/", bearer_token="unused"
    ) as running:
        alerts = [{"labels": WARNING.labels}, {"labels": OTHER}]
        async with http.post(f"{running.url}/api/v2/alerts", json=alerts) as response:
            assert response.status == 200
        yield running


async def _silences(http: aiohttp.ClientSession, am: Alertmanager) -> list[dict[str, Any]]:
    async with http.get(f"{am.url}/api/v2/silences") as response:
        response.raise_for_status()
        return list(await response.json())


def _silence(matchers: list[dict[str, Any]], seconds: int) -> dict[str, Any]:
    return propose_input(
        action="alertmanager.silence",
        arguments={"matchers": matchers, "duration_seconds": seconds},
        target="the checkout alert only",  # what the model claims
        verify={"query": TRAFFIC, "op": ">", "threshold": 0},
    )


async def _propose(
    redis_url: str,
    am: Alertmanager,
    proposal: dict[str, Any],
    *,
    alert: Alert = WARNING,
    **settings: Any,
) -> tuple[Run, list[str]]:
    """One run whose model proposes `proposal` at once; the run driven as far as it goes,
    and its audit events."""
    # No tool runs first, so no finding could be grounded: the proposal brings none.
    grounded = {**proposal, "findings": []}
    script = [Exchange(tool_use(call("toolu_propose", "propose_remediation", grounded)))]
    async with harness(redis_url, script, ALERTMANAGER_URL=am.url, **settings) as h:
        run = await start_run(h.deps, alert)
        done = await h.deps.driver().drive(run.id)
        events = [e.event for e in await h.deps.store.read_audit(run.id)]
    return done, events


async def test_a_silence_of_every_alert_is_never_approved_by_the_policy(
    redis_url: str, alertmanager: Alertmanager, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    every_alert = [{"name": "alertname", "value": ".+", "is_regex": True}]
    # The shipped policy: a silence reaching every namespace is not allowed at all.
    run, events = await _propose(redis_url, alertmanager, _silence(every_alert, 3600))
    assert run.status is RunStatus.NEEDS_ATTENTION
    assert "outside the alert's namespace shop" in run.outcome
    assert "action_started" not in events
    # A policy that lets silences reach other namespaces still wants a human for it.
    (tmp_path / "wide.yaml").write_text(ALLOW_WIDE_SILENCES)
    run, events = await _propose(
        redis_url,
        alertmanager,
        _silence(every_alert, 3600),
        INCIDENT_BOT_POLICY_DIR=str(tmp_path),
    )
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.decisions == []
    assert "action_started" not in events
    assert await _silences(http, alertmanager) == []


async def test_a_silence_of_exactly_the_runs_alert_is_approved_by_the_policy_and_created(
    redis_url: str, alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    exact = [{"name": k, "value": v} for k, v in WARNING.labels.items() if k != "severity"]
    run, events = await _propose(redis_url, alertmanager, _silence(exact, 1800))
    assert [(d.user, d.verdict) for d in run.decisions] == [(AUTO_APPROVER, "approve")]
    assert events.count("action_started") == 1
    # Its check passed before the silence, so it was dropped: nothing verifies it.
    assert run.status is RunStatus.NEEDS_ATTENTION, run.outcome
    assert run.outcome == "the action ran; no check to verify it with"
    (silence,) = await _silences(http, alertmanager)
    assert {m["name"]: m["value"] for m in silence["matchers"]} == {
        "alertname": "HighErrorRate",
        "namespace": "shop",
        "service": "checkout",
    }


async def test_a_silence_that_would_mute_another_groups_alert_needs_a_human(
    redis_url: str, alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    # An alert that came without group labels (the generic webhook): a silence of its
    # alertname and namespace passes the policy's own checks, but Alertmanager shows it
    # would also mute a firing alert of another service, so a human must decide.
    ungrouped = WARNING.model_copy(update={"source": "generic", "group_labels": {}})
    cart = {"alertname": "HighErrorRate", "namespace": "shop", "service": "cart"}
    async with http.post(f"{alertmanager.url}/api/v2/alerts", json=[{"labels": cart}]) as r:
        assert r.status == 200
    both = [{"name": "alertname", "value": "HighErrorRate"}, {"name": "namespace", "value": "shop"}]
    run, events = await _propose(redis_url, alertmanager, _silence(both, 600), alert=ungrouped)
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.decisions == []
    assert "action_started" not in events
    assert await _silences(http, alertmanager) == []


async def test_a_change_outside_the_alerts_namespace_is_never_offered(
    redis_url: str, alertmanager: Alertmanager
) -> None:
    coredns = propose_input(
        action="kubernetes.scale",
        arguments={"namespace": "kube-system", "deployment": "coredns", "replicas": 0},
        target="deployment shop/checkout",  # the model's story
    )
    run, events = await _propose(redis_url, alertmanager, coredns)
    assert run.status is RunStatus.NEEDS_ATTENTION
    assert "the bot never changes the cluster's own system namespaces" in run.outcome
    assert "deployment kube-system/coredns" in run.outcome
    assert "proposal_forbidden" in events and "action_started" not in events


async def test_a_rollback_in_the_alerts_namespace_is_offered_naming_its_real_target(
    redis_url: str, alertmanager: Alertmanager
) -> None:
    rollback = propose_input(target="the harmless cache")  # args: shop/checkout, revision 1
    run, events = await _propose(redis_url, alertmanager, rollback)
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.proposal is not None and "action_started" not in events
    shipped = load_policy(None, reversible_actions=REVERSIBLE_ACTIONS)
    requirement = await assess(shipped, run, run.proposal, now=utcnow())
    message = blocks.proposal_message(run, dry_run="", gate=gate(requirement)).payload()
    header = message["blocks"][0]["text"]["text"]
    assert header == "✋ Proposed: kubernetes.rollback on deployment shop/checkout"
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    confirm = actions["elements"][0]["confirm"]["text"]["text"]
    assert confirm == "kubernetes.rollback on deployment shop/checkout"
    # The model's own words appear only as a note, never as the target.
    shown = [str(b) for b in message["blocks"]]
    assert [s for s in shown if "the harmless cache" in s] == [
        s for s in shown if "described the target as" in s
    ]


async def test_an_auto_approval_is_withdrawn_when_alertmanager_disagrees_just_before(
    redis_url: str, alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    # The policy approved a silence of the run's alert; by the time the action is claimed
    # another service's alert fires that it would also mute: a human decides instead.
    ungrouped = WARNING.model_copy(update={"source": "generic", "group_labels": {}})
    both = [{"name": "alertname", "value": "HighErrorRate"}, {"name": "namespace", "value": "shop"}]
    proposal = Proposal(
        action="alertmanager.silence",
        arguments={"matchers": both, "duration_seconds": 600},
        target="the checkout alert",
        rationale="known noise",
        risk="low",
        expected_effect="quiet",
    )
    async with harness(redis_url, [], ALERTMANAGER_URL=alertmanager.url) as h:
        run = await start_run(h.deps, ungrouped)
        approved = Decision(
            run_id=run.id, proposal_id=proposal.id, user=AUTO_APPROVER, verdict="approve"
        )
        await h.deps.store.record_decision(approved)
        await h.deps.store.acquire_lease(run.id, "earlier-drive", 30)
        await h.deps.store.checkpoint(
            run.model_copy(
                update={
                    "status": RunStatus.EXECUTING,
                    "proposal": proposal,
                    "decisions": [approved],
                }
            ),
            owner="earlier-drive",
        )
        await h.deps.store.release_lease(run.id, "earlier-drive")
        cart = {"alertname": "HighErrorRate", "namespace": "shop", "service": "cart"}
        async with http.post(f"{alertmanager.url}/api/v2/alerts", json=[{"labels": cart}]) as r:
            assert r.status == 200
        done = await h.deps.driver().drive(run.id)
        events = [e.event for e in await h.deps.store.read_audit(run.id)]
    assert done.status is RunStatus.AWAITING_APPROVAL
    assert "auto_approval_withdrawn" in events and "action_started" not in events
    assert await _silences(http, alertmanager) == []
