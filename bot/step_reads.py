"""What the investigation loop reads before a model call, in one round trip.

The pause key (asked right before the call), today's spend (the daily budget) and the
run's alert log past what the model was shown are independent reads of three hash slots,
so one non-transactional pipeline carries them; on a Redis Cluster redis-py's pipeline
sends each node its part at once (it refuses MGET: the spend is two GETs). After a tool
round they ride beside its checkpoint instead (`Checkpointer.write_beside`), read for the
model call that follows, and before a run's first model call beside the checkpoint that
starts its investigation, with the briefing's reads (`Briefing.reads`: the memory's
index lookups). The alerts the model has not seen become one user step (`alert_news`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from bot.batching import Command
from bot.models import Alert, Flag, Step, TextPart
from bot.pause import PauseState, PauseSwitch
from bot.spend import DailySpend
from bot.store import RunStore
from bot.untrusted import alert_flags


@dataclass(frozen=True, kw_only=True)
class StepReads:
    """The reads before one model call."""

    pause: PauseState | None
    spent: tuple[int, float]  # today's tokens and dollars
    alerts: list[Alert]  # the alert log from the position asked for
    briefing: list[Any] | None = None  # the answers to the briefing's reads, if asked


@dataclass(frozen=True, kw_only=True)
class StepReading:
    """The reads of one run before a model call: the pause in force (None without a
    switch), today's spend, the run's alerts logged from position `shown` on and, for
    a run that is to be briefed, the briefing's reads."""

    store: RunStore
    spend: DailySpend
    pause: PauseSwitch | None
    run_id: str
    shown: int
    briefing: Sequence[Command] | None = None

    def commands(self) -> list[Command]:
        """The commands, for a caller that sends them; `parse` takes their answers."""
        reads: list[Command] = [("LRANGE", self.store.alert_log_key(self.run_id), self.shown, -1)]
        reads += [("GET", key) for key in self.spend.today_keys()]
        if self.pause is not None:
            reads.append(self.pause.reading())
        return reads + list(self.briefing or ())

    async def parse(self, answers: list[Any]) -> StepReads:
        """The reads from the commands' answers (raising the first error)."""
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        logged, tokens, dollars, *rest = answers
        paused = rest.pop(0) if self.pause is not None else None
        return StepReads(
            pause=await self.pause.state_of(paused) if self.pause is not None else None,
            spent=self.spend.counted([tokens, dollars]),
            alerts=[Alert.model_validate_json(raw) for raw in cast(list[str], logged)],
            briefing=rest if self.briefing is not None else None,
        )

    async def read(self) -> StepReads:
        """The reads, in one round trip of their own."""
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for command in self.commands():
                pipe.execute_command(*command)
            return await self.parse(list(await pipe.execute(raise_on_error=False)))


def alerts_shown(transcript: Sequence[Step]) -> int:
    """How many entries of the run's alert log the transcript shows: the log starts with
    the alert of the first step, and every later alert step has one text part per entry."""
    return 1 + sum(len(s.content) for s in transcript[1:] if s.author == "alert")


def alert_news(
    transcript: Sequence[Step], logged: Sequence[Alert]
) -> tuple[Step | None, list[tuple[str, Flag]]]:
    """A user step with the group's alerts the model has not seen yet (`logged`: the log
    past `alerts_shown`), if any, and the flags their text raises."""
    if not transcript or transcript[-1].role != "user" or not logged:
        return None, []
    step = Step(
        index=len(transcript),
        role="user",
        author="alert",
        content=[TextPart(text=_describe_alert(a)) for a in logged],
    )
    return step, [found for alert in logged for found in alert_flags(alert)]


def _describe_alert(alert: Alert) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
    return f"Alert group update: {alert.title!r} is now {alert.status} ({labels})."
