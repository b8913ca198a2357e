"""What all runs together spent on the model today (UTC), kept in Redis for every replica.

With `metrics` and the policy's daily budgets, each add and read sets
`incident_bot_daily_budget_used_ratio{kind}` (today's spend over the budget)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from bot.metrics import Metrics
from bot.models import Usage, utcnow
from bot.redis_connection import RedisClient

_KEEP_SECONDS = 3 * 24 * 3600


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
        self._metrics = metrics
        self._budgets = {"tokens": day_tokens, "dollars": day_dollars}

    def _keys(self, day: datetime) -> tuple[str, str]:
        # The day is the hash tag: one transaction writes both (one slot on a Redis Cluster).
        stamp = f"{{{day:%Y-%m-%d}}}"
        return f"{self._p}spend:{stamp}:tokens", f"{self._p}spend:{stamp}:dollars"

    async def add(self, usage: Usage, dollars: float) -> None:
        """Count one model call."""
        tokens_key, dollars_key = self._keys(utcnow())
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(tokens_key, usage.total)
            pipe.incrbyfloat(dollars_key, dollars)
            pipe.expire(tokens_key, _KEEP_SECONDS)
            pipe.expire(dollars_key, _KEEP_SECONDS)
            tokens, dollars, *_ = await pipe.execute()
        self._used(int(tokens), float(dollars))

    async def today(self) -> tuple[int, float]:
        """Tokens and dollars spent so far today."""
        values = cast(list[str | None], await self._redis.mget(list(self._keys(utcnow()))))
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
