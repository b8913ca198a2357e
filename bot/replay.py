"""`runs replay`: today's investigation loop driven by a run's record, with no backend.

The record's model replies, tool results and alert updates are the only inputs. A
scratch copy of the run (the same alert, the same steps before the first engine turn:
the alert and, when the run had one, its briefing of runbook guidance and past
incidents, which read Redis as it was then) is investigated by the real `Investigator`
under a scratch key prefix on the same Redis, with

- `RecordedModel` as the model: each turn is the record's next model reply (its model
  step, after any compaction note the engine wrote for that request), the model step
  read by the Claude engine's own interpretation (a `ClaudeEngine` without a client);
- today's runbook planner and runbooks, judging time conditions at the record's time;
- recorded tools: today's tools (names, schemas, validation, scope), whose calls return
  the result of the record's first unused call of the same tool with the same canonical
  arguments.

No Anthropic client exists, the tool and action contexts name no backend and hold a
closed HTTP session, and the recorded tools never read their context: a request to a
backend or the model is impossible, not merely unobserved. Metrics go to a private
registry; the scratch keys are deleted afterwards, also on error.

What the replay cannot re-decide, because its inputs were not recorded: when to compact
(the notes are replayed as recorded), the briefing (recorded), whether a proposal's
verification check was already healthy (today's pre-check finds no Prometheus and keeps
the check as proposed, so checks are not compared), and anything judged by the wall
clock apart from runbook conditions (run-time budgets, policy time windows).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from bot.approvals import KNOWN_ACTIONS, REVERSIBLE_ACTIONS
from bot.checkpoints import Checkpointer
from bot.deps import TOOLSETS
from bot.errors import NotReplayable
from bot.investigation import Investigator
from bot.llm import ClaudeEngine
from bot.metrics import Metrics
from bot.models import Run, RunStatus, Step, utcnow
from bot.recorded import (
    AlertFeed,
    Record,
    RecordedModel,
    RecordedResults,
    RecordEnds,
    recorded_check,
)
from bot.redis_connection import RedisClient
from bot.runbook import RunbookPlanner, load_runbooks
from bot.settings import Settings
from bot.spend import DailySpend
from bot.store import RunStore
from bot.untrusted import alert_flags, merge_flags
from policies.budgets import model_limits
from policies.schema import Policy, load_policy
from tools.actions import ACTIONS, ActionContext
from tools.toolset import ToolContext, index_tools

# How long the scratch run's lease lasts: a replay takes milliseconds.
_LEASE_SECONDS = 600.0
# Who writes the scratch run's checkpoints.
_OWNER = "replay"


@dataclass(frozen=True, kw_only=True)
class Replayed:
    """What today's loop did with a record: its transcript and its run at the end."""

    record: Record
    transcript: list[Step]
    run: Run
    # The step at which today's loop asked the model for a reply the record does not have.
    record_ran_out_at: int | None = None


async def read_record(store: RunStore, run_id: str) -> Record:
    """The stored run, if its investigation ended; raises `RunNotFound`, `NotReplayable`."""
    run = await store.load(run_id)
    audit = await store.read_audit(run_id)
    end = next((e for e in audit if e.event in ("proposal", "finished")), None)
    if end is None:
        raise NotReplayable(f"run {run_id} cannot be replayed: {await _why_unended(store, run)}")
    return Record(
        run=run,
        transcript=await store.transcript(run_id),
        audit=audit,
        alert_log=await store.alert_log(run_id),
        end=end,
    )


async def _why_unended(store: RunStore, run: Run) -> str:
    if run.status is RunStatus.QUEUED and run.steps <= 1:
        return "it is queued and has not been investigated yet"
    if run.status in (RunStatus.QUEUED, RunStatus.INVESTIGATING):
        holder = await store.lease_holder(run.id)
        if holder is not None:
            return f"it is still being investigated (by {holder}); replay it when it has ended"
        return (
            f"its investigation stopped midway ({run.status.value}); "
            f"`incident-bot runs resume {run.id}` finishes it"
        )
    return f"it ended ({run.status.value}) before its investigation proposed or concluded"


