"""The Redis run store: checkpoints, the transcript, leases, decisions, action records, audit.

Layout (all under one configurable prefix; the keys of one run share the hash tag `{<id>}`
so its Lua scripts also work on Redis Cluster):

    run:{id}                       hash: doc (the Run as JSON), version, status, updated_at
    run:{id}:transcript            list of Step JSON, appended once per step
    run:{id}:audit                 stream of audit events
    run:{id}:decisions             list of Decision JSON, in the order recorded
    run:{id}:alerts                hash: fingerprint -> last status of each alert of the group
    run:{id}:alert_log             list of Alert JSON: each new alert or change of status
                                   (both written by `bot/store_alerts.py`'s methods)
    lease:{id}                     owner token, with a TTL
    decision:{id}:{proposal}:{user}  SET NX guard: one decision per person and proposal
    decision:{id}:{proposal}       hash: decisions per verdict, and `settled` once decided
    action:{id}:{proposal}         the action's idempotency record (ActionRecord JSON)
    runs:all / runs:active         sorted sets of run ids (all / not finished) by creation time;
                                   runs:all keeps the retention window (trimmed on create)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import ValidationError
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from bot.batching import Batches, Command
from bot.errors import (
    LeaseHeld,
    ProposalError,
    RunExists,
    RunNotFound,
    StaleWrite,
    StoreError,
)
from bot.models import (
    ActionRecord,
    Alert,
    Decision,
    Run,
    RunStatus,
    Step,
    utcnow,
)
from bot.redis_connection import RedisClient
from bot.script_commands import rerun_lost
from bot.store_alerts import AlertFold as AlertFold
from bot.store_alerts import AlertLog, raise_errors

log = logging.getLogger(__name__)

# KEYS: run hash, transcript, lease, audit, decisions.  ARGV: owner, expected version,
# new doc, status, updated_at, ttl seconds for a finished run (0: keep), audit maxlen,
# n steps, n events, then the steps, (event, at, data) per audit event and (n, command
# with its n - 1 arguments) per command to run once written (on one server only: they
# name keys outside the run's slot).
# Returns {new version, status before the write, each command's answer or error}, or
# {-1, lease holder} / {-2, version} (then nothing is written or run).
_CHECKPOINT = """
local lease = redis.call('GET', KEYS[3])
if lease ~= ARGV[1] then return {-1, lease or ''} end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if version ~= tonumber(ARGV[2]) then return {-2, tostring(version)} end
local was = redis.call('HGET', KEYS[1], 'status') or ''
local steps, events = tonumber(ARGV[8]), tonumber(ARGV[9])
if steps > 0 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 10, 9 + steps)) end
local first = 10 + steps
for i = first, first + 3 * (events - 1), 3 do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*',
             'event', ARGV[i], 'at', ARGV[i + 1], 'data', ARGV[i + 2])
end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'version', version + 1,
           'status', ARGV[4], 'updated_at', ARGV[5])
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  for i = 1, #KEYS do if i ~= 3 then redis.call('EXPIRE', KEYS[i], ttl) end end
end
-- pcall: the run is written whatever they answer; an error is their answer.
local answers = {}
local at = first + 3 * events
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  table.insert(answers, redis.pcall(unpack(ARGV, at + 1, at + n)))
  at = at + 1 + n
end
return {version + 1, was, unpack(answers)}
"""

# Creates a run, with its first audit events and its group's first alerts.
# KEYS: run hash, transcript, audit, alert hash, alert log.  ARGV from `o + 1`: doc,
# status, updated_at, audit maxlen, n steps, n events, then the steps, (event, at, data)
# per event and (fingerprint, status, alert JSON) per alert.
# Returns the alerts logged, or -1 when the run exists (then nothing is written).
_CREATE_FUNCTION = """
local function create(o)
  if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
  redis.call('HSET', KEYS[1], 'doc', ARGV[o + 1], 'version', 1, 'status', ARGV[o + 2],
             'updated_at', ARGV[o + 3])
  local steps, events = tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6])
  if steps > 0 then redis.call('RPUSH', KEYS[2], unpack(ARGV, o + 7, o + 6 + steps)) end
  local first = o + 7 + steps
  for i = first, first + 3 * (events - 1), 3 do
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[o + 4], '*',
               'event', ARGV[i], 'at', ARGV[i + 1], 'data', ARGV[i + 2])
  end
  local logged = 0
  for i = first + 3 * events, #ARGV, 3 do
    if redis.call('HGET', KEYS[4], ARGV[i]) ~= ARGV[i + 1] then
      redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
      redis.call('RPUSH', KEYS[5], ARGV[i + 2])
      logged = logged + 1
    end
  end
  return logged
