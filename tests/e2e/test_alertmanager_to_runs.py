"""Prometheus rules fire, Alertmanager posts to `incident-bot serve`, runs follow the groups.

Real Prometheus 2.x and Alertmanager 0.2x (Debian packages) and a real `serve` process on
one Redis. A relay between Alertmanager and the bot records every notification, so the
test compares the bot's runs and counters with exactly what Alertmanager posted.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.models import Run
from bot.store import RunStore
from tests.e2e.servers import (
    Alertmanager,
    AlertRule,
    BotProcess,
    MissingServer,
    Prometheus,
    WebhookRelay,
    fetch_metrics,
    find_binary,
    metric_sum,
    run_alertmanager,
    run_prometheus,
    running_bot,
)
from tests.processes import bot_env, eventually

pytestmark = pytest.mark.e2e

HIGH_ERROR_RATE = AlertRule(
    alert="HighErrorRate",
    expr="vector(1) > 0",
    labels={"namespace": "shop", "service": "checkout", "severity": "critical"},
    annotations={"summary": "checkout 5xx ratio is above 5%"},
)
# Three series, one per pod, as in tests/fixtures/alertmanager/firing-group-of-3.json.
POD_CRASH_LOOPING = AlertRule(
    alert="PodCrashLooping",
    expr=" or ".join(
        f'label_replace(vector({restarts}), "pod", "payments-7d9f-{pod}", "", "")'
        for restarts, pod in ((3, "abc12"), (5, "def34"), (2, "ghi56"))
    ),
    labels={"namespace": "shop", "service": "payments", "severity": "warning"},
    annotations={"summary": "payments pod {{ $labels.pod }} restarting ({{ $value }} restarts)"},
)
# Alertmanager groups by alert name and service: the groups and their sizes.
CHECKOUT = '{}:{alertname="HighErrorRate", service="checkout"}'
PAYMENTS = '{}:{alertname="PodCrashLooping", service="payments"}'
GROUPS = {CHECKOUT: 1, PAYMENTS: 3}
RECEIVED = "incident_bot_alerts_received_total"


@pytest.fixture
def servers_installed() -> None:
    """Fail (never skip) when the server binaries are missing: CI runs everything."""
    try:
        find_binary("prometheus")
        find_binary("prometheus-alertmanager", "alertmanager")
    except MissingServer as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass(frozen=True, kw_only=True)
class Servers:
    """The running pieces: `serve`, the relay in front of it, Alertmanager, Prometheus."""

    http: aiohttp.ClientSession
    bot: BotProcess
    relay: WebhookRelay
    alertmanager: Alertmanager
    prometheus: Prometheus
    token: str

    def describe(self, runs: dict[str, list[Run]] | None = None) -> str:
        """Runs, deliveries and the bot's output, for failure messages."""
        found = {
            g: [f"{r.id} {r.status.value}: {r.summary}" for r in rs]
            for g, rs in (runs or {}).items()
        }
        return (
            f"runs: {found}\ndeliveries: {self.relay.deliveries}\nbot output:\n{self.bot.output()}"
        )


@pytest.fixture
async def servers(
    servers_installed: None, redis_url: str, tmp_path: Path
) -> AsyncIterator[Servers]:
    """`serve` on Redis, then Alertmanager posting to it (via the relay), then Prometheus
    evaluating both rules and scraping the bot; stopped in the reverse order."""
    token = secrets.token_urlsafe(16)
    env = bot_env(
        REDIS_URL=redis_url,
        INCIDENT_BOT_HOST="127.0.0.1",
        INCIDENT_BOT_PORT="0",  # serve prints the port it got
        INCIDENT_BOT_WEBHOOK_TOKEN=token,
        INCIDENT_BOT_SANDBOX="bad-deploy",
        INCIDENT_BOT_SHUTDOWN_GRACE="5",
    )
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        bot = await stack.enter_async_context(running_bot(http, env=env, cwd=tmp_path))
        relay = await stack.enter_async_context(
            WebhookRelay(upstream=f"{bot.url}/webhooks/alertmanager")
        )
        alertmanager = await stack.enter_async_context(
            run_alertmanager(
                http, workdir=tmp_path / "alertmanager", webhook_url=relay.url, bearer_token=token
            )
        )
        prometheus = await stack.enter_async_context(
            run_prometheus(
                http,
                workdir=tmp_path / "prometheus",
                alertmanager=alertmanager.url.removeprefix("http://"),
                rules=[HIGH_ERROR_RATE, POD_CRASH_LOOPING],
                scrape_targets={"incident-bot": bot.url.removeprefix("http://")},
            )
        )
        yield Servers(
            http=http,
            bot=bot,
            relay=relay,
            alertmanager=alertmanager,
            prometheus=prometheus,
            token=token,
        )


