"""The Redis run store: checkpoints, the transcript, leases, decisions, action records, audit.

Layout (all under one configurable prefix; the keys of one run share the hash tag `{<id>}`
so its Lua scripts also work on Redis Cluster):

    run:{id}                       hash: doc (the Run as JSON), version, status, updated_at
    run:{id}:transcript            list of Step JSON, appended once per step
    run:{id}:audit                 stream of audit events
    run:{id}:decisions             list of Decision JSON, in the order recorded
    run:{id}:alerts                hash: fingerprint -> last status of each alert of the group
    run:{id}:alert_log             list of Alert JSON: each new alert or change of status
    lease:{id}                     owner token, with a TTL
    decision:{id}:{proposal}:{user}  SET NX guard: one decision per person and proposal
    decision:{id}:{proposal}       hash: decisions per verdict, and `settled` once decided
    action:{id}:{proposal}         the action's idempotency record (ActionRecord JSON)
    runs:all / runs:active         sorted sets of run ids (all / not finished) by creation time;
                                   runs:all keeps the retention window (trimmed on create)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError

from bot.errors import (
    LeaseHeld,
    ProposalError,
    RunExists,
    RunNotFound,
    StaleWrite,
    StoreError,
)
from bot.models import (
    TERMINAL_STATES,
    ActionRecord,
    Alert,
    Decision,
    Run,
    RunStatus,
    Step,
    utcnow,
)
from bot.redis_connection import RedisClient

# KEYS: run hash, transcript, lease, audit, decisions.  ARGV: owner, expected version,
# new doc, status, updated_at, ttl seconds for a finished run (0: keep), n steps, steps...
# Returns {new version, status before the write}, or {-1, lease holder} / {-2, version}.
_CHECKPOINT = """
local lease = redis.call('GET', KEYS[3])
if lease ~= ARGV[1] then return {-1, lease or ''} end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if version ~= tonumber(ARGV[2]) then return {-2, tostring(version)} end
local was = redis.call('HGET', KEYS[1], 'status') or ''
local n = tonumber(ARGV[7])
if n > 0 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 8, 7 + n)) end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'version', version + 1,
           'status', ARGV[4], 'updated_at', ARGV[5])
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  for i = 1, #KEYS do if i ~= 3 then redis.call('EXPIRE', KEYS[i], ttl) end end
end
return {version + 1, was}
"""

# KEYS: run hash, transcript.  ARGV: doc, status, updated_at, n steps, steps...
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'version', 1, 'status', ARGV[2], 'updated_at', ARGV[3])
local n = tonumber(ARGV[4])
if n > 0 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 5, 4 + n)) end
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: decision guard, decisions list.  ARGV: decision JSON, guard ttl.
# KEYS: decision guard, decisions list, the proposal's tally.  ARGV: decision JSON, guard
# ttl, verdict, approvals that settle the proposal (0: no limit; the caller's policy).
# Returns 1 recorded, 0 this person decided already, -1 the proposal is settled.
_DECIDE = """
local needed = tonumber(ARGV[4])
if needed > 0 and redis.call('HEXISTS', KEYS[3], 'settled') == 1 then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
local count = redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
if ARGV[3] == 'reject' or (needed > 0 and count >= needed) then
  redis.call('HSET', KEYS[3], 'settled', ARGV[3])
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
"""

# Folds one delivery of a group's alerts into a run, in one round trip.
# KEYS: run hash, its alert hash, its alert log.  ARGV: terminal statuses (comma-joined),
# statuses that release the group (comma-joined), then (fingerprint, status, alert JSON)
# per alert.
# Returns {run status or '', 1 if the run ended and an alert fires anew, alerts logged,
# 1 if the run was marked as queued}. An ended run only takes alerts it saw firing; a
# run that released its group takes no firing alert at all.
_FOLD_ALERTS = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'', 0, 0, 0} end
local function among(list)
  return string.find(',' .. list .. ',', ',' .. status .. ',', 1, true) ~= nil
end
if among(ARGV[1]) then
  local released = among(ARGV[2])
  for i = 3, #ARGV, 3 do
    local seen = redis.call('HGET', KEYS[2], ARGV[i])
    if ARGV[i + 1] == 'firing' and (released or seen ~= 'firing') then
      return {status, 1, 0, 0}
    end
  end
end
local logged = 0
for i = 3, #ARGV, 3 do
  if redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('RPUSH', KEYS[3], ARGV[i + 2])
    logged = logged + 1
  end
end
return {status, 0, logged, redis.call('HEXISTS', KEYS[1], 'enqueued')}
"""

