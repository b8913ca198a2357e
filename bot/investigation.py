"""The one investigation loop: ask the engine for a turn, checkpoint, act on the turn.

Each turn is a `RunTools | AwaitApproval | Finish | Continue | HandOver`. The loop writes
a checkpoint after every model call and after every tool batch, so a process killed at
any point leaves a run that another process resumes where it stopped. The Claude engine
runs the run until it cannot (down, over budget, step limit, refusal); then the runbook
planner continues the same run, and the audit stream says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.approvals import approve_by_policy, assess, describe_target
from bot.batching import Command
from bot.checkpoints import Checkpointer
from bot.compaction import audit_compactions
from bot.first_step import alert_step
from bot.guidance import Briefing
from bot.headline import with_headline
from bot.metrics import Metrics
from bot.models import (
    Finding,
    Flag,
    Proposal,
    Run,
    RunStatus,
    Step,
    ToolCallPart,
    utcnow,
)
from bot.pause import PauseState, PauseSwitch
from bot.pricing import Prices
from bot.spend import DailySpend
from bot.step_reads import StepReading, StepReads, alert_news, alerts_shown
from bot.steps import AwaitApproval, Continue, EngineReply, Finish, HandOver, RunTools
from bot.store import RunStore
from bot.tiering import FastModel, charge, record_call
from bot.tool_calls import ToolRunner
from bot.untrusted import (
    alert_flags,
    count,
    merge_flags,
    record_flags,
)
from bot.vetting import CheckVetter, Vetting
from policies.budgets import ModelLimits, Spend, over_budget
from policies.schema import Policy
from tools.actions import ActionContext
from tools.toolset import (
    Tool,
    ToolContext,
)

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What the loop asks for the next turn: the Claude engine or the runbook planner."""

    async def next_turn(self, run: Run, transcript: Sequence[Step]) -> EngineReply:
        """The next turn of the run, with the steps to record first."""
        ...

    def resume(self, step: Step) -> EngineReply:
        """What this engine's recorded step asks for, when a run resumes after it."""
        ...


