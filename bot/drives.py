"""What the last drive of a run saw, so that a decision it never saw is noticed.

    drove:{id}    the number of decisions the run had when its last drive began

A decision is recorded and then its resume queued; a crash (or a Redis error) between
the two leaves a decision no drive has seen. The sweeper compares this mark with the
run's decision count and queues such a run again.

A drive ends with one script: the mark, then the lease given back (the two keys share
the run's hash tag). A Redis error leaves both as they were: no mark, and the lease
held until it expires.
"""

from __future__ import annotations

from bot.redis_connection import RedisClient

# KEYS: the drove mark, the run's lease, its decisions.  ARGV: decisions, seconds to keep
# the mark, owner. The mark is written first: a write refused (out of memory, an ACL)
# stops the script before the lease is released. Returns the decisions recorded by now.
_END = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return redis.call('LLEN', KEYS[3])
"""


class DriveMarks:
    """Reads and writes the decision count each run's last drive began with."""

    def __init__(self, client: RedisClient, *, prefix: str, retention_seconds: int) -> None:
        self._redis = client
        self._p = prefix
        self._retention = retention_seconds
        self._end = client.register_script(_END)

    def _key(self, run_id: str) -> str:
        return f"{self._p}drove:{{{run_id}}}"

    async def end(
        self, run_id: str, decisions: int, *, lease_key: str, decisions_key: str, owner: str
    ) -> int:
        """A drive that began with `decisions` decisions has finished: mark it, then give
        back the run's lease (at `lease_key`) if `owner` holds it, in one script: both
        or, on a Redis error, neither. Returns the decisions the run has now (in the list
        at `decisions_key`): more than `decisions` were recorded while it drove."""
        keys = [self._key(run_id), lease_key, decisions_key]
        return int(await self._end(keys=keys, args=[decisions, self._retention, owner]))

    async def seen(self, run_id: str) -> int:
        """The decisions the run's last finished drive began with (0: never driven)."""
        raw = await self._redis.get(self._key(run_id))
        return int(raw) if raw is not None else 0