AUDIT_MAXLEN = 10_000
_LIST_PAGE = 100  # runs read and parsed between two returns to the event loop


@dataclass(frozen=True, kw_only=True)
class AlertFold:
    """What folding a delivery's alerts into a run found and did."""

    status: RunStatus | None  # None: the run does not exist
    fires_anew: bool
    logged: int
    enqueued: bool


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One entry of a run's audit stream."""

    id: str
    event: str
    data: dict[str, Any]

    @property
    def at(self) -> datetime:
        """When the event was appended (its stream id is milliseconds since the epoch)."""
        return datetime.fromtimestamp(int(self.id.split("-")[0]) / 1000, UTC)


@dataclass(frozen=True, kw_only=True)
class Written:
    """A checkpoint as written: the run with its new version, and its status before."""

    run: Run
    was: RunStatus

    @property
    def ended(self) -> bool:
        """Whether this write ended the run (a terminal run written again did not)."""
        return self.run.status.terminal and not self.was.terminal


class RunStore:
    """Reads and writes runs in Redis; every write of a run is fenced by lease and version."""

    def __init__(self, client: RedisClient, *, prefix: str, retention_seconds: int) -> None:
        self.redis = client
        self._p = prefix
        self._retention = retention_seconds
        self._create = client.register_script(_CREATE)
        self._checkpoint = client.register_script(_CHECKPOINT)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._decide = client.register_script(_DECIDE)
        self._fold_alerts = client.register_script(_FOLD_ALERTS)

    # -- keys -------------------------------------------------------------------------
    def run_key(self, run_id: str) -> str:
        """The key of a run's hash."""
        return f"{self._p}run:{{{run_id}}}"

    def _transcript_key(self, run_id: str) -> str:
        return f"{self.run_key(run_id)}:transcript"

    def _audit_key(self, run_id: str) -> str:
        return f"{self.run_key(run_id)}:audit"

    def _decisions_key(self, run_id: str) -> str:
        return f"{self.run_key(run_id)}:decisions"

    def _lease_key(self, run_id: str) -> str:
        return f"{self._p}lease:{{{run_id}}}"

    def _action_key(self, run_id: str, proposal_id: str) -> str:
        return f"{self._p}action:{{{run_id}}}:{proposal_id}"

    def _decision_key(self, run_id: str, proposal_id: str, user: str) -> str:
        return f"{self._p}decision:{{{run_id}}}:{proposal_id}:{user}"

    def _run_keys(self, run_id: str) -> list[str]:
        # The order matters to _CHECKPOINT.
        return [
            self.run_key(run_id),
            self._transcript_key(run_id),
            self._lease_key(run_id),
            self._audit_key(run_id),
            self._decisions_key(run_id),
            f"{self.run_key(run_id)}:alerts",
            f"{self.run_key(run_id)}:alert_log",
        ]

    # -- runs -------------------------------------------------------------------------
    async def create(self, run: Run, steps: Sequence[Step] = ()) -> Run:
        """Store a new run (version 1) with its first transcript steps."""
        created = run.model_copy(update={"version": 1, "steps": len(steps)})
        created_ok = await self._create(
            keys=[self.run_key(run.id), self._transcript_key(run.id)],
            args=[
                created.model_dump_json(),
                created.status.value,
                created.updated_at.isoformat(),
                len(steps),
                *(s.model_dump_json() for s in steps),
            ],
        )
        if not created_ok:
            raise RunExists(f"run {run.id} already exists")
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(f"{self._p}runs:all", {run.id: now})
            # The index keeps runs created within the retention window, else it grows
            # for ever; the runs' keys expire on their own, and unfinished ones stay
            # listed in runs:active.
            pipe.zremrangebyscore(f"{self._p}runs:all", "-inf", now - self._retention)
            pipe.zadd(f"{self._p}runs:active", {run.id: now})
            await pipe.execute()
        return created

    async def load(self, run_id: str) -> Run:
        """The run's latest checkpoint."""
        raw = await self.redis.hget(self.run_key(run_id), "doc")
        if raw is None:
            raise RunNotFound(f"no run {run_id!r}")
        try:
            return Run.model_validate_json(raw)
        except ValidationError as exc:
            raise StoreError(f"run {run_id} holds an unreadable checkpoint: {exc}") from exc

    async def transcript(self, run_id: str) -> list[Step]:
        """Every step of the run, in order."""
        raw = await self.redis.lrange(self._transcript_key(run_id), 0, -1)
        return [Step.model_validate_json(r) for r in raw]

    async def checkpoint(self, run: Run, *, owner: str, steps: Sequence[Step] = ()) -> Run:
        """Write the run and append steps, if `owner` holds the lease and the version matches.

        Returns the run with its new version; raises `StaleWrite` when another writer
        has moved the run on (this writer must stop).
        """
        return (await self.write(run, owner=owner, steps=steps)).run

    async def write(self, run: Run, *, owner: str, steps: Sequence[Step] = ()) -> Written:
        """`checkpoint`, also telling the status the run had before this write."""
        updated = run.model_copy(
            update={
                "version": run.version + 1,
                "steps": run.steps + len(steps),
                "updated_at": utcnow(),
            }
        )
        ttl = self._retention if updated.status.terminal else 0
        args: list[str | int] = [
            owner,
            run.version,
            updated.model_dump_json(),
            updated.status.value,
            updated.updated_at.isoformat(),
            ttl,
            len(steps),
            *(s.model_dump_json() for s in steps),
        ]
        code, detail = await self._checkpoint(keys=self._run_keys(run.id), args=args)
        if int(code) == -1:
            raise StaleWrite(f"run {run.id}: lease is held by {detail!r}, not {owner!r}")
        if int(code) == -2:
            raise StaleWrite(f"run {run.id}: version is {detail}, writer had {run.version}")
        if updated.status.terminal:
            # The index lives outside the run's hash slot, so it is not in the script.
            await self.redis.zrem(f"{self._p}runs:active", run.id)
        return Written(run=updated, was=RunStatus(detail))

    async def list_runs(self, *, limit: int = 50, active_only: bool = False) -> list[Run]:
        """The most recent runs, newest first; read and parsed `_LIST_PAGE` at a time, so
        that a long list (the sweeper reads 1000) does not hold the event loop for long."""
        index = f"{self._p}runs:active" if active_only else f"{self._p}runs:all"
        ids = cast(list[str], await self.redis.zrevrange(index, 0, limit - 1))
        runs: list[Run] = []
        for start in range(0, len(ids), _LIST_PAGE):
            async with self.redis.pipeline(transaction=False) as pipe:
                for run_id in ids[start : start + _LIST_PAGE]:
                    pipe.hget(self.run_key(run_id), "doc")
                docs = await pipe.execute()
            runs += [Run.model_validate_json(d) for d in docs if d is not None]
        return runs

    # -- leases -----------------------------------------------------------------------
    async def acquire_lease(self, run_id: str, owner: str, ttl_seconds: float) -> None:
        """Take the run's lease or raise `LeaseHeld`."""
        ok = await self.redis.set(
            self._lease_key(run_id), owner, nx=True, px=int(ttl_seconds * 1000)
        )
        if not ok:
            holder = await self.redis.get(self._lease_key(run_id))
            raise LeaseHeld(f"run {run_id} is leased by {holder!r}")

    async def renew_lease(self, run_id: str, owner: str, ttl_seconds: float) -> bool:
        """Extend the lease if `owner` still holds it."""
        renewed = await self._renew(
            keys=[self._lease_key(run_id)], args=[owner, int(ttl_seconds * 1000)]
        )
        return bool(renewed)

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give the lease back if `owner` holds it."""
        await self._release(keys=[self._lease_key(run_id)], args=[owner])

    async def lease_holder(self, run_id: str) -> str | None:
        """Who holds the run's lease now, if anyone."""
        return cast(str | None, await self.redis.get(self._lease_key(run_id)))

    # -- decisions and actions --------------------------------------------------------
    async def record_decision(self, decision: Decision, *, settles_at: int = 0) -> bool:
        """Record a decision once per run, proposal and user; False if already recorded.

        With `settles_at` (the approvals the policy requires), a proposal that already has
        them, or a rejection, takes no further decisions: raises `ProposalError`.
        """
        run_id, proposal_id = decision.run_id, decision.proposal_id
        key = self._decision_key(run_id, proposal_id, decision.user)
        tally = f"{self._p}decision:{{{run_id}}}:{proposal_id}"
        recorded = await self._decide(
            keys=[key, self._decisions_key(run_id), tally],
            args=[decision.model_dump_json(), self._retention, decision.verdict, settles_at],
        )
        if int(recorded) == -1:
            raise ProposalError(f"proposal {proposal_id} of run {run_id} is already decided")
        if recorded:
            await self.audit(
                decision.run_id,
                "decision",
                proposal=decision.proposal_id,
                user=decision.user,
                verdict=decision.verdict,
                reason=decision.reason,
                via=decision.via,
            )
        return bool(recorded)

    async def decision_count(self, run_id: str) -> int:
        """How many decisions the run has, on any of its proposals."""
        return await self.redis.llen(self._decisions_key(run_id))

    async def decisions(self, run_id: str, proposal_id: str) -> list[Decision]:
        """The decisions recorded on one proposal, in order."""
        raw = await self.redis.lrange(self._decisions_key(run_id), 0, -1)
        found = [Decision.model_validate_json(r) for r in raw]
        return [d for d in found if d.proposal_id == proposal_id]

    async def begin_action(self, record: ActionRecord) -> ActionRecord | None:
        """Claim the proposal's action: None if claimed now, else the existing record."""
        key = self._action_key(record.run_id, record.proposal_id)
        if await self.redis.set(key, record.model_dump_json(), nx=True, ex=self._retention):
            return None
        existing = await self.redis.get(key)
        if existing is None:
            raise StoreError(f"action record {key} vanished while being claimed")
        return ActionRecord.model_validate_json(existing)

    async def finish_action(self, record: ActionRecord) -> None:
        """Write the action's outcome over its `started` record."""
        key = self._action_key(record.run_id, record.proposal_id)
        await self.redis.set(key, record.model_dump_json(), xx=True, ex=self._retention)

    async def action_record(self, run_id: str, proposal_id: str) -> ActionRecord | None:
        """The proposal's action record, if the action was ever started."""
        raw = await self.redis.get(self._action_key(run_id, proposal_id))
        return None if raw is None else ActionRecord.model_validate_json(raw)

    async def reopen(self, run: Run) -> None:
        """An ended run goes on (a retry): its keys stop expiring; it is active again."""
        lease = self._lease_key(run.id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self._run_keys(run.id):
                if key != lease:  # the lease keeps its TTL
                    pipe.persist(key)
            pipe.zadd(f"{self._p}runs:active", {run.id: run.created_at.timestamp()})
            await pipe.execute()

    async def mark_enqueued(self, run_id: str) -> None:
        """Note that the run has a queue entry (`fold_alerts` reports it)."""
        await self.redis.hset(self.run_key(run_id), "enqueued", 1)

    # -- the group's alerts -----------------------------------------------------------
    async def fold_alerts(self, run_id: str, alerts: Sequence[Alert]) -> AlertFold:
        """Log each alert that is new to the run or changed status, in one round trip.

        An ended run takes only alerts it already saw firing (repeats, resolutions); when
        one fires anew nothing is logged and `fires_anew` is set: that is a new incident.
        An `expired` run released its group: any firing alert is a new incident (nobody
        decided in time, so the group's next notification gets a new investigation).
        """
        base = self.run_key(run_id)
        args: list[str] = [",".join(s.value for s in TERMINAL_STATES), RunStatus.EXPIRED.value]
        for alert in alerts:
            args += [alert.fingerprint, alert.status, alert.model_dump_json()]
        status, anew, logged, enqueued = await self._fold_alerts(
            keys=[base, f"{base}:alerts", f"{base}:alert_log"], args=args
        )
        return AlertFold(
            status=RunStatus(status) if status else None,
            fires_anew=bool(anew),
            logged=int(logged),
            enqueued=bool(enqueued),
        )

    async def alert_log(self, run_id: str, start: int = 0) -> list[Alert]:
        """The run's logged alerts from position `start` on."""
        raw = await self.redis.lrange(f"{self.run_key(run_id)}:alert_log", start, -1)
        return [Alert.model_validate_json(r) for r in raw]

    # -- audit ------------------------------------------------------------------------
    async def audit(self, run_id: str, event: str, **data: Any) -> None:
        """Append an event to the run's audit stream."""
        payload: dict[Any, Any] = {
            "event": event,
            "at": utcnow().isoformat(),
            "data": json.dumps(data, default=str),
        }
        await self.redis.xadd(
            self._audit_key(run_id), payload, maxlen=AUDIT_MAXLEN, approximate=True
        )

    async def read_audit(self, run_id: str) -> list[AuditEvent]:
        """The run's audit events, oldest first."""
        entries = cast(
            list[tuple[str, dict[str, str]]], await self.redis.xrange(self._audit_key(run_id))
        )
        return [
            AuditEvent(id=entry_id, event=fields["event"], data=json.loads(fields["data"]))
            for entry_id, fields in entries
        ]