@dataclass(frozen=True, kw_only=True)
class Investigator:
    """Everything the loop needs, built once per process."""

    store: RunStore
    metrics: Metrics
    tools: dict[str, Tool]
    tool_context: ToolContext
    model: Engine | None
    model_name: str
    planner: Engine
    limits: ModelLimits
    spend: DailySpend
    checkpoints: Checkpointer
    policy: Policy
    # Asked which firing alerts a silence would affect before the policy approves it.
    alertmanager: ActionContext
    # The runbook guidance and similar past incidents of a run's first model turn.
    briefing: Briefing | None = None
    # The fast model (compaction summaries, the headline) and the price of every model.
    fast: FastModel | None = None
    prices: Prices = field(default_factory=Prices)
    # Model turns in a row without a new tool result before the model is told it loops.
    loop_turns: int = 4
    # How a proposal's verification check is vetted (None: asked of Prometheus).
    vet_check: CheckVetter | None = None
    # The kill switch, asked before every model call, planner step and tool round.
    pause: PauseSwitch | None = None

    async def investigate(self, run: Run, transcript: Sequence[Step] | None = None) -> Run:
        """Drive the run until it proposes an action or ends; returns the last checkpoint.

        `transcript`: the run's steps, when the caller read them (with the lease)."""
        steps = list(transcript) if transcript is not None else await self.store.transcript(run.id)
        return await self._investigate(run, steps)

    async def _investigate(self, run: Run, transcript: list[Step]) -> Run:
        started = time.monotonic()
        resumed = self._resume(run, transcript)
        # A run as intake created it has no transcript: its first step is the alert.
        run, opening = await self._opening(run, transcript)
        # The reads for the next model call, made beside the last checkpoint (the one
        # that starts the investigation, or the last tool round's).
        ahead: StepReads | None = None
        if run.status is not RunStatus.INVESTIGATING or opening:
            starting = run.model_copy(update={"status": RunStatus.INVESTIGATING})
            if resumed is None:
                run, ahead = await self._write_reading(starting, opening, transcript)
            else:
                run = await self._write(starting)
        # The briefing and alert news, written with the model reply that read them.
        pending: list[Step] = []
        while True:
            if utcnow() >= run.deadline:
                self._observe_end(run, started)
                return await self._finish(
                    run, Finish(summary="the run's deadline passed", needs_attention=True)
                )
            reads = None
            if resumed is None and run.engine == "model":
                reads = ahead or await self._reading(run, transcript).read()
            ahead = None
            seen = _Seen(reads.pause) if reads is not None else None
            await self._hold(run, "before its next model call or planner step", seen)
            if reads is not None:
                news, found = alert_news(transcript, reads.alerts)
                if news is not None:
                    run = await self._flagged(run, found)
                    pending.append(news)
                    transcript.append(news)
                briefing = await self._briefing(run, transcript, reads)
                if briefing is not None:
                    pending.append(briefing)
                    transcript.append(briefing)
            reply, resumed = resumed or await self._next_turn(run, transcript, reads), None
            run, seen = await self._write_reply(run, reply, pending)
            pending = []
            transcript.extend(reply.steps)
            turn = reply.turn
            if run.engine == "model":  # the planner is deterministic: not vetted
                run, turn = await self._vetting.before(run, transcript, turn)
            match turn:
                case RunTools(calls=calls):
                    await self._hold(run, "before its next tool round", seen)
                    results, flags = await self._run_tools(run, calls, index=len(transcript))
                    run = _with_flags(run, flags)
                    run = run.model_copy(update={"tool_calls": run.tool_calls + len(calls)})
                    transcript.append(results)
                    run, ahead = await self._write_reading(run, (results,), transcript)
                case AwaitApproval():
                    self._observe_end(run, started)
                    return await self._propose(run, turn)
                case Finish():
                    self._observe_end(run, started)
                    return await self._finish(run, turn)
                case HandOver(reason=reason):
                    await self.checkpoints.note(run.id, "planner_fallback", reason=reason)
                    # Without a model configured this is the plan, not a problem.
                    log.log(
                        logging.INFO if self.model is None else logging.WARNING,
                        "the runbook planner takes over",
                        extra={"run_id": run.id, "reason": reason},
                    )
                    run = await self._write(
                        run.model_copy(update={"engine": "runbook", "engine_reason": reason})
                    )
                case Continue():
                    pass
            if run.engine == "model" and isinstance(turn, RunTools | Continue):
                run, resumed = await self._vetting.after(run, transcript)

    async def _opening(self, run: Run, transcript: list[Step]) -> tuple[Run, list[Step]]:
        """For a run without a transcript, its first step (`bot.first_step`), added to
        `transcript` and to be written by the checkpoint that starts the investigation;
        the run has the flags the alert's text raises, noted for that checkpoint."""
        if transcript:
            return run, []
        first = alert_step(run.alert)
        transcript.append(first)
        return await self._flagged(run, alert_flags(run.alert)), [first]

    async def _flagged(self, run: Run, found: Sequence[tuple[str, Flag]]) -> Run:
        """The run with the flags `found` (each with where), noted for its next checkpoint
        and counted."""
        await record_flags(self.checkpoints.note, self.metrics, run.id, found)
        return _with_flags(run, [flag for _, flag in found])

    async def _hold(self, run: Run, where: str, seen: _Seen | None = None) -> None:
        """Raise `bot.pause.Paused` (the run noted as stopped) when the bot is paused, as
        the key was `seen` just before if it was, else as it says now."""
        if self.pause is None:
            return
        state = seen.state if seen is not None else await self.pause.current()
        await self.pause.stop_if(state, run.id, where, self.checkpoints.audit)

    def _reading(self, run: Run, transcript: Sequence[Step]) -> StepReading:
        """The reads before the run's next model call (`bot.step_reads`)."""
        briefing = self.briefing if self._briefs(transcript) else None
        return StepReading(
            store=self.store,
            spend=self.spend,
            pause=self.pause,
            run_id=run.id,
            shown=alerts_shown(transcript),
            briefing=briefing.reads(run) if briefing is not None else None,
        )

    async def _write_reading(
        self, run: Run, steps: Sequence[Step], transcript: Sequence[Step]
    ) -> tuple[Run, StepReads | None]:
        """Checkpoint the run with `steps` (already in `transcript`) and, for a model run,
        make the reads of its next model call in the same round trip."""
        if run.engine != "model":
            return await self._write(run, steps), None
        reading = self._reading(run, transcript)
        written, answers = await self.checkpoints.write_beside(run, steps, reading.commands())
        return written, await reading.parse(answers)

    async def _write_reply(
        self, run: Run, reply: EngineReply, before: Sequence[Step] = ()
    ) -> tuple[Run, _Seen | None]:
        """Checkpoint the engine's reply after the steps it read that were not written yet
        (`before`: the briefing, alert news), with the model call's cost in today's spend
        and, when it asks for tools, a read of the pause key, all in one round trip (on
        one server: see `RunStore.write`); returns the pause key as read, if it was."""
        beside = []
        if reply.usage is not None:
            dollars = self.prices.cost(self.model_name, reply.usage)
            beside += self.spend.adding(reply.usage, dollars)
        counted = len(beside)
        if self.pause is not None and isinstance(reply.turn, RunTools):
            beside.append(self.pause.reading())
        written, answers = await self.checkpoints.write_beside(
            self._account(run, reply), [*before, *reply.steps], beside
        )
        if counted:
            self.spend.added(answers[:counted])
        if self.pause is None or len(answers) == counted:
            return written, None
        [raw] = answers[counted:]
        if isinstance(raw, Exception):
            raise raw
        return written, _Seen(await self.pause.state_of(raw))

    @property
    def _vetting(self) -> Vetting:
        """The checks of the model's turns and of proposals (`bot.vetting`)."""
        return Vetting(
            checkpoints=self.checkpoints,
            metrics=self.metrics,
            tool_context=self.tool_context,
            loop_turns=self.loop_turns,
            vet_check=self.vet_check,
        )

    def _observe_end(self, run: Run, started: float) -> None:
        """Count the investigation that ends now: its time here and its transcript steps."""
        self.metrics.investigation_duration.observe(time.monotonic() - started)
        self.metrics.run_steps.observe(run.steps)

    async def _next_turn(
        self, run: Run, transcript: Sequence[Step], reads: StepReads | None
    ) -> EngineReply:
        if run.engine == "runbook":
            return await self.planner.next_turn(run, transcript)
        reason = await self._why_not_model(run, reads)
        if reason is not None:
            return EngineReply(turn=HandOver(reason=reason))
        assert self.model is not None  # noqa: S101 - _why_not_model checked it
        started = time.monotonic()
        # Its cost is counted in today's spend by its checkpoint (`_write_reply`).
        reply = await self.model.next_turn(run, transcript)
        for side in reply.side_calls:
            await record_call(self.checkpoints.note, self.spend, run.id, side)
        # Noted: the reply's checkpoint writes these events.
        await audit_compactions(self.checkpoints.note, run.id, reply.steps)
        await self.checkpoints.note(
            run.id,
            "model_call",
            model=self.model_name,
            seconds=round(time.monotonic() - started, 3),
            turn=type(reply.turn).__name__,
            stop_reason=next((s.stop_reason for s in reply.steps if s.author == "model"), None),
            usage=reply.usage.model_dump() if reply.usage else None,
            redactions=dict(reply.redactions) or None,
        )
        count(self.metrics, "model", reply.redactions)
        return reply

    def _briefs(self, transcript: Sequence[Step]) -> bool:
        """Whether the run's next model turn is its first, which is briefed."""
        if self.briefing is None or self.model is None:
            return False
        return not any(s.role == "assistant" or s.author == "briefing" for s in transcript)

    async def _briefing(
        self, run: Run, transcript: Sequence[Step], reads: StepReads
    ) -> Step | None:
        """The briefing step before the run's first model turn (`bot.guidance`), if any,
        from the briefing's reads made with the loop's (`reads`) when they were."""
        if self.briefing is None or not self._briefs(transcript):
            return None
        return await self.briefing.step(run, index=len(transcript), read=reads.briefing)

    def _resume(self, run: Run, transcript: Sequence[Step]) -> EngineReply | None:
        """When the last step is the engine's own (the process died after writing it),
        what it asked for: tool calls to run again (they are read-only), or a finish."""
        if not transcript or transcript[-1].role != "assistant":
            return None
        last = transcript[-1]
        if last.author == "planner":
            return self.planner.resume(last)
        if run.engine == "runbook":
            return None  # the planner starts its own plan; the model's last step is moot
        if self.model is None:
            return EngineReply(
                turn=HandOver(reason="no ANTHROPIC_API_KEY to resume the model's run")
            )
        return self.model.resume(last)

    async def _why_not_model(self, run: Run, reads: StepReads | None) -> str | None:
        if self.model is None:
            return "no ANTHROPIC_API_KEY: the runbook planner investigates"
        day_tokens, day_dollars = reads.spent if reads is not None else await self.spend.today()
        spent = Spend(
            steps=run.model_calls,
            tokens=run.usage.total,
            dollars=run.cost_dollars,
            minutes=(utcnow() - run.created_at).total_seconds() / 60,
            day_tokens=day_tokens,
            day_dollars=day_dollars,
        )
        return over_budget(self.limits, spent)

    def _account(self, run: Run, reply: EngineReply) -> Run:
        for side in reply.side_calls:
            run = charge(run, side.model, side.usage, side.dollars, investigation=False)
        if reply.usage is None:
            return run
        dollars = self.prices.cost(self.model_name, reply.usage)
        return charge(run, self.model_name, reply.usage, dollars, investigation=True)

    async def _run_tools(
        self, run: Run, calls: Sequence[ToolCallPart], *, index: int
    ) -> tuple[Step, list[Flag]]:
        """The results of a batch of tool calls, and the flags raised by their text."""
        runner = ToolRunner(
            tools=self.tools,
            tool_context=self.tool_context,
            policy=self.policy,
            metrics=self.metrics,
            checkpoints=self.checkpoints,
        )
        return await runner.run_batch(run, calls, index=index)

    async def _propose(self, run: Run, turn: AwaitApproval) -> Run:
        """Offer the proposal for approval, or (as the policy says) end the run without
        offering it, or approve it in the policy's name and go on to execute it."""
        proposal = await self._vetting.verify_check(run, turn.proposal)
        requirement = await assess(
            self.policy, run, proposal, now=utcnow(), alertmanager=self.alertmanager
        )
        update: dict[str, object] = {
            "status": RunStatus.AWAITING_APPROVAL,
            "proposal": proposal,
            "summary": turn.summary,
            "findings": [*run.findings, *turn.findings],
        }
        if not requirement.allowed:
            update["status"] = RunStatus.NEEDS_ATTENTION
            update["outcome"] = (
                f"{proposal.action} on {describe_target(proposal)} was not offered for approval: "
                f"{requirement.reason}"
            )
        elif requirement.auto_approved:
            decisions = await approve_by_policy(self.store, run, proposal, requirement)
            update |= {"status": RunStatus.EXECUTING, "decisions": decisions}
        run, counting = await self._headline(
            run, turn.summary, [*run.findings, *turn.findings], proposal
        )
        await self.checkpoints.note(
            run.id,
            "proposal",
            proposal=proposal.id,
            action=proposal.action,
            arguments=proposal.arguments,
            engine=run.engine,
            policy=requirement.reason,
        )
        if not requirement.allowed:
            await self.checkpoints.note(run.id, "proposal_forbidden", reason=requirement.reason)
        return await self._write_counted(run.model_copy(update=update), counting)

    async def _finish(self, run: Run, turn: Finish) -> Run:
        status = RunStatus.NEEDS_ATTENTION if turn.needs_attention else RunStatus.CONCLUDED
        run, counting = await self._headline(
            run, turn.summary, [*run.findings, *turn.findings], None
        )
        await self.checkpoints.note(run.id, "finished", status=status.value, summary=turn.summary)
        return await self._write_counted(
            run.model_copy(
                update={
                    "status": status,
                    "summary": turn.summary,
                    "outcome": turn.summary,
                    "findings": [*run.findings, *turn.findings],
                }
            ),
            counting,
        )

    async def _headline(
        self, run: Run, summary: str, findings: Sequence[Finding], proposal: Proposal | None
    ) -> tuple[Run, list[Command]]:
        """The run with its headline worded by the fast model (`bot.headline`), and the
        command counting that call in today's spend."""
        return await with_headline(
            self.fast,
            run,
            summary=summary,
            findings=findings,
            proposal=proposal,
            audit=self.checkpoints.note,
            spend=self.spend,
            metrics=self.metrics,
        )

    async def _write(self, run: Run, steps: Sequence[Step] = ()) -> Run:
        return await self.checkpoints.write(run, steps)

    async def _write_counted(self, run: Run, counting: Sequence[Command]) -> Run:
        """Checkpoint the run with `counting` (a side call's spend) in the same round trip."""
        if not counting:
            return await self._write(run)
        written, answers = await self.checkpoints.write_beside(run, (), counting)
        self.spend.added(answers)
        return written


def _with_flags(run: Run, flags: Sequence[Flag]) -> Run:
    """The run with `flags` merged into its own (the same run when there are none)."""
    return run.model_copy(update={"flags": merge_flags(run.flags, flags)}) if flags else run


@dataclass(frozen=True)
class _Seen:
    """The pause state as a read of its key found it, just before."""

    state: PauseState | None
