"""Pausing and resuming the bot (`/incident pause|resume`, `incident-bot pause|resume`,
`INCIDENT_BOT_PAUSED`).

Pause: the key is set (`bot.pause`), and every open run gets a `paused` audit event and
a place in `pause:runs`. Resume: the key is deleted first, then every run the pause
touched gets a `resumed` event, and each whose drive stopped is queued again (it goes on
from its last checkpoint). A crash half-way through a resume leaves stopped runs without
a queue entry; the sweeper's repairs queue them again once the bot is no longer paused.

Who may pause or resume is decided in `bot.run_permissions`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from bot.deps import Deps
from bot.errors import RunNotFound
from bot.models import RunStatus, utcnow
from bot.pause import REASON_CHARS, SETTING, PauseState, Source

log = logging.getLogger(__name__)

ACTIVE_RUNS_NOTED = 1000
_EARLY = {RunStatus.QUEUED, RunStatus.INVESTIGATING}


@dataclass(frozen=True, kw_only=True)
class Pausing:
    """What a pause did: the pause in force, whether it began now, the open runs noted."""

    state: PauseState
    began: bool
    runs: int

    def describe(self) -> str:
        """The answer to the person who paused."""
        if not self.began:
            return f"incident-bot was already {self.state.sentence()}; nothing changed."
        return (
            f"incident-bot is {self.state.sentence()}. No investigation or action starts, "
            f"running investigations stop before their next step ({self.runs} open runs); "
            "alerts are still received and queued. To resume: "
            f"{self.state.how_to_resume()}."
        )


@dataclass(frozen=True, kw_only=True)
class Resuming:
    """What a resume did: the pause lifted (None: none was), the runs queued again, or
    why it was refused."""

    lifted: PauseState | None = None
    requeued: int = 0
    refused: str | None = None

    def describe(self) -> str:
        """The answer to the person who resumed."""
        if self.refused is not None:
            return self.refused
        if self.lifted is None:
            return "incident-bot is not paused; nothing changed."
        return (
            f"incident-bot is resumed (it was {self.lifted.sentence()}); "
            f"{self.requeued} stopped runs are queued again."
        )


async def pause(deps: Deps, *, who: str, reason: str, source: Source) -> Pausing:
    """Pause the bot, unless it is paused already; audit `paused` on every open run."""
    state = PauseState(who=who, reason=reason.strip()[:REASON_CHARS], source=source)
    switch = deps.pause
    already = await switch.begin(state)
    if already is not None:
        return Pausing(state=already, began=False, runs=0)
    runs = await deps.store.list_runs(limit=ACTIVE_RUNS_NOTED, active_only=True)
    for run in runs:
        await switch.note_open(run.id)
        await deps.store.audit(
            run.id,
            "paused",
            owner=deps.owner,
            who=state.who,
            reason=state.reason,
            source=state.source,
            since=state.since.isoformat(),
            state=run.status.value,
        )
        log.info("run paused", extra={"run_id": run.id, "who": state.who})
    log.warning("incident-bot paused by %s: %s", state.who, state.reason or "(no reason)")
    return Pausing(state=state, began=True, runs=len(runs))


async def resume(deps: Deps, *, who: str) -> Resuming:
    """Lift the pause and queue the stopped runs again; refused while this process runs
    with `INCIDENT_BOT_PAUSED=true`."""
    if deps.settings.paused:
        return Resuming(
            refused=f"incident-bot stays paused while {SETTING} is set here: unset "
            f"{SETTING} and restart, then resume."
        )
    lifted = await deps.pause.end()
    if lifted is None:
        return Resuming()
    requeued = 0
    for run_id, kind in (await deps.pause.touched()).items():
        if not await deps.pause.claim(run_id):
            continue  # another resume (or the stopped drive itself) took it
        requeued += await _resume_run(deps, run_id, kind, lifted, who)
    log.warning("incident-bot resumed by %s (%d runs queued again)", who, requeued)
    return Resuming(lifted=lifted, requeued=requeued)


async def _resume_run(
    deps: Deps, run_id: str, kind: str, lifted: PauseState, who: str
) -> Literal[0, 1]:
    """Audit `resumed` on one run; queue it again if its drive stopped. 1 if queued."""
    try:
        run = await deps.store.load(run_id)
    except RunNotFound:
        return 0
    queue = kind == "stopped" and not run.status.terminal
    if queue:
        await deps.queue.enqueue(run_id, "start" if run.status in _EARLY else "resume")
    await deps.store.audit(
        run_id,
        "resumed",
        owner=deps.owner,
        who=who,
        paused_by=lifted.who,
        reason=lifted.reason,
        paused_seconds=round((utcnow() - lifted.since).total_seconds(), 1),
        requeued=queue,
    )
    log.info("run resumed", extra={"run_id": run_id, "who": who, "requeued": queue})
    return 1 if queue else 0
