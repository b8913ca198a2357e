"""Loop detection: a model that asks for the same tool call again and again, or whose turns
bring no new tool result, is told once what it repeats; if it goes on, the run stops.

Pure functions of the transcript. What the model was told is a recorded step of its own
(author `system`), so a run resumed after a crash decides exactly as the first process would.
Only the model is guarded: the runbook planner is deterministic and never loops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.finishing import CONCLUDE, PROPOSE
from bot.models import Step, TextPart, ToolCallPart, ToolResultPart
from tools.toolset import compact_json

# The third time a call is asked for, it is not run.
REPEATS = 3
# Answers the bot gives instead of a tool's result start with this; they are never news.
NOT_RUN = "not run:"
# Every warning ends with this sentence; finding it in a system step means "told".
ADVICE = "Use what you have: call a different tool, or finish with propose_remediation or conclude."
_CALL_CHARS = 300

LoopKind = Literal["repeated_call", "no_progress"]


@dataclass(frozen=True, kw_only=True)
class Loop:
    """A loop the model is in: what it repeats, and whether it was told before (then it stops)."""

    kind: LoopKind
    call: str  # the repeated call (`prometheus_query with {"query":…}`), or what stalled
    told_before: bool
    repeated: tuple[ToolCallPart, ...] = ()  # this turn's calls that are not run

    @property
    def outcome(self) -> Literal["told", "stopped"]:
        """`stopped` when the model had been told already, else `told`."""
        return "stopped" if self.told_before else "told"


def describe_call(call: ToolCallPart) -> str:
    """A call as the model and the audit read it: its tool and canonical arguments."""
    text = f"{call.name} with {compact_json(call.input)}"
    return text if len(text) <= _CALL_CHARS else text[: _CALL_CHARS - 1] + "…"


def repeated_call(transcript: Sequence[Step], calls: Sequence[ToolCallPart]) -> Loop | None:
    """The loop of a turn (already in `transcript`) that asks for a call the third time or
    more in the run: the same tool with the same canonical arguments."""
    asked = Counter(_key(c) for step in _model_steps(transcript) for c in step.tool_calls())
    repeated = tuple(c for c in calls if asked[_key(c)] >= REPEATS)
    if not repeated:
        return None
    return Loop(
        kind="repeated_call",
        call=describe_call(repeated[0]),
        told_before=told_at(transcript) is not None,
        repeated=repeated,
    )


def no_progress(transcript: Sequence[Step], turns: int) -> Loop | None:
    """The loop when the newest `turns` model turns (counted since the model was last told)
    each brought no new tool result; None while the run makes progress."""
    told = told_at(transcript)
    recent = [(i, new) for i, new in _progress(transcript) if told is None or i > told]
    if len(recent) < turns or any(new for _, new in recent[-turns:]):
        return None
    return Loop(
        kind="no_progress",
        call=f"{turns} turns without a new tool result",
        told_before=told is not None,
    )


def told_at(transcript: Sequence[Step]) -> int | None:
    """The transcript position of the newest warning the model was given, if any."""
    for position in range(len(transcript) - 1, -1, -1):
        step = transcript[position]
        if step.author == "system" and any(
            isinstance(p, TextPart) and ADVICE in p.text for p in step.content
        ):
            return position
    return None


def not_run(call: ToolCallPart, loop: Loop) -> ToolResultPart:
    """The answer to a call the guard does not run."""
    if loop.told_before:
        why = f"{NOT_RUN} the run stopped: {stop_reason(loop)}"
    elif call in loop.repeated:
        why = f"{NOT_RUN} asked for the third time with the same arguments; its result is above"
    else:  # the turn's other calls wait for a turn without the repeated one
        why = f"{NOT_RUN} this turn repeated a call; ask for this one again on its own"
    return ToolResultPart(tool_use_id=call.id, content=why, is_error=True)


def warning(loop: Loop, *, index: int) -> Step:
    """The user message that tells the model, once, what it repeats."""
    if loop.kind == "repeated_call":
        said = f"You called {loop.call} three times; its result is above."
    else:
        said = f"Your last {loop.call}: the calls returned what earlier calls had returned."
    return Step(
        index=index, role="user", author="system", content=[TextPart(text=f"{said} {ADVICE}")]
    )


def stop_reason(loop: Loop) -> str:
    """Why the run stopped, for the audit and the hand-over to the runbook planner."""
    if loop.kind == "repeated_call":
        return f"the model repeated {loop.call} after being told it was looping"
    return f"the model went {loop.call} after being told it was looping"


def _key(call: ToolCallPart) -> str:
    return f"{call.name} {compact_json(call.input)}"


def _model_steps(transcript: Sequence[Step]) -> list[Step]:
    return [s for s in transcript if s.role == "assistant" and s.author == "model"]


def _progress(transcript: Sequence[Step]) -> list[tuple[int, bool]]:
    """Each model turn (its position in the transcript) and whether the steps answering it
    brought a tool result not seen before in the run. A paused turn is one turn with its
    continuation; the bot's own answers and the finishing calls' are never news."""
    finishing = {
        c.id for step in transcript for c in step.tool_calls() if c.name in (PROPOSE, CONCLUDE)
    }
    seen: set[str] = set()
    turns: list[tuple[int, bool]] = []
    current: int | None = None  # the index in `turns` of the model turn being answered
    for position, step in enumerate(transcript):
        if step.role == "assistant":
            if step.author != "model":
                current = None
            elif step.stop_reason != "pause_turn":
                turns.append((position, False))
                current = len(turns) - 1
            continue
        for part in step.content:
            if not isinstance(part, ToolResultPart) or part.tool_use_id in finishing:
                continue
            if part.content.startswith(NOT_RUN) or part.content in seen:
                continue
            seen.add(part.content)
            if current is not None and step.author == "tools":
                turns[current] = (turns[current][0], True)
    return turns
