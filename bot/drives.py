"""What the last drive of a run saw, so that a decision it never saw is noticed.

    drove:{id}    the number of decisions the run had when its last drive began

A decision is recorded and then its resume queued; a crash (or a Redis error) between
the two leaves a decision no drive has seen. The sweeper compares this mark with the
run's decision count and queues such a run again.
"""

from __future__ import annotations

from bot.redis_connection import RedisClient


class DriveMarks:
    """Reads and writes the decision count each run's last drive began with."""

    def __init__(self, client: RedisClient, *, prefix: str, retention_seconds: int) -> None:
        self._redis = client
        self._p = prefix
        self._retention = retention_seconds

    def _key(self, run_id: str) -> str:
        return f"{self._p}drove:{{{run_id}}}"

    async def mark(self, run_id: str, decisions: int) -> None:
        """A drive that began with `decisions` decisions has finished."""
        await self._redis.set(self._key(run_id), decisions, ex=self._retention)

    async def seen(self, run_id: str) -> int:
        """The decisions the run's last finished drive began with (0: never driven)."""
        raw = await self._redis.get(self._key(run_id))
        return int(raw) if raw is not None else 0
