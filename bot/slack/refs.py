"""Where a run's Slack messages are: one Redis hash per run, `slack:{<run id>}`.

Only the lease holder may write a run, but Slack messages are posted by listeners and
by button handlers on any replica, so their references live beside the run, not in it:

    channel      the channel of the run's thread
    thread_ts    the thread to reply in (for a run started from a thread: that thread)
    root_ts      the run's status message, updated in place as the run moves
    <name>.ts    other messages (`progress`, `proposal:<id>`, `final`, ...)
    <name>.claim who is posting it now, and since when
    file:<name>.ts  a file uploaded into the thread (`uploads.py`): its Slack file id
    escalated    who paged the run's escalation target, and when (set once, `mark`)

A message is posted by whoever claims its name first (`HSETNX`-like, in a script), so
two replicas never post two root messages for one run. A claim whose poster died before
writing the ts is taken over after `STALE_CLAIM_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from bot.redis_connection import RedisClient

STALE_CLAIM_SECONDS = 60.0

# KEYS: the run's hash.  ARGV: name, claimant, now, stale after (s).
# Returns 'posted:<ts>' when posted already, 'claimed' when this caller must post it,
# 'busy' when someone else is posting it right now.
_CLAIM = """
local ts = redis.call('HGET', KEYS[1], ARGV[1] .. '.ts')
if ts then return 'posted:' .. ts end
local claim = redis.call('HGET', KEYS[1], ARGV[1] .. '.claim')
if claim then
  local at = tonumber(string.match(claim, '^[^|]*|(.*)$'))
  if at and tonumber(ARGV[3]) - at < tonumber(ARGV[4]) then return 'busy' end
end
redis.call('HSET', KEYS[1], ARGV[1] .. '.claim', ARGV[2] .. '|' .. ARGV[3])
return 'claimed'
"""


@dataclass(frozen=True, kw_only=True)
class Claim:
    """The answer to `claim`: post it (`mine`), it is posted (`ts`), or neither (busy)."""

    mine: bool
    ts: str | None


class MessageRefs:
    """Reads and writes the Slack message references of runs."""

    def __init__(self, client: RedisClient, *, prefix: str, retention_seconds: int) -> None:
        self._redis = client
        self._p = prefix
        self._retention = retention_seconds
        self._claim = client.register_script(_CLAIM)

    def key(self, run_id: str) -> str:
        """The hash of one run's references (shares the run's hash tag)."""
        return f"{self._p}slack:{{{run_id}}}"

    async def load(self, run_id: str) -> dict[str, str]:
        """Every reference of the run (empty when it has none)."""
        return cast(dict[str, str], await self._redis.hgetall(self.key(run_id)))

    async def set(self, run_id: str, fields: Mapping[str, str]) -> None:
        """Write references (and keep the hash as long as runs are kept)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            mapping: dict[Any, Any] = dict(fields)
            pipe.hset(self.key(run_id), mapping=mapping)
            pipe.expire(self.key(run_id), self._retention)
            await pipe.execute()

    async def claim(self, run_id: str, name: str, claimant: str) -> Claim:
        """Claim the right to post message `name`, unless it is posted or being posted."""
        answer = str(
            await self._claim(
                keys=[self.key(run_id)],
                args=[name, claimant, f"{time.time():.3f}", STALE_CLAIM_SECONDS],
            )
        )
        if answer.startswith("posted:"):
            return Claim(mine=False, ts=answer.removeprefix("posted:"))
        return Claim(mine=answer == "claimed", ts=None)

    async def release(self, run_id: str, name: str) -> None:
        """Give up a claim (the post failed): the next caller may try again."""
        await self._redis.hdel(self.key(run_id), f"{name}.claim")

    async def mark(self, run_id: str, name: str, claimant: str) -> bool:
        """Set flag `name` if it is unset (`HSETNX`): True for the one caller that set it."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.key(run_id), name, f"{claimant}|{time.time():.3f}")
            pipe.expire(self.key(run_id), self._retention)
            answers = await pipe.execute()
        return bool(answers[0])

    async def unmark(self, run_id: str, name: str) -> None:
        """Clear flag `name` (what it stood for did not happen after all)."""
        await self._redis.hdel(self.key(run_id), name)

    async def posted(self, run_id: str, name: str, ts: str, **more: str) -> None:
        """Record that message `name` was posted with timestamp `ts`."""
        await self.set(run_id, {f"{name}.ts": ts, **more})

    async def add_progress(self, run_id: str, lines: list[str], keep: int) -> list[str]:
        """Append progress lines; returns the last `keep` of all of them."""
        key = f"{self.key(run_id)}:progress"
        async with self._redis.pipeline(transaction=True) as pipe:
            if lines:
                pipe.rpush(key, *lines)
                pipe.ltrim(key, -keep, -1)
                pipe.expire(key, self._retention)
            pipe.lrange(key, -keep, -1)
            answers = await pipe.execute()
        return cast(list[str], answers[-1])
