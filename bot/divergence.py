"""Where a replay departs from its record: the first differing step, turn or status.

Steps are compared in order: who wrote each (role and author), each tool call (name
and canonical arguments), each tool result (its text, as a rendered result), and the
text of steps the bot writes itself (planner, system); a model step's text is the
record's by construction. Then the turn that ended the investigation (a proposal's
action, arguments and verification check, or a conclusion) and the status it ended in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.models import Proposal, Step, TextPart, ToolCallPart, ToolResultPart
from bot.recorded import ended_status, recorded_result
from bot.replay import Replayed
from tools.toolset import compact_json

Kind = Literal[
    "step", "tool_call", "arguments", "result", "text", "record_ends", "turn", "verify", "status"
]

_SHOWN_CHARS = 160


@dataclass(frozen=True, kw_only=True)
class Divergence:
    """The first place today's code does something else than the record."""

    kind: Kind
    step: int | None  # the transcript index; None for the ending turn and status
    message: str


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """A replay measured against its record."""

    run_id: str
    steps: int
    tool_calls: int
    ending: str  # the record's ending, in words
    divergence: Divergence | None

    @property
    def identical(self) -> bool:
        """Whether today's code did what the record did, step for step."""
        return self.divergence is None

    def describe(self) -> str:
        """One line: `identical: …`, or `diverged at step 3: …`."""
        if self.divergence is None:
            steps, calls = _count(self.steps, "step"), _count(self.tool_calls, "tool call")
            return f"identical: {steps}, {calls}, {self.ending}"
        return f"diverged: {self.divergence.message}"

    def as_json(self) -> dict[str, Any]:
        """The comparison for `--json`."""
        d = self.divergence
        return {
            "run_id": self.run_id,
            "identical": self.identical,
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "ending": self.ending,
            "divergence": None
            if d is None
            else {"kind": d.kind, "step": d.step, "message": d.message},
        }


def compare(replayed: Replayed) -> Comparison:
    """Compare today's transcript and ending with the record's; stop at the first
    difference."""
    record = replayed.record
    recorded, today = record.transcript, replayed.transcript
    divergence = first_step_divergence(recorded, today)
    if divergence is None and replayed.record_ran_out_at is not None:
        at = replayed.record_ran_out_at
        divergence = Divergence(
            kind="record_ends",
            step=at,
            message=f"step {at}: today's code asks the model for another reply; "
            f"the record has none (it ended: {_turn(record.end.event, record.end.data)})",
        )
    run = replayed.run
    today_event = "finished"
    today_end: dict[str, Any] = {"status": run.status.value}
    if run.proposal is not None:
        today_event = "proposal"
        today_end = {"action": run.proposal.action, "arguments": run.proposal.arguments}
    if divergence is None:
        divergence = _turn_divergence(record.end.event, record.end.data, today_event, today_end)
    if divergence is None and record.end.event == "proposal":
        divergence = _verify_divergence(record.run.proposal, run.proposal)
    if divergence is None and ended_status(record) is not run.status:
        divergence = Divergence(
            kind="status",
            step=None,
            message=f"a different status: the record's investigation ended "
            f"{ended_status(record).value}; today's code ends it {run.status.value}",
        )
    return Comparison(
        run_id=record.run.id,
        steps=len(recorded),
        tool_calls=sum(len(_tool_calls(s)) for s in recorded),
        ending=_same(record.end.event, record.end.data),
        divergence=divergence,
    )


def first_step_divergence(recorded: Sequence[Step], today: Sequence[Step]) -> Divergence | None:
    """The first step where the two transcripts differ, if any."""
    names = {c.id: c.name for s in [*recorded, *today] for c in s.tool_calls()}
    for index in range(max(len(recorded), len(today))):
        if index >= len(today):
            return Divergence(
                kind="step",
                step=index,
                message=f"step {index}: the record has {_step(recorded[index])}; "
                "today's code ends before it",
            )
        if index >= len(recorded):
            return Divergence(
                kind="step",
                step=index,
                message=f"step {index}: today's code adds {_step(today[index])}, "
                "which the record does not have",
            )
        found = _step_divergence(index, recorded[index], today[index], names)
        if found is not None:
            return found
    return None


def _step_divergence(
    index: int, recorded: Step, today: Step, names: dict[str, str]
) -> Divergence | None:
    if (recorded.role, recorded.author) != (today.role, today.author):
        return Divergence(
            kind="step",
            step=index,
            message=f"step {index}: the record has {_step(recorded)}; "
            f"today's code has {_step(today)}",
        )
    return (
        _call_divergence(index, _tool_calls(recorded), _tool_calls(today))
        or _result_divergence(index, recorded, today, names)
        or _text_divergence(index, recorded, today)
    )


def _tool_calls(step: Step) -> list[ToolCallPart]:
    """The step's calls of read-only tools (a model's finishing call is its turn)."""
    return [c for c in step.tool_calls() if c.name not in ("propose_remediation", "conclude")]


