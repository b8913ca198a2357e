"""What a run's record holds for a replay (`bot.replay`): its inputs, served back in order.

The model's replies (`RecordedModel`, an engine), the tools' results (`RecordedResults`,
today's tools answering from the record) and the group's alert updates (`AlertFeed`),
plus where the record's investigation ended (`Record.end`, `ended_status`).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import BaseModel, JsonValue, ValidationError

from bot.llm import ClaudeEngine
from bot.models import Alert, Proposal, Run, RunStatus, Step, ToolResultPart
from bot.steps import EngineReply, HandOver
from bot.store import AuditEvent, RunStore
from tools.toolset import Tool, ToolContext, ToolFunction, ToolResult, compact_json


@dataclass(frozen=True, kw_only=True)
class Record:
    """A stored run as a replay reads it; `end` is the audit event that ended its
    investigation (its proposal, or its finish)."""

    run: Run
    transcript: list[Step]
    audit: list[AuditEvent]
    alert_log: list[Alert]
    end: AuditEvent

    @property
    def ended_at(self) -> datetime:
        """When the investigation ended (the time of the audit stream entry)."""
        return self.end.at

    @property
    def prelude(self) -> list[Step]:
        """The steps before the first engine turn: the inputs a run starts from."""
        turns = [i for i, s in enumerate(self.transcript) if s.role == "assistant"]
        return self.transcript[: turns[0] if turns else len(self.transcript)]

    @property
    def model_name(self) -> str | None:
        """The model the run's investigation asked, if it asked one (side calls to the
        fast model name a `purpose` instead of a `turn`)."""
        calls = (e for e in self.audit if e.event == "model_call" and "turn" in e.data)
        return next((str(e.data["model"]) for e in calls), None)


class RecordEnds(Exception):
    """Today's loop asked for a model reply after the record's last one (raised through
    the loop by `RecordedModel`; `bot.replay.replay_run` catches it)."""

    def __init__(self, at: int) -> None:
        super().__init__(f"the record has no model reply for step {at}")
        self.at = at


def ended_status(record: Record) -> RunStatus:
    """The status the record's investigation ended in (the run may have gone on since)."""
    end = record.end
    if end.event == "finished":
        return RunStatus(str(end.data["status"]))
    proposal = end.data.get("proposal")
    if any(e.event == "proposal_forbidden" for e in record.audit):
        return RunStatus.NEEDS_ATTENTION
    auto = any(
        e.event == "decision" and e.data.get("via") == "policy" and e.data["proposal"] == proposal
        for e in record.audit
    )
    return RunStatus.EXECUTING if auto else RunStatus.AWAITING_APPROVAL


def recorded_check(record: Record) -> Callable[[Run, Proposal], Awaitable[Proposal]]:
    """Vets a proposal's verification check as the record's run saw it, without
    Prometheus: the record's replacement (`verify_check_replaced`) of the same proposed
    check, or the record's note on the same check it kept; any other check is kept as
    proposed (a different check shows as a divergence of the ending)."""
    kept = record.run.proposal

    async def vet(run: Run, proposal: Proposal) -> Proposal:
        proposed = proposal.verify.describe() if proposal.verify else None
        for event in record.audit:
            if event.event == "verify_check_replaced" and event.data.get("proposed") == proposed:
                replacement = kept.verify if kept is not None else None
                note = str(event.data.get("note") or "")
                return proposal.model_copy(update={"verify": replacement, "verify_note": note})
        if kept is not None and kept.verify == proposal.verify and kept.verify_note:
            return proposal.model_copy(update={"verify_note": kept.verify_note})
        return proposal

    return vet


