"""What all runs together spent on the model today (UTC), kept in Redis for every replica.

With `metrics` and the policy's daily budgets, each add and read sets
`incident_bot_daily_budget_used_ratio{kind}` (today's spend over the budget)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from bot.batching import Command
from bot.metrics import Metrics
from bot.models import Usage, utcnow
from bot.redis_connection import RedisClient
from bot.script_commands import ScriptCommand

_KEEP_SECONDS = 3 * 24 * 3600
# KEYS: today's tokens, dollars.  ARGV: tokens, dollars, seconds to keep them.
# Sent by its SHA (`ScriptCommand`): whoever sends it in a pipeline runs it again when the
# server lost its scripts.
_ADD = """
local tokens = redis.call('INCRBY', KEYS[1], ARGV[1])
local dollars = redis.call('INCRBYFLOAT', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {tokens, dollars}
"""


class DailySpend:
    """Counters of tokens and dollars per UTC day."""

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str,
        metrics: Metrics | None = None,
        day_tokens: int | None = None,
        day_dollars: float | None = None,
    ) -> None:
        """`day_tokens`/`day_dollars`: the policy's `budgets.per_day` (None: no budget)."""
        self._redis = client
        self._p = prefix
        self._add = client.register_script(_ADD)
        self._metrics = metrics
        self._budgets = {"tokens": day_tokens, "dollars": day_dollars}

    def today_keys(self) -> list[str]:
        """The keys of today's tokens and dollars (read by `today`; `counted` parses them)."""
        return list(self._keys(utcnow()))

    def _keys(self, day: datetime) -> tuple[str, str]:
        # The day is the hash tag: one script writes both (one slot on a Redis Cluster).
        stamp = f"{{{day:%Y-%m-%d}}}"
        return f"{self._p}spend:{stamp}:tokens", f"{self._p}spend:{stamp}:dollars"

    async def add(self, usage: Usage, dollars: float) -> None:
        """Count one model call (both counters at once: one script)."""
        keys = list(self._keys(utcnow()))
        self._count(await self._add(keys=keys, args=[usage.total, dollars, _KEEP_SECONDS]))

    def adding(self, usage: Usage, dollars: float) -> list[Command]:
        """The command that counts one model call, for a caller that sends it itself
        (beside a checkpoint: `RunStore.write`); `added` takes its answer."""
        keys = self._keys(utcnow())
        return [ScriptCommand(self._add, keys, [usage.total, dollars, _KEEP_SECONDS])]

    def added(self, answers: list[Any]) -> None:
        """Take the answer to `adding`'s command (raising it if it is an error)."""
        [answer] = answers
        if isinstance(answer, Exception):
            raise answer
        self._count(answer)

    def _count(self, answer: Any) -> None:
        tokens, dollars = answer
        self._used(int(tokens), float(dollars))

    async def today(self) -> tuple[int, float]:
        """Tokens and dollars spent so far today."""
        return self.counted(cast(list[str | None], await self._redis.mget(self.today_keys())))

    def counted(self, values: list[str | None]) -> tuple[int, float]:
        """Tokens and dollars from the values of `today_keys`, just read."""
        tokens, dollars = int(values[0] or 0), float(values[1] or 0.0)
        self._used(tokens, dollars)
        return tokens, dollars

    def _used(self, tokens: int, dollars: float) -> None:
        if self._metrics is None:
            return
        for kind, spent in (("tokens", tokens), ("dollars", dollars)):
            budget = self._budgets[kind]
            if budget:
                self._metrics.daily_budget_used.labels(kind).set(spent / budget)