def _call_divergence(
    index: int, recorded: list[ToolCallPart], today: list[ToolCallPart]
) -> Divergence | None:
    for position in range(max(len(recorded), len(today))):
        if position >= len(today):
            return Divergence(
                kind="tool_call",
                step=index,
                message=f"step {index}: today's code does not make the record's call "
                f"{_call(recorded[position])}",
            )
        if position >= len(recorded):
            return Divergence(
                kind="tool_call",
                step=index,
                message=f"step {index}: a tool call the record does not have: "
                f"today's code calls {_call(today[position])}",
            )
        was, now = recorded[position], today[position]
        if was.name != now.name:
            return Divergence(
                kind="tool_call",
                step=index,
                message=f"step {index}: the record calls {_call(was)}; "
                f"today's code calls {_call(now)}",
            )
        if compact_json(was.input) != compact_json(now.input):
            return Divergence(
                kind="arguments",
                step=index,
                message=f"step {index}: different arguments: the record calls {_call(was)}; "
                f"today's code calls {_call(now)}",
            )
    return None


def _result_divergence(
    index: int, recorded: Step, today: Step, names: dict[str, str]
) -> Divergence | None:
    was = [p for p in recorded.content if isinstance(p, ToolResultPart)]
    now = [p for p in today.content if isinstance(p, ToolResultPart)]
    for old, new in zip(was, now, strict=False):
        tool = names.get(old.tool_use_id, old.tool_use_id)
        if old.tool_use_id != new.tool_use_id or _rendered(old) != _rendered(new):
            return Divergence(
                kind="result",
                step=index,
                message=f"step {index}: the result of {tool} differs: the record has "
                f"{_short(old.content)}; today's code has {_short(new.content)}",
            )
    if len(was) != len(now):
        return Divergence(
            kind="result",
            step=index,
            message=f"step {index}: the record has {len(was)} tool results; "
            f"today's code has {len(now)}",
        )
    return None


def _text_divergence(index: int, recorded: Step, today: Step) -> Divergence | None:
    was, now = _text(recorded), _text(today)
    if was == now:
        return None
    return Divergence(
        kind="text",
        step=index,
        message=f"step {index}: a different {recorded.author} message: the record says "
        f"{_short(was)}; today's code says {_short(now)}",
    )


def _turn_divergence(
    event: str, data: dict[str, Any], today_event: str, today: dict[str, Any]
) -> Divergence | None:
    if event != today_event or data.get("action") != today.get("action"):
        return Divergence(
            kind="turn",
            step=None,
            message=f"a different turn (record: {_turn(event, data)}; "
            f"today: {_turn(today_event, today)})",
        )
    if event == "proposal" and compact_json(data["arguments"]) != compact_json(today["arguments"]):
        return Divergence(
            kind="turn",
            step=None,
            message=f"different proposal arguments for {data['action']}: the record "
            f"{compact_json(data['arguments'])}; today's code {compact_json(today['arguments'])}",
        )
    return None


def _verify_divergence(recorded: Proposal | None, today: Proposal | None) -> Divergence | None:
    """A different verification check (or note on it) for the same proposal."""
    if recorded is None or today is None:
        return None
    was = recorded.verify.describe() if recorded.verify else "no check"
    now = today.verify.describe() if today.verify else "no check"
    if (was, recorded.verify_note) == (now, today.verify_note):
        return None
    return Divergence(
        kind="verify",
        step=None,
        message=f"a different verification check: the record verifies with {was}"
        f"{f' ({recorded.verify_note})' if recorded.verify_note else ''}; today's code "
        f"with {now}{f' ({today.verify_note})' if today.verify_note else ''}",
    )


def _turn(event: str, data: dict[str, Any]) -> str:
    """`propose kubernetes.rollback {…}`, or `conclude (needs_attention)`."""
    if event == "proposal":
        return f"propose {data['action']} {_short(compact_json(data['arguments']))}"
    return f"conclude ({data.get('status', 'concluded')})"


def _same(event: str, data: dict[str, Any]) -> str:
    if event == "proposal":
        return f"same proposal ({data['action']} {_short(compact_json(data['arguments']))})"
    return f"same conclusion ({data.get('status', 'concluded')})"


def _step(step: Step) -> str:
    calls = ", ".join(c.name for c in step.tool_calls())
    match step.author:
        case "model":
            return f"a model reply ({calls or 'no tool call'})"
        case "planner":
            return f"a runbook planner turn calling {calls}"
        case "tools":
            return f"{len(step.content)} tool results"
        case "alert":
            return "an alert message"
        case author:
            return f"a {author} message {_short(_text(step))}"


def _call(call: ToolCallPart) -> str:
    return f"{call.name} {_short(compact_json(call.input))}"


def _rendered(part: ToolResultPart) -> str:
    """A result's text as the rendered result it stands for (see `recorded_result`)."""
    return recorded_result(part.content).model_dump_json(exclude_none=True)


def _text(step: Step) -> str:
    return "\n".join(p.text for p in step.content if isinstance(p, TextPart))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SHOWN_CHARS else flat[: _SHOWN_CHARS - 1] + "…"
