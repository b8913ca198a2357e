"""The kill switch's state: one global key says the bot is paused, by whom, since when, why.

    pause        JSON {who, reason, since, source}: present while the bot is paused
    pause:runs   hash: run id -> `open` (open when the pause began) or `stopped` (its drive
                 stopped for the pause); what resume goes back to

Both keys are global, each in its own hash slot: they are never part of a script or a
MULTI with a run's keys. Every check is one GET, made right before the step it guards
(a model call, a tool round, a planner step, claiming an action) and never cached; in the
investigation it rides in a round trip the loop makes anyway: with the other reads before
a model call (`bot.step_reads`), beside the model reply's checkpoint before a tool round.

A process started with `INCIDENT_BOT_PAUSED=true` keeps the bot paused: when the key is
missing it sets it again at its next check (`source: setting`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from bot.batching import Command
from bot.errors import IncidentBotError
from bot.models import utcnow
from bot.redis_connection import RedisClient

Source = Literal["slack", "cli", "setting"]
SETTING = "INCIDENT_BOT_PAUSED"
REASON_CHARS = 300

Audit = Callable[..., Awaitable[None]]


class PauseState(BaseModel):
    """Who paused the bot, since when, why, and from where."""

    model_config = ConfigDict(frozen=True)

    who: str
    reason: str = ""
    since: datetime = Field(default_factory=utcnow)
    source: Source

    @property
    def marker(self) -> str:
        """Tells this pause from any other (what a redrawn message was drawn with)."""
        return self.since.isoformat()

    def describe(self) -> dict[str, Any]:
        """The state as JSON (`/readyz`, the CLI)."""
        return self.model_dump(mode="json")

    def sentence(self) -> str:
        """`paused by alice@host since 14:02 UTC: deploy freeze` (plain text)."""
        why = f": {self.reason}" if self.reason else ""
        return f"paused by {self.who} since {self.since:%H:%M} UTC{why}"

    def how_to_resume(self) -> str:
        """What resumes the bot (plain text)."""
        if self.source == "setting":
            return f"unset {SETTING} and restart, then run `incident-bot resume`"
        return "an operator or approver runs `/incident resume` or `incident-bot resume`"


class Paused(IncidentBotError):
    """A drive stopped before its next step because the bot is paused."""

    def __init__(self, state: PauseState, run_id: str, where: str) -> None:
        self.state = state
        self.run_id = run_id
        self.where = where
        super().__init__(
            f"incident-bot is {state.sentence()}; run {run_id} stopped {where} and goes on "
            f"once the bot is resumed ({state.how_to_resume()})"
        )


class PauseSwitch:
    """Reads and writes the pause key and the runs the pause touched."""

    def __init__(
        self, client: RedisClient, *, prefix: str, setting: bool = False, owner: str = ""
    ) -> None:
        """`setting`: this process runs with `INCIDENT_BOT_PAUSED=true` (`owner` names it)."""
        self._redis = client
        self.key = f"{prefix}pause"
        self.runs_key = f"{prefix}pause:runs"
        self.setting = setting
        self._owner = owner

    def setting_state(self) -> PauseState:
        """The pause the setting holds."""
        return PauseState(who=self._owner or SETTING, reason=f"{SETTING} is set", source="setting")

    async def current(self) -> PauseState | None:
        """The pause in force, or None (one GET; with the setting, the key is set again)."""
        return await self.state_of(await self._redis.get(self.key))

    def reading(self) -> Command:
        """The command that reads the key, for a caller that sends it itself (beside a
        checkpoint: `RunStore.write`); `state_of` takes its answer."""
        return ("GET", self.key)

    async def state_of(self, raw: str | bytes | None) -> PauseState | None:
        """The pause in force when the key holds `raw`, just read (None: missing); with
        the setting, a missing key is set again."""
        if raw is None and self.setting:
            state = self.setting_state()
            if await self._redis.set(self.key, state.model_dump_json(), nx=True):
                return state
            raw = await self._redis.get(self.key)
        return None if raw is None else PauseState.model_validate_json(raw)

    async def begin(self, state: PauseState) -> PauseState | None:
        """Pause with `state`; returns the pause already in force instead (then nothing
        changes), or None when `state` is now in force."""
        if await self._redis.set(self.key, state.model_dump_json(), nx=True):
            return None
        return await self.current() or state

    async def end(self) -> PauseState | None:
        """Lift the pause; returns the one lifted (None: the bot was not paused)."""
        raw = await self._redis.getdel(self.key)
        return None if raw is None else PauseState.model_validate_json(raw)

    async def note_open(self, run_id: str) -> None:
        """The run was open when the pause began (a stop noted first is kept)."""
        await self._redis.hsetnx(self.runs_key, run_id, "open")

    async def touched(self) -> dict[str, str]:
        """The runs the pause touched: run id -> `open` or `stopped`."""
        return cast(dict[str, str], await self._redis.hgetall(self.runs_key))

    async def claim(self, run_id: str) -> bool:
        """Take the run off the touched list; True for the one caller that did."""
        return bool(await self._redis.hdel(self.runs_key, run_id))

    async def check(self, run_id: str, where: str, audit: Audit) -> None:
        """Raise `Paused` when the bot is paused, having noted the run as stopped (and
        audited it) so that resume queues it again; return when the drive may go on."""
        await self.stop_if(await self.current(), run_id, where, audit)

    async def stop_if(
        self, state: PauseState | None, run_id: str, where: str, audit: Audit
    ) -> None:
        """`check`, with the pause state just read (`current`, `state_of`)."""
        if state is None:
            return
        await self._redis.hset(self.runs_key, run_id, "stopped")
        if await self.current() is None and await self.claim(run_id):
            return  # resumed meanwhile, before the resume saw this run: go on
        await audit(
            run_id,
            "pause_stopped",
            where=where,
            paused_by=state.who,
            reason=state.reason,
            source=state.source,
        )
        raise Paused(state, run_id, where)


def pause_line(state: PauseState | None) -> str | None:
    """The line a run's Slack root message shows while paused (Slack mrkdwn), or None."""
    if state is None:
        return None
    if state.source == "slack":
        who = f"<@{state.who}>"
    elif state.source == "setting":
        who = f"the setting `{SETTING}`"
    else:
        who = _escape(state.who)
    why = f": {_escape(state.reason)}" if state.reason else ""
    return f"⏸️ Paused by {who} since {state.since:%H:%M} UTC{why}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