end
"""
_CREATE = _CREATE_FUNCTION + "return create(0)"

# Claims a free alert group for a new run, lists the run, creates it (as `_CREATE`) and
# queues it, all in one call: on a single server only (the keys are on many hash slots).
# Claimed and listed first, as the three round trips of a cluster do it: a write the
# server refuses part-way (a script is not rolled back) leaves a claimed, listed run
# that the sender's retry and the sweeper repair, never an unlisted one.
# KEYS: `_CREATE`'s five, then the group's dedup key, runs:all, runs:active, the work
# stream.  ARGV: run id, dedup ttl seconds, now (epoch seconds), the runs:all trim score,
# n, the n arguments of the queue's XADD after its key, then `_CREATE`'s arguments.
# Returns {1} when created; {0, run id} when the group has a run, {-1} when the run
# exists (in both, nothing is written).
_CLAIM_CREATE = (
    _CREATE_FUNCTION
    + """
local current = redis.call('GET', KEYS[6])
if current then return {0, current} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
redis.call('SET', KEYS[6], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', ARGV[4])
redis.call('ZADD', KEYS[8], ARGV[3], ARGV[1])
local n = tonumber(ARGV[5])
create(5 + n)
redis.call('XADD', KEYS[9], unpack(ARGV, 6, 5 + n))
redis.call('HSET', KEYS[1], 'enqueued', 1)
return {1}
"""
)

# Takes the lease and reads the run for the drive that takes it, in one call.
# KEYS: lease, run hash, decisions, transcript.  ARGV: owner, ttl ms, the statuses
# (comma-joined) whose drive reads the transcript, the statuses whose drive reads the
# decisions.
# Returns {0, lease holder} when the lease is held (then nothing is read or written), else
# {1, doc or nil, decisions recorded, steps (empty unless the status is one of ARGV[3]),
# decisions (nil unless the status is one of ARGV[4])}.
_TAKE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[1]) or ''}
end
local doc = redis.call('HGET', KEYS[2], 'doc')
local status = ',' .. (redis.call('HGET', KEYS[2], 'status') or '') .. ','
local steps, decisions = {}, false
if doc and string.find(',' .. ARGV[3] .. ',', status, 1, true) then
  steps = redis.call('LRANGE', KEYS[4], 0, -1)
end
if doc and string.find(',' .. ARGV[4] .. ',', status, 1, true) then
  decisions = redis.call('LRANGE', KEYS[3], 0, -1)
end
return {1, doc or false, redis.call('LLEN', KEYS[3]), steps, decisions}
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

# KEYS: decision guard, decisions list, the proposal's tally, the run's audit.  ARGV:
# decision JSON, guard ttl, verdict, approvals that settle the proposal (0: no limit; the
# caller's policy), audit MAXLEN, then the audit event's fields and values.
# Returns 1 recorded (and its audit event appended), 0 this person decided already, -1 the
# proposal is settled.
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
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 6))
return 1
"""

AUDIT_MAXLEN = 10_000
# `json.dumps(data, default=str)` for audit data, without building an encoder per event.
_AUDIT_JSON = json.JSONEncoder(default=str)
_LIST_PAGE = 100  # runs read and parsed between two returns to the event loop


# An audit event to write: its name and data.
AuditEntry = tuple[str, dict[str, Any]]


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
class Taken:
    """A run as the drive that took its lease found it (`RunStore.take`)."""

    run_id: str
    doc: str | bytes | None  # the run's checkpoint (None: no such run)
    decisions: int  # decisions recorded on the run when the lease was taken
    steps: list[str | bytes]  # the transcript's JSON, when the status asked for it
    decision_docs: list[str | bytes] | None = None  # the decisions' JSON, when asked for

    def transcript(self) -> list[Step]:
        """The transcript read with the lease (parsed here: inside the lease's block)."""
        return [Step.model_validate_json(s) for s in self.steps]

    def decisions_on(self, proposal_id: str) -> list[Decision] | None:
        """The decisions on the proposal read with the lease, in order (None: not read)."""
        if self.decision_docs is None:
            return None
        return _on_proposal(self.decision_docs, proposal_id)


@dataclass(frozen=True, kw_only=True)
class Written:
    """A checkpoint as written: the run with its new version, its status before, and the
    answers to the commands sent beside it and once it was written (`RunStore.write`)."""

    run: Run
    was: RunStatus
    beside: list[Any] = field(default_factory=list)
    if_written: list[Any] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        """Whether this write ended the run (a terminal run written again did not)."""
        return self.run.status.terminal and not self.was.terminal


@dataclass(frozen=True, kw_only=True)
class GroupClaim:
    """What `RunStore.create_claimed` claims and queues beside the new run."""

    dedup_key: str  # the alert group's (`bot.dedup`): set to the run's id, with a TTL
    ttl_seconds: int
    stream: str  # the work queue's stream, and the arguments of its XADD after the key
    queue_args: tuple[str, ...]


class RunStore(AlertLog):
    """Reads and writes runs in Redis; every write of a run is fenced by lease and version."""

    def __init__(self, client: RedisClient, *, prefix: str, retention_seconds: int) -> None:
        self.redis = client
        self._p = prefix
        self._retention = retention_seconds
        self._create = client.register_script(_CREATE)
        self._claim_create = client.register_script(_CLAIM_CREATE)
        self._checkpoint = client.register_script(_CHECKPOINT)
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._decide = client.register_script(_DECIDE)
        self._register_alert_scripts(client)
        # Concurrent callers' commands share round trips, on a single server.
        self.batches = None if isinstance(client, RedisCluster) else Batches(client)

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

    def lease_key(self, run_id: str) -> str:
        """The key of a run's lease (its owner token, with a TTL)."""
        return self._lease_key(run_id)

    def decisions_key(self, run_id: str) -> str:
        """The key of a run's decisions (a list of Decision JSON)."""
        return self._decisions_key(run_id)

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
    async def create(
        self,
        run: Run,
        steps: Sequence[Step] = (),
        *,
        events: Sequence[AuditEntry] = (),
        alerts: Sequence[Alert] = (),
    ) -> Run:
        """Store a new run (version 1) with its first transcript steps, audit `events`
        and group `alerts` (logged as `fold_alerts` logs them), all in one script.

        The run is listed in the indexes first, so that a crash right after the script
        leaves a run the sweeper sees (`queued` without a queue entry: it queues it); a
        listed id whose run was never written is skipped by every reader.
        """
        created, args = _created(run, steps, events, alerts)
        if int(await self._indexed_then_create(run.id, self._create_keys(run.id), args)) == -1:
            raise RunExists(f"run {run.id} already exists")
        return created

    async def create_claimed(
        self,
        run: Run,
        *,
        events: Sequence[AuditEntry],
        alerts: Sequence[Alert],
        claim: GroupClaim,
    ) -> Run | str:
        """`create` for a new alert group's run (no transcript steps yet), which also
        claims the group and queues the run, all in one script (one round trip, shared
        with other callers): on a single server only. Returns the run, or the id of the
        run that already holds the group (then nothing is written). Raises `RunExists` as
        `create` does."""
        if self.batches is None:
            raise StoreError("a group is claimed with its run only on a single server")
        created, args = _created(run, (), events, alerts)
        now = time.time()
        head = [run.id, claim.ttl_seconds, now, now - self._retention, len(claim.queue_args)]
        keys = [
            *self._create_keys(run.id),
            claim.dedup_key,
            f"{self._p}runs:all",
            f"{self._p}runs:active",
            claim.stream,
        ]
        answer = await self.run_script(self._claim_create, keys, [*head, *claim.queue_args, *args])
        if int(answer[0]) == -1:
            raise RunExists(f"run {run.id} already exists")
        return created if int(answer[0]) == 1 else cast(str, answer[1])

    def _create_keys(self, run_id: str) -> list[str]:
        # The order matters to _CREATE_FUNCTION.
        base = self.run_key(run_id)
        return [base, f"{base}:transcript", f"{base}:audit", f"{base}:alerts", f"{base}:alert_log"]

    async def _indexed_then_create(
        self, run_id: str, keys: list[str], args: list[str | int]
    ) -> Any:
        """List the run in `runs:all`/`runs:active`, then run `_CREATE`: in one round trip
        on one server, which runs a pipeline in order; in two on a cluster."""
        now = time.time()
        index: list[Command] = [
            ("ZADD", f"{self._p}runs:all", now, run_id),
            # The index keeps runs created within the retention window, else it grows
            # for ever; the runs' keys expire on their own, and unfinished ones stay
            # listed in runs:active.
            ("ZREMRANGEBYSCORE", f"{self._p}runs:all", "-inf", now - self._retention),
            ("ZADD", f"{self._p}runs:active", now, run_id),
        ]
        if self.batches is None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for command in index:
                    pipe.execute_command(*command)
                await pipe.execute()
            return await self._create(keys=keys, args=args)
        create = ("EVALSHA", self._create.sha, len(keys), *keys, *args)
        *indexed, answer = await self.batches.execute([*index, create])
        raise_errors(indexed)
        return await self._answer(self._create, keys, args, answer)

    async def run_script(self, script: AsyncScript, keys: list[str], args: Sequence[Any]) -> Any:
        """A registered script's answer: sharing a round trip with other callers on one
        server (`Batches`), on its own on a cluster."""
        if self.batches is None:
            return await script(keys=keys, args=args)
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        (answer,) = await self.batches.execute([command])
        return await self._answer(script, keys, args, answer)

    async def _answer(
        self, script: AsyncScript, keys: list[str], args: Sequence[Any], answer: Any
    ) -> Any:
        """A script's answer from a pipeline: run it again (loading it) if the server did
        not know it (it restarted, or its scripts were flushed)."""
        if isinstance(answer, NoScriptError):
            return await script(keys=keys, args=args)
        raise_errors([answer])
        return answer

    async def load(self, run_id: str) -> Run:
        """The run's latest checkpoint."""
        return self._parsed(run_id, await self.redis.hget(self.run_key(run_id), "doc"))

    async def read_beside(
        self, run_id: str, beside: Sequence[Command]
    ) -> tuple[str | bytes | None, list[Any]]:
        """The run's latest checkpoint as stored (for `parse_doc`) and the answers to `beside`
        (plain reads on other slots), in one pipeline: one round trip on one server."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.run_key(run_id), "doc")
            for command in beside:
                pipe.execute_command(*command)
            raw, *answers = await pipe.execute()
        return raw, answers

    def parse_doc(self, run_id: str, raw: str | bytes | None) -> Run:
        """The run a `read_beside` read; raises `RunNotFound` or `StoreError` (unreadable)."""
        return self._parsed(run_id, raw)

    def _parsed(self, run_id: str, raw: str | bytes | None) -> Run:
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

    async def write(
        self,
        run: Run,
        *,
        owner: str,
        steps: Sequence[Step] = (),
        events: Sequence[AuditEntry] = (),
        beside: Sequence[Command] = (),
        if_written: Sequence[Command] = (),
        written_at: datetime | None = None,
    ) -> Written:
        """`checkpoint`, also telling the status the run had before this write; audit
        `events` are appended by the same script (none when the write is refused). The
        run's `updated_at` becomes `written_at` (default: now).

        `beside`: commands on keys outside the run's hash slot (today's spend, the pause
        key), run whether or not the write is accepted, and not atomically with it: before
        the script in its pipeline (one round trip) on one server, in a pipeline of their
        own after it on a Redis Cluster. A command's error is its answer; a
        `ScriptCommand` the server did not know is run again on its own.

        `if_written`: plain commands (no scripts) on keys outside the run's hash slot (its
        deadline), run only when the write is accepted, right after it: by its script on
        one server, in a pipeline of their own on a Redis Cluster. An error (a failed
        pipeline: every command's) is its answer, never raised: the run is written. An
        ended run leaves `runs:active` the same way (an error there is logged).
        """
        updated = run.model_copy(
            update={
                "version": run.version + 1,
                "steps": run.steps + len(steps),
                "updated_at": written_at or utcnow(),
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
            AUDIT_MAXLEN,
            len(steps),
            len(events),
            *(s.model_dump_json() for s in steps),
        ]
        for event, data in events:
            args += _audit_fields(event, data).values()
        # An ended run leaves the index of active runs (outside its slot) with its write.
        unlisting = [("ZREM", f"{self._p}runs:active", run.id)] if updated.status.terminal else []
        after = [*if_written, *unlisting]
        cluster = isinstance(self.redis, RedisCluster)
        for command in () if cluster else after:
            args += [len(command), *command]
        (code, detail, *done), answers = await self._checkpoint_beside(run.id, args, beside)
        if int(code) == -1:
            raise StaleWrite(f"run {run.id}: lease is held by {detail!r}, not {owner!r}")
        if int(code) == -2:
            raise StaleWrite(f"run {run.id}: version is {detail}, writer had {run.version}")
        if cluster and after:
            done = await self._after_write(after)
        for error in (a for a in done[len(if_written) :] if isinstance(a, RedisError)):
            log.warning("could not unlist the ended run: %s", error, extra={"run_id": run.id})
        return Written(
            run=updated, was=RunStatus(detail), beside=answers, if_written=done[: len(if_written)]
        )

    async def _after_write(self, commands: Sequence[Command]) -> list[Any]:
        """The answers to `commands`, sent in a pipeline of their own (a cluster's
        `if_written`); a failed pipeline's error is every command's answer."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute(raise_on_error=False))
        except RedisError as exc:
            return [exc] * len(commands)

    async def _checkpoint_beside(
        self, run_id: str, args: list[str | int], beside: Sequence[Command]
    ) -> tuple[Any, list[Any]]:
        """`_CHECKPOINT`'s answer, and the answers to `beside` (see `write`)."""
        keys = self._run_keys(run_id)
        if not beside:
            return await self._checkpoint(keys=keys, args=args), []
        if isinstance(self.redis, RedisCluster):
            answer = await self._checkpoint(keys=keys, args=args)
            async with self.redis.pipeline(transaction=False) as pipe:
                for command in beside:
                    pipe.execute_command(*command)
                answers = list(await pipe.execute(raise_on_error=False))
            return answer, await rerun_lost(beside, answers)
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in beside:
                pipe.execute_command(*command)
            # EVALSHA, not the script object: in a pipeline that would cost a SCRIPT
            # EXISTS round trip each time.
            pipe.evalsha(self._checkpoint.sha, len(keys), *keys, *args)
            *answers, answer = await pipe.execute(raise_on_error=False)
        if isinstance(answer, NoScriptError):  # the server lost its scripts (a restart)
            answer = await self._checkpoint(keys=keys, args=args)
        elif isinstance(answer, Exception):
            raise answer
        return answer, await rerun_lost(beside, answers)

    async def list_runs(
        self, *, limit: int = 50, active_only: bool = False, excluding: Container[str] = ()
    ) -> list[Run]:
        """The most recent runs, newest first, but for those `excluding` names (the caller
        has them); read and parsed `_LIST_PAGE` at a time, so that a long list (the
        sweeper reads 1000) does not hold the event loop for long."""
        index = f"{self._p}runs:active" if active_only else f"{self._p}runs:all"
        listed = cast(list[str], await self.redis.zrevrange(index, 0, limit - 1))
        ids = [run_id for run_id in listed if run_id not in excluding]
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

    async def take(
        self,
        run_id: str,
        owner: str,
        ttl_seconds: float,
        *,
        transcript_when: Container[RunStatus] = (),
        decisions_when: Container[RunStatus] = (),
    ) -> Taken:
        """Take the run's lease and read the run, its decision count, (when its status is
        in `transcript_when`) its transcript and (in `decisions_when`) its decisions, in
        one script (the keys share a slot); raise `LeaseHeld`, having read and written
        nothing, when another owner holds it.

        Counted with the lease taken: a decision recorded during the drive is one it has
        not seen. Nothing is parsed here, so that whatever is unreadable raises inside
        the caller's hold on the lease: the run by `parsed` (`RunNotFound` when missing),
        the transcript by `Taken.transcript`.
        """
        keys = [
            self._lease_key(run_id),
            self.run_key(run_id),
            self._decisions_key(run_id),
            self._transcript_key(run_id),
        ]
        reads = [
            ",".join(s.value for s in RunStatus if s in when)
            for when in (transcript_when, decisions_when)
        ]
        answer = await self._take(keys=keys, args=[owner, int(ttl_seconds * 1000), *reads])
        if int(answer[0]) == 0:
            raise LeaseHeld(f"run {run_id} is leased by {answer[1]!r}")
        _, doc, count, steps, decisions = answer
        return Taken(
            run_id=run_id,
            doc=doc,
            decisions=int(count),
            steps=list(steps),
            decision_docs=None if decisions is None else list(decisions),
        )

    def parsed(self, taken: Taken) -> Run:
        """The run a `take` found; raises `RunNotFound` or `StoreError` (unreadable)."""
        return self._parsed(taken.run_id, taken.doc)

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
        """Record a decision once per run, proposal and user, with its `decision` audit
        event (one script); False if already recorded.

        With `settles_at` (the approvals the policy requires), a proposal that already has
        them, or a rejection, takes no further decisions: raises `ProposalError`.
        """
        run_id, proposal_id = decision.run_id, decision.proposal_id
        key = self._decision_key(run_id, proposal_id, decision.user)
        tally = f"{self._p}decision:{{{run_id}}}:{proposal_id}"
        event = _audit_fields(
            "decision",
            {
                "proposal": decision.proposal_id,
                "user": decision.user,
                "verdict": decision.verdict,
                "reason": decision.reason,
                "via": decision.via,
            },
        )
        recorded = await self._decide(
            keys=[key, self._decisions_key(run_id), tally, self._audit_key(run_id)],
            args=[
                decision.model_dump_json(),
                self._retention,
                decision.verdict,
                settles_at,
                AUDIT_MAXLEN,
                *(item for pair in event.items() for item in pair),
            ],
        )
        if int(recorded) == -1:
            raise ProposalError(f"proposal {proposal_id} of run {run_id} is already decided")
        return bool(recorded)

    async def decision_count(self, run_id: str) -> int:
        """How many decisions the run has, on any of its proposals."""
        return await self.redis.llen(self._decisions_key(run_id))

    async def decisions(self, run_id: str, proposal_id: str) -> list[Decision]:
        """The decisions recorded on one proposal, in order."""
        raw = await self.redis.lrange(self._decisions_key(run_id), 0, -1)
        return _on_proposal(raw, proposal_id)

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

    async def before_action(
        self, run_id: str, proposal_id: str
    ) -> tuple[ActionRecord | None, list[Decision]]:
        """The proposal's action record (if the action was ever started) and its
        decisions, in one round trip (their keys share the run's slot)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self._action_key(run_id, proposal_id))
            pipe.lrange(self._decisions_key(run_id), 0, -1)
            raw, decisions = await pipe.execute()
        record = None if raw is None else ActionRecord.model_validate_json(raw)
        return record, _on_proposal(decisions, proposal_id)

    async def unlist(self, run_id: str) -> None:
        """Take the run off `runs:active` (an ended run its write did not take off)."""
        await self.redis.zrem(f"{self._p}runs:active", run_id)

    async def reopen(self, run: Run) -> None:
        """An ended run goes on (a retry): its keys stop expiring; it is active again."""
        lease = self._lease_key(run.id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self._run_keys(run.id):
                if key != lease:  # the lease keeps its TTL
                    pipe.persist(key)
            pipe.zadd(f"{self._p}runs:active", {run.id: run.created_at.timestamp()})
            await pipe.execute()

    async def mark_enqueued(self, run_id: str, queued_by: Command | None = None) -> None:
        """Note that the run has a queue entry (`fold_alerts` reports it). `queued_by`, the
        command that adds the entry, is sent first: in the same round trip on one server,
        which runs them in order; awaited before the mark on a cluster."""
        mark: Command = ("HSET", self.run_key(run_id), "enqueued", 1)
        commands = [mark] if queued_by is None else [queued_by, mark]
        if self.batches is not None:
            raise_errors(await self.batches.execute(commands))
            return
        for command in commands:
            await self.redis.execute_command(*command)

    # -- audit ------------------------------------------------------------------------
    async def audit(self, run_id: str, event: str, **data: Any) -> None:
        """Append an event to the run's audit stream."""
        payload: dict[Any, Any] = _audit_fields(event, data)
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


def _on_proposal(raw: Sequence[str | bytes], proposal_id: str) -> list[Decision]:
    """The decisions (JSON, as listed) on one proposal, in order."""
    found = [Decision.model_validate_json(r) for r in raw]
    return [d for d in found if d.proposal_id == proposal_id]


def _created(
    run: Run, steps: Sequence[Step], events: Sequence[AuditEntry], alerts: Sequence[Alert]
) -> tuple[Run, list[str | int]]:
    """A new run as created (version 1), and `_CREATE_FUNCTION`'s arguments for it."""
    created = run.model_copy(update={"version": 1, "steps": len(steps)})
    args: list[str | int] = [
        created.model_dump_json(),
        created.status.value,
        created.updated_at.isoformat(),
        AUDIT_MAXLEN,
        len(steps),
        len(events),
        *(s.model_dump_json() for s in steps),
    ]
    for event, data in events:
        args += _audit_fields(event, data).values()
    for alert in alerts:
        args += [alert.fingerprint, alert.status, alert.model_dump_json()]
    return created, args


def _audit_fields(event: str, data: dict[str, Any]) -> dict[str, str]:
    """The fields of an audit stream entry."""
    return {"event": event, "at": utcnow().isoformat(), "data": _AUDIT_JSON.encode(data)}
