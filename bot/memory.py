"""Incident memory: every finished run leaves a compact record that later runs read.

Layout (under the store's prefix):

    memory:{<run id>}                the run's `IncidentRecord` JSON, expiring with retention
    memory:alertname:<digest>        sorted set of run ids by end time, per alertname
    memory:service:<digest>          the same, per service

A run's record is written at every terminal checkpoint (`Checkpointer.write`) over the
same key and index members, so writing it again (a retried run that ends again) leaves
one record and one entry per index. The indexes are trimmed to the retention window and
to `INDEX_KEPT` entries on each write. Records come from untrusted text (alerts, model
output), so they pass the redactor before they are stored; whoever shows one to the
model fences it (source `memory`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any, cast

from pydantic import ValidationError

from bot.batching import Command
from bot.metrics import Metrics
from bot.models import IncidentRecord, Run
from bot.redis_connection import RedisClient
from bot.slack.refs import MessageRefs
from bot.untrusted import count
from tools.redaction import redact_value

SIMILAR = 3
INDEX_KEPT = 1000
_CANDIDATES = 50  # the newest ids read from each index when ranking
_TEXT_CHARS = 400
_FINDINGS_KEPT = 5


class IncidentMemory:
    """Writes the records of finished runs and finds the ones like a new run."""

    def __init__(
        self, client: RedisClient, *, prefix: str, retention_seconds: int, metrics: Metrics
    ) -> None:
        self._redis = client
        self._p = prefix
        self._retention = retention_seconds
        self._metrics = metrics
        self._refs = MessageRefs(client, prefix=prefix, retention_seconds=retention_seconds)

    def record_key(self, run_id: str) -> str:
        """The key of one run's record."""
        return f"{self._p}memory:{{{run_id}}}"

    def index_key(self, label: str, value: str) -> str:
        """The index of the records whose `label` (alertname, service) is `value`."""
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        return f"{self._p}memory:{label}:{digest}"

    async def remember(self, run: Run) -> IncidentRecord:
        """Store the finished run's record (redacted) and index it; returns what was stored."""
        refs = await self._refs.load(run.id)
        record = _redacted(record_of(run, refs), self._metrics)
        now = time.time()
        ended = record.ended_at.timestamp()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self.record_key(run.id), record.model_dump_json(), ex=self._retention)
            for label, value in (("alertname", record.alertname), ("service", record.service)):
                if not value:
                    continue
                key = self.index_key(label, value)
                pipe.zadd(key, {run.id: ended})
                pipe.zremrangebyscore(key, "-inf", now - self._retention)
                pipe.zremrangebyrank(key, 0, -INDEX_KEPT - 1)
                pipe.expire(key, self._retention)
            await pipe.execute()
        return record

    async def similar(self, run: Run, limit: int = SIMILAR) -> list[IncidentRecord]:
        """The records most like the run's, newest first within each rank: the same
        alertname and service first, then the same service with other alertnames; never
        the run itself."""
        reads = self.similar_reads(run)
        answers: list[Any] = []
        if reads:
            async with self._redis.pipeline(transaction=False) as pipe:
                for command in reads:
                    pipe.execute_command(*command)
                answers = list(await pipe.execute())
        return await self.similar_from(run, answers, limit)

    def similar_reads(self, run: Run) -> list[Command]:
        """The index reads `similar` makes first, for a caller that sends them itself (one
        pipeline, or beside a checkpoint: `RunStore.write`); `similar_from` takes their
        answers. Non-transactional: on a Redis Cluster each node gets its part."""
        since = time.time() - self._retention
        return [
            (
                "ZREVRANGEBYSCORE",
                self.index_key(label, value),
                "+inf",
                since,
                "LIMIT",
                0,
                _CANDIDATES,
            )
            for label, value in _labels(run)
            if value
        ]

    async def similar_from(
        self, run: Run, answers: Sequence[Any], limit: int = SIMILAR
    ) -> list[IncidentRecord]:
        """`similar`, from the answers to `similar_reads(run)` (raising the first error)."""
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        found = iter(answers)
        newest = [cast(list[str], next(found)) if value else [] for _, value in _labels(run)]
        ids = dict.fromkeys(i for ids in newest for i in ids)
        records = await self._load([i for i in ids if i != run.id])
        alertname, service = (value for _, value in _labels(run))
        ranked = sorted(
            (r for r in records if r.service == service),
            key=lambda r: (r.alertname == alertname, r.ended_at),
            reverse=True,
        )
        return ranked[:limit]

    async def _load(self, run_ids: Sequence[str]) -> list[IncidentRecord]:
        if not run_ids:
            return []
        # One GET each (not MGET): the records live in different hash slots.
        async with self._redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.get(self.record_key(run_id))
            raw = await pipe.execute()
        records = []
        for doc in raw:
            if doc is None:
                continue  # expired; its index entry goes with the next trim
            try:
                records.append(IncidentRecord.model_validate_json(doc))
            except ValidationError:
                continue  # a record this version cannot read is no help to a new run
        return records


