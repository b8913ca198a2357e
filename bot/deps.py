"""Deps: every client the bot uses, built once in an `async with` and handed down frozen."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from bot.approvals import KNOWN_ACTIONS, REVERSIBLE_ACTIONS
from bot.checkpoints import Checkpointer, Listener
from bot.compaction import Compactor, TokenCounting
from bot.deadlines import Deadlines
from bot.drives import DriveMarks
from bot.guidance import Briefing
from bot.investigation import Investigator
from bot.llm import ClaudeEngine
from bot.mcp_tools import open_mcp_tools
from bot.memory import IncidentMemory
from bot.metrics import Metrics
from bot.pause import PauseSwitch
from bot.pricing import Prices
from bot.queue import WorkQueue
from bot.redis_connection import open_redis
from bot.remediation import Remediator
from bot.runbook import Runbook, RunbookPlanner, load_runbooks
from bot.runner import RunDriver
from bot.settings import Settings
from bot.slack.client import SlackClient, slack_client
from bot.spend import DailySpend
from bot.store import RunStore
from bot.tiering import FastModel
from bot.tool_context import build_tool_context
from policies.budgets import model_limits
from policies.schema import Policy, load_policy
from tools.actions import ACTIONS, Action, ActionContext, WebhookEndpoint
from tools.alertmanager import ALERTMANAGER
from tools.kube_client import KubernetesApi
from tools.kubernetes import KUBERNETES
from tools.logs import LOGS
from tools.prometheus import PROMETHEUS
from tools.toolset import Tool, ToolContext, Toolset, index_tools

if TYPE_CHECKING:
    import anthropic

# Every toolset the bot has, listed explicitly (no registry filled by imports).
TOOLSETS: tuple[Toolset, ...] = (PROMETHEUS, ALERTMANAGER, KUBERNETES, LOGS)
# A fast-model call (a summary, the headline) gives up sooner than the investigation's.
_FAST_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, kw_only=True)
class Deps:
    """The process's clients and configuration, shared by every run."""

    settings: Settings
    store: RunStore
    queue: WorkQueue
    metrics: Metrics
    tool_context: ToolContext
    action_context: ActionContext
    claude: anthropic.AsyncAnthropic | None
    tools: dict[str, Tool]
    actions: dict[str, Action]
    runbooks: tuple[Runbook, ...]
    owner: str
    redis_location: str
    policy: Policy
    deadlines: Deadlines
    marks: DriveMarks
    slack: SlackClient | None = None  # None: no SLACK_BOT_TOKEN, no Slack channel
    prices: Prices = field(default_factory=Prices)
    # Whether the API counts tokens lately: remembered by every run of the process.
    counting: TokenCounting = field(default_factory=TokenCounting)

    @property
    def approval_timeout_seconds(self) -> float:
        """How long a proposal waits for a decision: the setting if made, else the policy's."""
        return approval_timeout(self.settings, self.policy)

    @property
    def memory(self) -> IncidentMemory:
        """The records finished runs leave for later ones (`bot.memory`)."""
        return IncidentMemory(
            self.store.redis,
            prefix=self.settings.key_prefix,
            retention_seconds=self.settings.retention_seconds,
            metrics=self.metrics,
        )

    @property
    def pause(self) -> PauseSwitch:
        """The kill switch (`bot.pause`), as this process sees it."""
        return PauseSwitch(
            self.store.redis,
            prefix=self.settings.key_prefix,
            setting=self.settings.paused,
            owner=self.owner,
        )

    def fast_model(self) -> FastModel | None:
        """The fast model (`INCIDENT_BOT_FAST_MODEL`), when Claude is configured."""
        if self.claude is None or not self.settings.fast_model:
            return None
        return FastModel(
            self.claude.with_options(timeout=_FAST_TIMEOUT_SECONDS),
            model=self.settings.fast_model,
            metrics=self.metrics,
            prices=self.prices,
        )

    def driver(self, listener: Listener | None = None) -> RunDriver:
        """A run driver writing as this process, optionally reporting each checkpoint."""
        s = self.settings
        checkpoints = Checkpointer(
            store=self.store,
            metrics=self.metrics,
            owner=self.owner,
            listener=listener,
            deadlines=self.deadlines,
            memory=self.memory,
        )
        planner = RunbookPlanner(self.runbooks, self.tools)
        model = None
        fast = self.fast_model()
        if self.claude is not None:
            model = ClaudeEngine(
                self.claude,
                model=s.model,
                max_tokens=s.model_max_tokens,
                tools=tuple(self.tools.values()),
                actions=tuple(self.actions.values()),
                metrics=self.metrics,
                scopes=self.policy.scopes,
                prices=self.prices,
                compactor=Compactor(
                    window=s.context_window,
                    share=s.compact_at,
                    client=self.claude,
                    counting=self.counting,
                    fast=fast,
                    metrics=self.metrics,
                ),
            )
        investigator = Investigator(
            store=self.store,
            metrics=self.metrics,
            tools=self.tools,
            tool_context=self.tool_context,
            model=model,
            model_name=s.model,
            planner=planner,
            limits=model_limits(
                self.policy.budgets, max_steps=s.max_steps, token_budget=s.token_budget
            ),
            spend=DailySpend(
                self.store.redis,
                prefix=s.key_prefix,
                metrics=self.metrics,
                day_tokens=self.policy.budgets.per_day.tokens,
                day_dollars=self.policy.budgets.per_day.dollars,
            ),
            checkpoints=checkpoints,
            policy=self.policy,
            alertmanager=self.action_context,
            loop_turns=s.loop_turns,
            briefing=Briefing(planner=planner, tools=self.tools, memory=self.memory),
            fast=fast,
            prices=self.prices,
            pause=self.pause,
        )
        remediator = Remediator(
            store=self.store,
            metrics=self.metrics,
            checkpoints=checkpoints,
            actions=self.actions,
            action_context=self.action_context,
            tool_context=self.tool_context,
            verify_timeout_seconds=s.verify_timeout_seconds,
            verify_interval_seconds=s.verify_interval_seconds,
            policy=self.policy,
            pause=self.pause,
        )
        return RunDriver(
            store=self.store,
            metrics=self.metrics,
            checkpoints=checkpoints,
            investigator=investigator,
            remediator=remediator,
            lease_seconds=s.lease_seconds,
            approval_timeout_seconds=self.approval_timeout_seconds,
            busy_seconds=self.deadlines.busy_seconds,
            policy=self.policy,
            marks=self.marks,
        )


