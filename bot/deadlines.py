"""Deadlines of runs, shared by all replicas: one Redis sorted set scored by due time.

    deadlines    sorted set: `<kind>|<run id>` -> due time (epoch milliseconds)

Kinds: `approval` (a proposal waits at most the approval timeout) and `run` (an
`executing` or `verifying` run must end within `busy_seconds` of entering that state).
A due entry is claimed atomically (one script moves its score `retry_seconds` ahead), so
one replica acts on it; the claimer removes it when done, or leaves it to come due
again (the run was leased, or the claimer died). An entry is only a reminder: whoever
claims it checks the run itself before acting, so a stale entry does no harm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from bot.batching import Command
from bot.models import Run, RunStatus
from bot.redis_connection import RedisClient

Kind = Literal["approval", "run"]
KINDS: tuple[Kind, ...] = ("approval", "run")
_PAGE = 500  # entries read at a time by `tracked`

# KEYS: the set.  ARGV: now (ms), claimed until (ms), at most this many.
# Returns member, claimed score, member, claimed score, ...
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local claimed = {}
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
  table.insert(claimed, member)
  table.insert(claimed, ARGV[2])
end
return claimed
"""

# KEYS: the set.  ARGV: member, the score it was claimed with.
# Removes the entry unless it was scheduled anew since the claim.
_FINISH = """
if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1') == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


@dataclass(frozen=True, kw_only=True)
class Due:
    """A claimed deadline: act on `run_id`, then `finish` it."""

    run_id: str
    kind: Kind
    claimed_ms: int


class Deadlines:
    """The shared set of run deadlines, and when a run's state makes one due."""

    def __init__(
        self, client: RedisClient, *, prefix: str, approval_seconds: float, busy_seconds: float
    ) -> None:
        self._redis = client
        self.key = f"{prefix}deadlines"
        self.approval_seconds = approval_seconds
        self.busy_seconds = busy_seconds
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)

    def due_at(self, run: Run, *, updated_at: datetime | None = None) -> tuple[Kind, float] | None:
        """The deadline the run's state has (kind, epoch seconds), if any; `updated_at`:
        the time the run is written at, when that is not yet its own."""
        if run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None:
            return "approval", run.proposal.proposed_at.timestamp() + self.approval_seconds
        if run.status in (RunStatus.EXECUTING, RunStatus.VERIFYING):
            return "run", (updated_at or run.updated_at).timestamp() + self.busy_seconds
        return None

    async def track(self, run: Run, *, only_new: bool = False) -> bool:
        """Schedule the deadline of the run's state (an ended run's are cancelled); True
        when an entry was added.

        `only_new`: keep an entry that exists (a repair making sure there is one).
        """
        if run.status.terminal:
            await self.cancel(run.id)
            return False
        due = self.due_at(run)
        if due is None:
            return False
        return await self.schedule(run.id, due[0], due[1], only_new=only_new)

    def tracking(self, run: Run, *, written_at: datetime) -> list[Command]:
        """The commands `track` sends for the run once it is written with `updated_at`
        `written_at`, for a caller that sends them itself (with the run's checkpoint:
        `RunStore.write`)."""
        if run.status.terminal:
            return [self._cancelling(run.id)]
        due = self.due_at(run, updated_at=written_at)
        return [] if due is None else [self._scheduling(run.id, *due)]

    async def schedule(self, run_id: str, kind: Kind, at: float, *, only_new: bool = False) -> bool:
        """Make the run's `kind` deadline fall due at `at` (epoch seconds); True when the
        entry is new."""
        command = self._scheduling(run_id, kind, at, only_new=only_new)
        return bool(await self._redis.execute_command(*command))

    async def cancel(self, run_id: str, *kinds: Kind) -> None:
        """Drop the run's deadlines (all kinds unless named)."""
        await self._redis.execute_command(*self._cancelling(run_id, *kinds))

    def _scheduling(self, run_id: str, kind: Kind, at: float, *, only_new: bool = False) -> Command:
        nx = ("NX",) if only_new else ()
        return ("ZADD", self.key, *nx, int(at * 1000), f"{kind}|{run_id}")

    def _cancelling(self, run_id: str, *kinds: Kind) -> Command:
        return ("ZREM", self.key, *(f"{k}|{run_id}" for k in kinds or KINDS))

    async def tracked(self, kind: Kind, *, limit: int) -> list[str]:
        """Up to `limit` runs with a `kind` deadline, soonest score first (a claimed entry's
        score is its retry time, not its due time: `due_at` of the run has that)."""
        prefix = f"{kind}|"
        found: list[str] = []
        start = 0
        while len(found) < limit:  # a page at a time: the set holds every run's deadlines
            page = cast(list[str], await self._redis.zrange(self.key, start, start + _PAGE - 1))
            found += [m.removeprefix(prefix) for m in page if m.startswith(prefix)]
            if len(page) < _PAGE:
                break
            start += _PAGE
        return found[:limit]

    async def claim_due(self, *, limit: int, retry_seconds: float) -> list[Due]:
        """Claim up to `limit` due deadlines; unfinished, each is due again in `retry_seconds`."""
        now_ms = int(time.time() * 1000)
        flat = cast(
            list[str],
            await self._claim(
                keys=[self.key], args=[now_ms, now_ms + int(retry_seconds * 1000), limit]
            ),
        )
        claimed = []
        for member, score in zip(flat[::2], flat[1::2], strict=True):
            kind, _, run_id = member.partition("|")
            if kind in KINDS:
                claimed.append(Due(run_id=run_id, kind=kind, claimed_ms=int(score)))
            else:  # written by a later version, or by hand: nobody here can act on it
                await self._redis.zrem(self.key, member)
        return claimed

    async def finish(self, due: Due) -> None:
        """The deadline was dealt with: remove it (unless it was scheduled anew since)."""
        await self._finish(keys=[self.key], args=[f"{due.kind}|{due.run_id}", due.claimed_ms])