async def test_alert_groups_start_one_run_each_resolve_and_are_counted(
    servers: Servers, store: RunStore
) -> None:
    relay = servers.relay
    await eventually(lambda: each_group_has(relay, "firing", 2), within=30)  # first + repeat
    await assert_one_run_per_group(servers, store)

    # Without the rules, Alertmanager sends `resolved` for both groups, and then nothing.
    await servers.prometheus.set_rules([])
    await eventually(lambda: each_group_has(relay, "resolved", 1), within=30)
    assert all(d.accepted for d in relay.deliveries), servers.describe()
    assert {d.authorization for d in relay.deliveries} == {f"Bearer {servers.token}"}
    assert all(len(d.fingerprints) == GROUPS.get(d.group_key) for d in relay.deliveries)
    runs = await assert_one_run_per_group(servers, store)
    checkout = runs[CHECKOUT][0]
    log = await store.alert_log(checkout.id)
    assert [(a.labels["alertname"], a.status) for a in log] == [
        ("HighErrorRate", "firing"),
        ("HighErrorRate", "resolved"),
    ], servers.describe(runs)
    events = [e.event for e in await store.read_audit(checkout.id)]
    assert "alerts_resolved" in events, events

    await assert_counters_agree(servers)


async def each_group_has(relay: WebhookRelay, status: str, at_least: int) -> bool | None:
    """True once every group has `at_least` accepted notifications with `status`."""
    done = all(
        sum(1 for d in relay.of_group(g) if d.status == status and d.accepted) >= at_least
        for g in GROUPS
    )
    return True if done else None


async def assert_one_run_per_group(servers: Servers, store: RunStore) -> dict[str, list[Run]]:
    """Exactly one run for each alert group, none for anything else; returns them."""
    runs: dict[str, list[Run]] = {}
    for run in await store.list_runs(limit=100):
        runs.setdefault(run.alert.group_key, []).append(run)
    assert {g: len(r) for g, r in runs.items()} == dict.fromkeys(GROUPS, 1), servers.describe(runs)
    return runs


async def assert_counters_agree(servers: Servers) -> None:
    """With nothing left to send, Alertmanager's count of webhook requests, the relay's,
    the bot's alerts-received counter and the same counter scraped by Prometheus agree."""
    relay, prometheus = servers.relay, servers.prometheus
    am = await servers.alertmanager.metrics()
    assert metric_sum(am, "alertmanager_notification_requests_total") == len(relay.deliveries)
    assert metric_sum(am, "alertmanager_notification_requests_failed_total") == 0
    posted = relay.alerts_posted
    bot = await fetch_metrics(servers.http, f"{servers.bot.url}/metrics")
    assert metric_sum(bot, RECEIVED) == posted, servers.describe()

    async def up() -> bool | None:
        series = await prometheus.query('up{job="incident-bot"}')
        return True if list(series.values()) == [1.0] else None

    async def scraped() -> dict[str, float] | None:
        seen = await received_via_prometheus(prometheus)
        return seen if seen == {"alertmanager": posted} else None

    await eventually(up, within=10)
    try:
        await eventually(scraped, within=10)
    except TimeoutError:
        seen = await received_via_prometheus(prometheus)
        pytest.fail(f"Prometheus reads {seen}; the bot accepted {posted} alerts")


async def received_via_prometheus(prometheus: Prometheus) -> dict[str, float]:
    """The bot's alerts-received counter as Prometheus scraped it, by source."""
    series = await prometheus.query(f'sum by (source) ({RECEIVED}{{job="incident-bot"}})')
    return {dict(labels)["source"]: value for labels, value in series.items()}