async def replay_run(client: RedisClient, settings: Settings, run_id: str) -> Replayed:
    """Replay the run's investigation with today's code; raises `RunNotFound`,
    `NotReplayable`."""
    prefix = settings.key_prefix
    record = await read_record(
        RunStore(client, prefix=prefix, retention_seconds=settings.retention_seconds), run_id
    )
    policy = load_policy(
        settings.policy_dir, known_actions=KNOWN_ACTIONS, reversible_actions=REVERSIBLE_ACTIONS
    )
    async with _scratch(client, prefix) as scratch, _no_http() as http:
        store = RunStore(client, prefix=scratch, retention_seconds=settings.retention_seconds)
        investigator, feed = _investigator(record, settings, policy, store, scratch, http)
        run = await store.create(_scratch_run(record), record.prelude)
        await store.acquire_lease(run.id, _OWNER, _LEASE_SECONDS)
        await feed.before_model_step(run.id, 0)
        ran_out = None
        try:
            await investigator.investigate(run)
        except RecordEnds as exc:
            ran_out = exc.at
        return Replayed(
            record=record,
            transcript=await store.transcript(run.id),
            run=await store.load(run.id),
            record_ran_out_at=ran_out,
        )


def _investigator(
    record: Record,
    settings: Settings,
    policy: Policy,
    store: RunStore,
    scratch: str,
    http: aiohttp.ClientSession,
) -> tuple[Investigator, AlertFeed]:
    """Today's loop wired to the record: recorded model and tools, no backend at all."""
    metrics = Metrics()
    real = index_tools(TOOLSETS)
    tools = RecordedResults(record.transcript, real).tools(real)
    feed = AlertFeed(record, store)
    model_name = record.model_name or settings.model
    model = None
    if any(s.author == "model" for s in record.transcript):
        reader = ClaudeEngine(
            None,
            model=model_name,
            max_tokens=settings.model_max_tokens,
            tools=tuple(real.values()),
            actions=ACTIONS,
            metrics=metrics,
            scopes=policy.scopes,
        )
        model = RecordedModel(record, reader, feed)
    runbooks = load_runbooks(settings.policy_dir / "runbooks" if settings.policy_dir else None)
    ended_at = record.ended_at
    investigator = Investigator(
        store=store,
        metrics=metrics,
        tools=tools,
        tool_context=ToolContext(http=http, prometheus_url=None, kubernetes=None),
        model=model,
        model_name=model_name,
        planner=RunbookPlanner(runbooks, tools, clock=lambda: ended_at),
        limits=model_limits(
            policy.budgets, max_steps=settings.max_steps, token_budget=settings.token_budget
        ),
        spend=DailySpend(store.redis, prefix=scratch),
        checkpoints=Checkpointer(store=store, metrics=metrics, owner=_OWNER),
        policy=policy,
        alertmanager=ActionContext(http=http, kubernetes=None, prometheus_url=None),
        loop_turns=settings.loop_turns,
        vet_check=recorded_check(record),
    )
    return investigator, feed


def _scratch_run(record: Record) -> Run:
    """A new run of the record's alert, with as long to go as the record had."""
    alert = record.run.alert
    return Run(
        alert=alert,
        trigger=record.run.trigger,
        deadline=utcnow() + (record.run.deadline - record.run.created_at),
        flags=merge_flags([], [flag for _, flag in alert_flags(alert)]),
    )


@asynccontextmanager
async def _scratch(client: RedisClient, prefix: str) -> AsyncIterator[str]:
    """A key prefix of its own under `prefix`; every key under it is deleted on exit."""
    scratch = f"{prefix}replay:{uuid.uuid4().hex[:12]}:"
    try:
        yield scratch
    finally:
        # SCAN visits every primary of a cluster; its client splits UNLINK by slot (in a
        # cluster pipeline UNLINK would not be queued at all).
        keys = [key async for key in client.scan_iter(match=f"{scratch}*", count=1000)]
        if keys:
            await client.unlink(*keys)


@asynccontextmanager
async def _no_http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session that is already closed: any request through it raises."""
    async with aiohttp.ClientSession() as http:
        pass
    yield http
