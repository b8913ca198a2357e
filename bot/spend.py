"""What all runs together spent on the model today (UTC), kept in Redis for every replica."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import redis.asyncio as redis

from bot.models import Usage, utcnow

_KEEP_SECONDS = 3 * 24 * 3600


class DailySpend:
    """Counters of tokens and dollars per UTC day."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._redis = client
        self._p = prefix

    def _keys(self, day: datetime) -> tuple[str, str]:
        stamp = f"{day:%Y-%m-%d}"
        return f"{self._p}spend:{stamp}:tokens", f"{self._p}spend:{stamp}:dollars"

    async def add(self, usage: Usage, dollars: float) -> None:
        """Count one model call."""
        tokens_key, dollars_key = self._keys(utcnow())
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(tokens_key, usage.total)
            pipe.incrbyfloat(dollars_key, dollars)
            pipe.expire(tokens_key, _KEEP_SECONDS)
            pipe.expire(dollars_key, _KEEP_SECONDS)
            await pipe.execute()

    async def today(self) -> tuple[int, float]:
        """Tokens and dollars spent so far today."""
        values = cast(list[str | None], await self._redis.mget(list(self._keys(utcnow()))))
        tokens, dollars = values
        return int(tokens or 0), float(dollars or 0.0)
