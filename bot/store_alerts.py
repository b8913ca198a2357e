"""A run's group alerts in the store: folding a delivery's alerts into a run, and its log.

    run:{id}:alerts                hash: fingerprint -> last status of each alert of the group
    run:{id}:alert_log             list of Alert JSON: each new alert or change of status

`RunStore` (`bot/store.py`) has these methods from `AlertLog`, which uses the store's
client, keys and round trips (`_Store`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from bot.batching import Batches
from bot.models import TERMINAL_STATES, Alert, RunStatus
from bot.redis_connection import RedisClient

# Folds one delivery of a group's alerts into a run, in one round trip.
# KEYS: run hash, its alert hash, its alert log.  ARGV: terminal statuses (comma-joined),
# statuses that release the group (comma-joined), '1' to write or '0' only to tell what
# a write would do, then (fingerprint, status, alert JSON) per alert.
# Returns {run status or '', 1 if the run ended and an alert fires anew, alerts logged
# (or that would be), 1 if the run was marked as queued}. An ended run only takes alerts
# it saw firing; a run that released its group takes no firing alert at all.
_FOLD_ALERTS = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'', 0, 0, 0} end
local function among(list)
  return string.find(',' .. list .. ',', ',' .. status .. ',', 1, true) ~= nil
end
if among(ARGV[1]) then
  local released = among(ARGV[2])
  for i = 4, #ARGV, 3 do
    local seen = redis.call('HGET', KEYS[2], ARGV[i])
    if ARGV[i + 1] == 'firing' and (released or seen ~= 'firing') then
      return {status, 1, 0, 0}
    end
  end
end
local write = ARGV[3] == '1'
local logged = 0
for i = 4, #ARGV, 3 do
  if redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[i + 1] then
    if write then
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
      redis.call('RPUSH', KEYS[3], ARGV[i + 2])
    end
    logged = logged + 1
  end
end
return {status, 0, logged, redis.call('HEXISTS', KEYS[1], 'enqueued')}
"""

# `_FOLD_ALERTS`'s first arguments: the terminal states, and the one that releases a group.
_FOLD_STATES = (",".join(s.value for s in TERMINAL_STATES), RunStatus.EXPIRED.value)


@dataclass(frozen=True, kw_only=True)
class AlertFold:
    """What folding a delivery's alerts into a run found and did."""

    status: RunStatus | None  # None: the run does not exist
    fires_anew: bool
    logged: int
    enqueued: bool


class _Store(Protocol):
    """What `AlertLog` uses of the store it is part of."""

    redis: RedisClient
    batches: Batches | None
    _fold_alerts: AsyncScript

    def run_key(self, run_id: str) -> str: ...

    async def run_script(
        self, script: AsyncScript, keys: list[str], args: Sequence[Any]
    ) -> Any: ...

    def _alert_keys(self, run_id: str) -> list[str]: ...

    def alert_log_key(self, run_id: str) -> str: ...


class AlertLog:
    """The group-alert methods of `RunStore`."""

    def _register_alert_scripts(self, client: RedisClient) -> None:
        self._fold_alerts = client.register_script(_FOLD_ALERTS)

    async def fold_alerts(self: _Store, run_id: str, alerts: Sequence[Alert]) -> AlertFold:
        """Log each alert that is new to the run or changed status, in one round trip.

        An ended run takes only alerts it already saw firing (repeats, resolutions); when
        one fires anew nothing is logged and `fires_anew` is set: that is a new incident.
        An `expired` run released its group: any firing alert is a new incident (nobody
        decided in time, so the group's next notification gets a new investigation).
        """
        args = [*_FOLD_STATES, "1"]
        for alert in alerts:
            args += [alert.fingerprint, alert.status, alert.model_dump_json()]
        keys = self._alert_keys(run_id)
        return _alert_fold(await self.run_script(self._fold_alerts, keys, args))

    async def repeat_check(
        self: _Store, key: str, run_id: str, alerts: Sequence[Alert]
    ) -> tuple[str | None, AlertFold | None]:
        """The value of `key` (an alert group's dedup key) and what `fold_alerts` of
        `alerts` into `run_id` would do, in one round trip that writes nothing. The fold
        is None when it could not be told here (the server lost its scripts)."""
        keys = self._alert_keys(run_id)
        args = [*_FOLD_STATES, "0"]
        for alert in alerts:
            args += [alert.fingerprint, alert.status, ""]
        if self.batches is None:
            get, check = self.redis.get(key), self._fold_alerts(keys=keys, args=args)
            current, answer = await asyncio.gather(get, check)
            return cast(str | None, current), _alert_fold(answer)
        command = ("EVALSHA", self._fold_alerts.sha, len(keys), *keys, *args)
        current, answer = await self.batches.execute([("GET", key), command])
        raise_errors([current])
        if isinstance(answer, NoScriptError):
            return cast(str | None, current), None
        raise_errors([answer])
        return cast(str | None, current), _alert_fold(answer)

    def _alert_keys(self: _Store, run_id: str) -> list[str]:
        base = self.run_key(run_id)
        return [base, f"{base}:alerts", f"{base}:alert_log"]

    async def alert_log(self: _Store, run_id: str, start: int = 0) -> list[Alert]:
        """The run's logged alerts from position `start` on."""
        raw = await self.redis.lrange(self.alert_log_key(run_id), start, -1)
        return [Alert.model_validate_json(r) for r in raw]

    def alert_log_key(self: _Store, run_id: str) -> str:
        """The key of the run's alert log (a list of Alert JSON)."""
        return f"{self.run_key(run_id)}:alert_log"


def _alert_fold(answer: Any) -> AlertFold:
    status, anew, logged, enqueued = answer
    return AlertFold(
        status=RunStatus(status) if status else None,
        fires_anew=bool(anew),
        logged=int(logged),
        enqueued=bool(enqueued),
    )


def raise_errors(answers: Sequence[Any]) -> None:
    """Raise the first of the answers that is an error."""
    for answer in answers:
        if isinstance(answer, Exception):
            raise answer
