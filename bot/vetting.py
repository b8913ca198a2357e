"""What the loop checks of the model's turns before it acts on them.

- A turn that repeats a tool call a third time (`bot.loop_guard`) is not run; the model is
  told once what it repeated, and the run is handed to the runbook planner if it goes on.
  So is a model whose turns bring no new tool result, after `loop_turns` of them.
- Findings at `propose_remediation`/`conclude` must be grounded (`bot.grounding`): the
  model is asked once to ground or drop the others, then they are kept marked unverified.
- A proposal's verification check must be unhealthy now, or it cannot show recovery
  (`bot.remediation.measuring_check`); this one applies to the planner's proposals too.

Each decision is audited; what the model was told is a transcript step, so a resumed run
decides the same way.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot import grounding, loop_guard
from bot.checkpoints import Checkpointer
from bot.metrics import Metrics
from bot.models import Proposal, Run, Step
from bot.remediation import measuring_check
from bot.steps import AwaitApproval, Continue, EngineReply, Finish, HandOver, RunTools, Turn
from tools.toolset import ToolContext

log = logging.getLogger(__name__)

# The proposal with a verification check that measures the problem: by default asked of
# Prometheus (`measuring_check`); a replay answers it from the record.
CheckVetter = Callable[[Run, Proposal], Awaitable[Proposal]]


@dataclass(frozen=True, kw_only=True)
class Vetting:
    """The checks, with what they audit and count through."""

    checkpoints: Checkpointer
    metrics: Metrics
    tool_context: ToolContext
    loop_turns: int
    vet_check: CheckVetter | None = None

    async def before(self, run: Run, transcript: list[Step], turn: Turn) -> tuple[Run, Turn]:
        """The model's turn as the loop should act on it; steps recorded on the way are
        appended to `transcript`."""
        match turn:
            case RunTools(calls=calls):
                loop = loop_guard.repeated_call(transcript, calls)
                if loop is None:
                    return run, turn
                answers = Step(
                    index=len(transcript),
                    role="user",
                    author="tools",
                    content=[loop_guard.not_run(c, loop) for c in calls],
                )
                return await self._looping(run, transcript, loop, answers)
            case AwaitApproval() | Finish():
                return await self._grounded(run, transcript, turn)
        return run, turn

    async def after(self, run: Run, transcript: list[Step]) -> tuple[Run, EngineReply | None]:
        """After a model turn was answered: the hand-over to do next when the model made
        no progress for too long after being told, else None (it may have been told now)."""
        if not transcript or transcript[-1].role != "user":
            return run, None  # a paused turn continues; it is judged with its continuation
        loop = loop_guard.no_progress(transcript, self.loop_turns)
        if loop is None:
            return run, None
        run, turn = await self._looping(run, transcript, loop)
        return run, EngineReply(turn=turn) if isinstance(turn, HandOver) else None

    async def verify_check(self, run: Run, proposal: Proposal) -> Proposal:
        """The proposal with a check that measures the problem (audited when replaced)."""
        if self.vet_check is not None:
            vetted = await self.vet_check(run, proposal)
        else:
            vetted = await measuring_check(self.tool_context, run, proposal)
        if vetted.verify != proposal.verify:
            await self.checkpoints.audit(
                run.id,
                "verify_check_replaced",
                proposed=proposal.verify.describe() if proposal.verify else None,
                replacement=vetted.verify.describe() if vetted.verify else None,
                note=vetted.verify_note,
            )
        return vetted

    async def _looping(
        self, run: Run, transcript: list[Step], loop: loop_guard.Loop, *steps: Step
    ) -> tuple[Run, Turn]:
        """Tell the model once (then ask it again), or stop: hand over to the planner."""
        index = len(transcript) + len(steps)
        told = () if loop.told_before else (loop_guard.warning(loop, index=index),)
        recorded = (*steps, *told)
        if recorded:
            run = await self.checkpoints.write(run, recorded)
            transcript.extend(recorded)
        await self.checkpoints.audit(
            run.id, "loop_detected", kind=loop.kind, call=loop.call, outcome=loop.outcome
        )
        self.metrics.loops_detected.labels(loop.kind, loop.outcome).inc()
        log.warning(
            "the model is looping (%s): %s",
            loop.kind,
            loop.outcome,
            extra={"run_id": run.id, "call": loop.call},
        )
        if loop.told_before:
            return run, HandOver(reason=loop_guard.stop_reason(loop))
        return run, Continue()

    async def _grounded(
        self, run: Run, transcript: list[Step], turn: AwaitApproval | Finish
    ) -> tuple[Run, Turn]:
        """The finishing turn with grounded findings; the first time some are not, the
        model is asked to ground them instead; the second time they are marked."""
        problems = grounding.ungrounded(turn.findings, transcript)
        if not problems:
            return run, turn
        reasons = [problems[i] for i in sorted(problems)]
        if grounding.asked(transcript):
            await self.checkpoints.audit(
                run.id, "findings_unverified", outcome="marked", reasons=reasons
            )
            return run, dataclasses.replace(
                turn, findings=grounding.marked(turn.findings, problems)
            )
        finishing = next(s for s in reversed(transcript) if s.role == "assistant")
        asked = grounding.rejection(finishing, turn.findings, problems, index=len(transcript))
        run = await self.checkpoints.write(run, (asked,))
        transcript.append(asked)
        await self.checkpoints.audit(
            run.id, "findings_unverified", outcome="asked", reasons=reasons
        )
        return run, Continue()