@asynccontextmanager
async def open_deps(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    tool_sources: bool = True,
    model: bool = True,
) -> AsyncIterator[Deps]:
    """Connect everything the settings name; close it all on exit.

    `tool_sources=False` leaves the policy's MCP servers unstarted: for commands that read
    or mark state and drive no investigation (the kill switch must never wait on one).
    `model=False` builds no Claude client even with a key, and so never loads the SDK
    (some 40 MB): for a process that investigates nothing (an intake-only `serve`).
    """
    policy = load_policy(
        settings.policy_dir, known_actions=KNOWN_ACTIONS, reversible_actions=REVERSIBLE_ACTIONS
    )
    metrics = metrics or Metrics()
    async with AsyncExitStack() as stack:
        connection = await stack.enter_async_context(open_redis(settings))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        read_kube = _kubernetes(stack, settings.kubernetes_url, settings.kubeconfig)
        write_kube = _kubernetes(
            stack, settings.kubernetes_url, settings.actions_kubeconfig or settings.kubeconfig
        )
        claude = None
        if model and settings.anthropic_api_key is not None:
            # Imported here, not at start-up: the SDK is tens of MB, unused without a key.
            import anthropic

            claude = anthropic.AsyncAnthropic(
                api_key=settings.anthropic_api_key.get_secret_value(),
                base_url=settings.anthropic_base_url,
                max_retries=settings.model_max_retries,
                timeout=settings.model_timeout_seconds,
                http_client=anthropic.DefaultAioHttpClient(),
            )
            stack.push_async_callback(claude.close)
        tool_context = build_tool_context(settings, http, read_kube)
        mcp_tools: dict[str, Tool] = {}
        if tool_sources:
            _, mcp_tools = await stack.enter_async_context(
                open_mcp_tools(policy, reserved=[t.name for t in TOOLSETS])
            )
        yield Deps(
            settings=settings,
            store=RunStore(
                connection.client,
                prefix=settings.key_prefix,
                retention_seconds=settings.retention_seconds,
            ),
            queue=WorkQueue(connection.client, prefix=settings.key_prefix),
            metrics=metrics,
            tool_context=tool_context,
            action_context=ActionContext(
                http=http,
                kubernetes=write_kube,
                prometheus_url=settings.prometheus_url,
                timeout_seconds=settings.action_timeout_seconds,
                alertmanager_url=settings.alertmanager_url,
                # Silences go to the Alertmanager the tools read, with the same credentials.
                alertmanager_auth=tool_context.alertmanager_auth,
                webhooks=webhook_endpoints(policy, settings),
            ),
            claude=claude,
            tools=index_tools(TOOLSETS) | mcp_tools,
            actions={a.name: a for a in ACTIONS},
            runbooks=load_runbooks(
                settings.policy_dir / "runbooks" if settings.policy_dir else None
            ),
            owner=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            redis_location=connection.location,
            slack=slack_client(settings, metrics, http),
            policy=policy,
            prices=Prices(settings.model_prices),
            deadlines=Deadlines(
                connection.client,
                prefix=settings.key_prefix,
                approval_seconds=approval_timeout(settings, policy),
                busy_seconds=busy_seconds(settings),
            ),
            marks=DriveMarks(
                connection.client,
                prefix=settings.key_prefix,
                retention_seconds=settings.retention_seconds,
            ),
        )