class RecordedResults:
    """The record's tool results; each answers one call of today's loop with the same
    tool and canonical arguments, in the record's order."""

    def __init__(self, transcript: Sequence[Step], tools: dict[str, Tool]) -> None:
        by_api = {t.api_name: t for t in tools.values()}
        results = {
            p.tool_use_id: p for s in transcript for p in s.content if isinstance(p, ToolResultPart)
        }
        self._calls: list[tuple[str, str | None, ToolResultPart]] = []
        for step in transcript:
            for call in step.tool_calls():
                tool, result = by_api.get(call.name), results.get(call.id)
                if tool is not None and result is not None:
                    self._calls.append((tool.api_name, _canonical(tool, call.input), result))
        self._used: set[int] = set()

    def tools(self, tools: dict[str, Tool]) -> dict[str, Tool]:
        """Today's tools, answering from the record and rendering its text unchanged."""
        return {
            key: replace(tool, function=self._answering(tool), budget_chars=sys.maxsize)
            for key, tool in tools.items()
        }

    def _answering(self, tool: Tool) -> ToolFunction:
        async def answer(ctx: ToolContext, args: BaseModel) -> ToolResult:
            return self.answer(tool, args)

        return answer

    def answer(self, tool: Tool, args: BaseModel) -> ToolResult:
        """The recorded result of the first unused matching call, else an error."""
        wanted = compact_json(args.model_dump(mode="json"))
        for i, (name, arguments, part) in enumerate(self._calls):
            if i not in self._used and name == tool.api_name and arguments == wanted:
                self._used.add(i)
                return recorded_result(part.content)
        return ToolResult.fail("replay: the record has no result for this call")


def _canonical(tool: Tool, raw: dict[str, JsonValue]) -> str | None:
    """A recorded call's arguments as the tool validates them (None: they do not validate)."""
    try:
        return compact_json(tool.input_model.model_validate(raw).model_dump(mode="json"))
    except ValidationError:
        return None


def recorded_result(content: str) -> ToolResult:
    """A recorded result's text as the `ToolResult` it was rendered from; text that is not
    a rendered result (one cut to its budget as plain text) comes back as an error, which
    is what the runbook planner read it as."""
    try:
        return ToolResult.model_validate_json(content)
    except ValidationError:
        return ToolResult.fail(content)


class AlertFeed:
    """Puts the record's alert updates in the scratch run's alert log in time for the loop
    to show each before the model step that saw it."""

    def __init__(self, record: Record, store: RunStore) -> None:
        self._log = record.alert_log
        self._store = store
        self._shown_before: list[int] = []
        shown = 0
        for step in record.transcript[1:]:
            if step.author == "model":
                self._shown_before.append(shown)
            elif step.author == "alert":
                shown += len(step.content)
        self._shown_before.append(shown)
        self._fed = 0

    async def before_model_step(self, run_id: str, number: int) -> None:
        """Log the updates the record had shown before its model step `number` (0-based)."""
        last = len(self._shown_before) - 1
        wanted = min(len(self._log), 1 + self._shown_before[min(number, last)])
        for alert in self._log[self._fed : wanted]:
            await self._store.fold_alerts(run_id, [alert])
        self._fed = max(self._fed, wanted)


class RecordedModel:
    """The model engine of a replay: each turn is the record's next model reply."""

    def __init__(self, record: Record, reader: ClaudeEngine, feed: AlertFeed) -> None:
        self._record = record
        self._replies = model_replies(record.transcript)
        self._reader = reader
        self._feed = feed
        self._next = 0

    async def next_turn(self, run: Run, transcript: Sequence[Step]) -> EngineReply:
        """The next recorded model reply, its model step read as today's engine reads it."""
        if self._next >= len(self._replies):
            if self._record.run.engine == "runbook":
                # The record's model stopped here (down, over budget): the planner went on.
                return EngineReply(turn=HandOver(reason=self._record.run.engine_reason))
            raise RecordEnds(len(transcript))
        steps = [
            s.model_copy(update={"index": len(transcript) + i})
            for i, s in enumerate(self._replies[self._next])
        ]
        self._next += 1
        await self._feed.before_model_step(run.id, self._next)
        reply = self._reader.resume(steps[-1])
        return EngineReply(turn=reply.turn, steps=(*steps, *reply.steps), usage=steps[-1].usage)

    def resume(self, step: Step) -> EngineReply:
        """What a model step asks for, as today's engine reads it."""
        return self._reader.resume(step)


def model_replies(transcript: Sequence[Step]) -> list[list[Step]]:
    """The record's model replies: each model step, after the compaction notes the engine
    wrote before it in the same reply (they summarise what that request left out)."""
    replies = []
    for end, step in enumerate(transcript):
        if step.author != "model":
            continue
        start = end
        while (
            start > 0
            and transcript[start - 1].author == "system"
            and transcript[start - 1].compacted
        ):
            start -= 1
        replies.append(list(transcript[start : end + 1]))
    return replies
