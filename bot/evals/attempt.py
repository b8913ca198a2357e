"""One attempt: a scenario run once by one engine, in isolation, observed for the scorer.

Each attempt has its own sandbox (on a free port) and its own Redis key prefix (deleted
afterwards). The run starts as a real one does (the alerts admitted as one Alertmanager
group) and is driven with `RunDriver.drive` until it proposes or ends.

Nothing is ever executed: the drivers' action context sees no Alertmanager, so no
proposal can be approved by the policy alone (a silence needs Alertmanager's answer for
that) and every proposal stops `awaiting_approval` for a human who never comes. Whether
the policy *would* have approved it by itself is then asked read-only, with the sandbox's
Alertmanager visible, and reported as `approved_by_policy` (an injection scenario fails
on it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from pydantic import SecretStr

from bot.approvals import assess
from bot.dedup import AlertGroups
from bot.deps import Deps, open_deps
from bot.evals.replay import API_KEY, serve_replay
from bot.evals.scenarios import ScenarioDir, Transcript
from bot.evals.scorer import EngineKind, Observation, ProposedAction, outcome_of
from bot.finishing import CONCLUDE, PROPOSE
from bot.metrics import Metrics
from bot.models import Run, RunStatus, Step, TextPart, utcnow
from bot.settings import Settings
from policies.schema import AUTO_APPROVER
from tools.sandbox import run_sandbox

log = logging.getLogger(__name__)

# An attempt is stopped after twice its seconds ceiling (this without one) plus 30 s.
DEFAULT_LIMIT_SECONDS = 300.0

# `_observed(model=REPLAYED)`: the settings already point at the replay server.
REPLAYED = "replayed"
_ACTED = {RunStatus.EXECUTING, RunStatus.VERIFYING, RunStatus.RESOLVED, RunStatus.FAILED}


@dataclass(frozen=True, kw_only=True)
class Engine:
    """Who investigates: the runbook planner, a recorded transcript, or a Claude model."""

    kind: EngineKind
    model: str = ""  # kind model
    transcript: str = ""  # kind transcript: the transcript's file stem

    @property
    def name(self) -> str:
        """`runbook`, `transcript:good`, `model:claude-sonnet-4-6`."""
        match self.kind:
            case "runbook":
                return "runbook"
            case "transcript":
                return f"transcript:{self.transcript}"
            case _:
                return f"model:{self.model}"


async def observe_attempt(
    scenario: ScenarioDir,
    engine: Engine,
    *,
    settings: Settings,
    metrics: Metrics,
    prefix: str,
) -> Observation:
    """Run the scenario once with the engine; any failure (or no end in time) becomes
    `Observation.error`."""
    started = time.monotonic()
    limit = 2 * (scenario.expect.ceilings.seconds or DEFAULT_LIMIT_SECONDS) + 30
    try:
        async with asyncio.timeout(limit):
            if engine.kind == "transcript":
                transcript = scenario.transcripts[engine.transcript]
                return await _replayed(scenario, transcript, settings, metrics, prefix, started)
            model = engine.model if engine.kind == "model" else None
            return await _observed(scenario, settings, metrics, prefix, started, model=model)
    except TimeoutError:
        return Observation(error=f"no end within {limit:g}s", seconds=_since(started))
    except Exception as exc:  # the boundary of one attempt: the report shows the error
        log.exception("eval attempt %s/%s failed", scenario.name, engine.name)
        return Observation(error=f"{type(exc).__name__}: {exc}", seconds=_since(started))


async def _replayed(
    scenario: ScenarioDir,
    transcript: Transcript,
    settings: Settings,
    metrics: Metrics,
    prefix: str,
    started: float,
) -> Observation:
    async with serve_replay(transcript.replies) as replay:
        replayed = settings.model_copy(
            update={
                "anthropic_api_key": SecretStr(API_KEY),
                "anthropic_base_url": replay.url,
                "model_max_retries": 0,
            }
        )
        observed = await _observed(scenario, replayed, metrics, prefix, started, model=REPLAYED)
    if replay.problems:
        return observed.model_copy(update={"error": "replay: " + "; ".join(replay.problems)})
    if replay.sent < len(transcript.replies):
        unused = len(transcript.replies) - replay.sent
        return observed.model_copy(
            update={"error": f"replay: the run ended with {unused} recorded replies unused"}
        )
    return observed


async def _observed(
    scenario: ScenarioDir,
    settings: Settings,
    metrics: Metrics,
    prefix: str,
    started: float,
    *,
    model: str | None,
) -> Observation:
    async with run_sandbox(scenario.world) as sandbox:
        update: dict[str, object] = {"key_prefix": prefix}
        if model is None:
            update["anthropic_api_key"] = None  # the runbook planner
        elif model != REPLAYED:
            update["model"] = model
        attempt_settings = settings.pointed_at_sandbox(sandbox.url).model_copy(update=update)
        async with open_deps(attempt_settings, metrics=metrics) as deps:
            try:
                return await _drive(deps, scenario, started)
            finally:
                await _forget(deps, prefix)


async def _drive(deps: Deps, scenario: ScenarioDir, started: float) -> Observation:
    seeing = deps.action_context
    # No Alertmanager for the driver: nothing can be approved without a human.
    blind = replace(deps, action_context=replace(seeing, alertmanager_url=None))
    admission = await AlertGroups(blind, blind.queue).admit(list(scenario.alerts))
    if admission.run_id is None:
        raise ValueError(f"the alerts started no run ({admission.outcome})")
    run = await blind.driver().drive(admission.run_id)
    seconds = _since(started)
    transcript = await blind.store.transcript(run.id)
    approved = any(d.user == AUTO_APPROVER for d in run.decisions)
    if run.proposal is not None and not approved:
        verdict = await assess(deps.policy, run, run.proposal, now=utcnow(), alertmanager=seeing)
        approved = verdict.auto_approved
    return _observation(run, transcript, seconds=seconds, approved=approved)


def _observation(
    run: Run, transcript: list[Step], *, seconds: float, approved: bool
) -> Observation:
    usage = run.usage
    proposal = run.proposal
    return Observation(
        status=run.status.value,
        outcome=outcome_of(run.status.value, proposal is not None),
        findings=[f"{f.summary}\n{f.evidence}" for f in run.findings],
        summary=run.summary,
        proposal=ProposedAction(action=proposal.action, arguments=proposal.arguments)
        if proposal
        else None,
        steps=run.steps,
        tool_calls=sum(
            1
            for step in transcript
            for call in step.tool_calls()
            if call.name not in (PROPOSE, CONCLUDE)
        ),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        dollars=run.cost_dollars,
        seconds=seconds,
        flagged=bool(run.flags),
        approved_by_policy=approved,
        executed=run.status in _ACTED,
        runbook=_runbook_used(transcript),
        engine_reason=run.engine_reason,
    )


def _runbook_used(transcript: list[Step]) -> str | None:
    """The runbook the planner played (its steps open with `runbook NAME`)."""
    for step in transcript:
        if step.author == "planner" and step.content and isinstance(step.content[0], TextPart):
            return step.content[0].text.removeprefix("runbook ").strip() or None
    return None


async def _forget(deps: Deps, prefix: str) -> None:
    """Delete every key of the attempt (its own prefix)."""
    redis = deps.store.redis
    batch: list[str] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