def _labels(run: Run) -> tuple[tuple[str, str], tuple[str, str]]:
    """The indexes a run's similar records are looked up in: (label, the run's value)."""
    labels = run.alert.labels
    return ("alertname", labels.get("alertname", "")), ("service", labels.get("service", ""))


def record_of(run: Run, refs: dict[str, str]) -> IncidentRecord:
    """The compact record of a finished run; `refs` are its Slack message references."""
    labels = run.alert.labels
    proposal = run.proposal
    return IncidentRecord(
        run_id=run.id,
        group_key=run.alert.group_key,
        title=_short(run.alert.title),
        alertname=labels.get("alertname", ""),
        namespace=labels.get("namespace", ""),
        service=labels.get("service", ""),
        status=run.status,
        headline=_short(run.headline),
        summary=_short(run.summary),
        findings=[_finding(f.summary, f.unverified) for f in run.findings[:_FINDINGS_KEPT]],
        action=proposal.action if proposal else "",
        target=_short(proposal.target) if proposal else "",
        outcome=_short(run.outcome),
        approved_by=[d.user for d in run.decisions if d.verdict == "approve"],
        started_at=run.created_at,
        ended_at=run.updated_at,
        channel=refs.get("channel", ""),
        thread_ts=refs.get("thread_ts", ""),
    )


def describe(record: IncidentRecord) -> str:
    """The record as the model reads it (inside a `memory` envelope)."""
    where = "/".join(v for v in (record.namespace, record.service) if v)
    lines = [
        f"Run {record.run_id} ({record.status.value}), {record.alertname or record.title}"
        f"{' on ' + where if where else ''}, from {record.started_at:%Y-%m-%d %H:%M} "
        f"to {record.ended_at:%Y-%m-%d %H:%M} UTC.",
    ]
    if record.headline:
        lines.append(f"Headline: {record.headline}")
    if record.summary:
        lines.append(f"Summary: {record.summary}")
    lines += [f"Finding: {f}" for f in record.findings]
    if record.action:
        approved = ", ".join(record.approved_by) or "nobody"
        lines.append(f"Action: {record.action} on {record.target} (approved by {approved}).")
    if record.outcome:
        lines.append(f"Outcome: {record.outcome}")
    return "\n".join(lines)


def _finding(summary: str, unverified: str) -> str:
    return _short(f"(unverified) {summary}" if unverified else summary)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _TEXT_CHARS else text[: _TEXT_CHARS - 1] + "…"


def _redacted(record: IncidentRecord, metrics: Metrics) -> IncidentRecord:
    document: Any = record.model_dump(mode="json")
    cleaned, counts = redact_value(document)
    if not counts:
        return record
    count(metrics, "memory", counts)
    return IncidentRecord.model_validate(cleaned)