def approval_timeout(settings: Settings, policy: Policy) -> float:
    """How long a proposal waits for a decision: the setting if made, else the policy's."""
    configured = settings.approval_timeout_seconds
    return policy.approval_timeout_seconds if configured is None else configured


def busy_seconds(settings: Settings) -> float:
    """How long a run may stay `executing` or `verifying`: its verification, plus room
    for the queue to hand a dead driver's work to another replica twice."""
    handover = settings.reclaim_after_seconds + settings.lease_seconds
    return settings.verify_timeout_seconds + 2 * handover


def webhook_endpoints(policy: Policy, settings: Settings) -> dict[str, WebhookEndpoint]:
    """The policy's webhooks with their signing secrets (the webhook's `secret_env`, else
    INCIDENT_BOT_ACTIONS_WEBHOOK_SECRET)."""
    default = settings.actions_webhook_secret
    endpoints = {}
    for hook in policy.webhooks:
        secret = os.environ.get(hook.secret_env) if hook.secret_env else None
        if secret is None and default is not None:
            secret = default.get_secret_value()
        endpoints[hook.name] = WebhookEndpoint(
            name=hook.name,
            url=hook.url,
            secret=secret.encode() if secret else None,
            insecure=hook.insecure,
            status_url=hook.status_url,
        )
    return endpoints


def _kubernetes(
    stack: AsyncExitStack, url: str | None, kubeconfig: Path | None
) -> KubernetesApi | None:
    """The Kubernetes API, if configured (its client is built now, see `KubernetesApi`)."""
    if url is None and kubeconfig is None and "KUBERNETES_SERVICE_HOST" not in os.environ:
        return None
    kubernetes = KubernetesApi(url, kubeconfig)
    stack.push_async_callback(kubernetes.close)
    return kubernetes
