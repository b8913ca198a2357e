"""Alert groups -> runs: at most one open run per group, repeats folded into it.

`dedup:{group}` holds the id of the group's run. A firing alert of a group without an
open run starts one (queued, then put on the work queue); repeats and re-deliveries of
an open run's group add new alerts (and status changes) to that run's alert log, which
the investigation reads between turns; `resolved` is recorded there too. A group that
fires again after its run ended starts a new run. Fire/resolve/fire while the run is
still open (flapping) joins it.

Every step is idempotent, so a webhook retried after a crash at any point converges:
a dedup key whose run was never created gets it created; a run still `queued` is put on
the queue again (a duplicate entry is harmless: driving a run is idempotent).

On a single server a new group costs one round trip, shared with concurrent deliveries
(`bot.batching`): one script claims the group, lists the run, creates it (with its audit
events and alerts) and queues it; a crash leaves all of it or none. On a cluster
(the keys are on many hash slots), or when something must run between the run's creation
and its queueing (the Slack intake says where its thread goes), it costs three: claim the
group; list and create the run; queue it and mark it queued. A repeat of a group this
process has seen costs one: the group's run id and a check, writing nothing, that the
delivery changes nothing in that run; anything else (a new alert, a resolution, another
run now holding the group) takes the full path.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from bot.deps import Deps
from bot.errors import AdmissionContended, RunExists
from bot.metrics import Metrics
from bot.models import Alert, RunStatus, new_id
from bot.queue import WorkQueue
from bot.runs import count_started, new_run, start_run
from bot.store import AlertFold, GroupClaim
from bot.untrusted import RedactedAlert, count, redacted

# KEYS: dedup key.  ARGV: run id to claim a free group with ('' not to), ttl seconds.
# Returns the group's run id: the one it had, else ARGV[1], now set ('' if none).
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current then return current end
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
return ARGV[1]
"""

# KEYS: dedup key.  ARGV: expected run id ('' for none), new run id, ttl seconds.
_SWAP = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return ARGV[2]
"""

Outcome = Literal["started", "updated", "repeated", "resolved", "ignored"]
KNOWN_GROUPS = 4096  # groups whose last run id a process remembers, for the repeat check
# Called with a new run's id before it is queued (e.g. to say where its thread goes).
BeforeQueue = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Admission:
    """What one delivery did: which run it reached and how."""

    run_id: str | None
    outcome: Outcome


# Outcomes of a delivery folded into a run that was already open.
_DEDUPLICATED: frozenset[Outcome] = frozenset({"updated", "repeated", "resolved"})


def count_admission(metrics: Metrics, source: str, admission: Admission, alerts: int) -> None:
    """Count a delivery's alerts as received, and as deduplicated when they joined a run
    that was already open (every source counts the same way)."""
    metrics.alerts_received.labels(source).inc(alerts)
    if admission.outcome in _DEDUPLICATED:
        metrics.alerts_deduplicated.labels(source).inc(alerts)


@functools.lru_cache(maxsize=KNOWN_GROUPS)
def _digest(group_key: str) -> str:
    return hashlib.sha256(group_key.encode()).hexdigest()[:32]


class AlertGroups:
    """Admits alerts of one group to the group's run."""

    def __init__(self, deps: Deps, queue: WorkQueue) -> None:
        self._deps = deps
        self._queue = queue
        self._swap = deps.store.redis.register_script(_SWAP)
        self._claim = deps.store.redis.register_script(_CLAIM)
        # dedup key -> the run id last seen there: a hint, checked by every repeat check.
        # Ordered: the one remembered longest ago is forgotten in constant time.
        self._known: OrderedDict[str, str] = OrderedDict()

    def dedup_key(self, group_key: str) -> str:
        """The Redis key holding the run id of an alert group."""
        return f"{self._deps.settings.key_prefix}dedup:{{{_digest(group_key)}}}"

    async def admit(
        self,
        delivered: Sequence[Alert | RedactedAlert],
        *,
        before_queue: BeforeQueue | None = None,
        opens_run: bool = True,
    ) -> Admission:
        """Fold one delivery of a group's alerts into its run, starting one if needed
        (unless `opens_run` is False: then a group without an open run ignores it).

        Returns only after everything is durably in Redis; raises redis errors as they are
        (the HTTP layer answers 503 so the sender retries). `before_queue` runs whenever
        this delivery queues a run, after it is created and before any worker can take it.
        Every delivery's redactions are counted; a plain `Alert` is redacted here first.
        """
        clean = [a if isinstance(a, RedactedAlert) else redacted(a) for a in delivered]
        for one in clean:
            count(self._deps.metrics, "alert", one.redactions)
        alerts = [a.alert for a in clean]
        key = self.dedup_key(alerts[0].group_key)
        firing = [a for a in clean if a.alert.status == "firing"]
        admission = await self._to_known_run(key, alerts, before_queue)
        if admission is not None:
            return admission
        admission = await self._claimed(key, clean, firing, before_queue, opens_run=opens_run)
        if admission.run_id is not None and admission.outcome != "ignored":
            self._remember(key, admission.run_id)
        return admission

    async def _claimed(
        self,
        key: str,
        clean: Sequence[RedactedAlert],
        firing: Sequence[RedactedAlert],
        before_queue: BeforeQueue | None,
        *,
        opens_run: bool,
    ) -> Admission:
        """`admit` the full way: claim the group, or fold into (or replace) its run."""
        alerts = [a.alert for a in clean]
        ttl = self._deps.settings.retention_seconds
        for attempt in range(5):  # a concurrent delivery may win a race; then look again
            run_id = new_id("run") if firing and opens_run else ""
            claimed = await self._claim_group(key, run_id, firing, before_queue, whole=attempt == 0)
            if isinstance(claimed, Admission):
                return claimed
            current = claimed
            if current is not None:
                fold = await self._deps.store.fold_alerts(current, alerts)
                if fold.status is None and opens_run:
                    # A crash after the key was set but before the run was created.
                    return await self._start(
                        current, firing or clean, repaired=True, before_queue=before_queue
                    )
                if fold.status is not None and not fold.fires_anew:
                    return await self._folded(current, alerts, fold, before_queue)
            if not firing or not opens_run:
                return Admission(run_id=current, outcome="ignored")
            won = await self._swap(keys=[key], args=[current or "", run_id, ttl])
            if won == run_id:
                return await self._start(run_id, firing, repaired=False, before_queue=before_queue)
        raise AdmissionContended(f"alert group {alerts[0].group_key!r} kept changing; retry")

    async def _to_known_run(
        self, key: str, alerts: Sequence[Alert], before_queue: BeforeQueue | None
    ) -> Admission | None:
        """The delivery folded into the group's run as last seen here, if the group
        still has it and it takes the delivery; a repeat costs one round trip that
        writes nothing. None: admit it the full way."""
        known = self._known.get(key)
        if known is None:
            return None
        current, check = await self._deps.store.repeat_check(key, known, alerts)
        if current != known:
            self._known.pop(key, None)
            return None
        if check is None or check.status is None or check.fires_anew:
            return None
        if check.logged or (check.status is RunStatus.QUEUED and not check.enqueued):
            fold = await self._deps.store.fold_alerts(known, alerts)
            if fold.status is None or fold.fires_anew:  # it changed since the check
                return None
            return await self._folded(known, alerts, fold, before_queue)
        return Admission(run_id=known, outcome="repeated")

    def _remember(self, key: str, run_id: str) -> None:
        self._known.pop(key, None)
        if len(self._known) >= KNOWN_GROUPS:
            self._known.popitem(last=False)  # remembered longest ago
        self._known[key] = run_id

    async def _claim_group(
        self,
        key: str,
        run_id: str,
        firing: Sequence[RedactedAlert],
        before_queue: BeforeQueue | None,
        *,
        whole: bool,
    ) -> Admission | str | None:
        """Claim the group for `run_id` (unless it is '') and, if that wins, start the run:
        its admission. Otherwise the id of the run the group has (None: it has none).

        With `whole`, on a single server, and when nothing has to run between the run's
        creation and its queueing, claiming and starting are one script."""
        if run_id and whole and before_queue is None and self._deps.store.batches is not None:
            return await self._start_claimed(key, run_id, firing)
        ttl = self._deps.settings.retention_seconds
        claimed = await self._deps.store.run_script(self._claim, [key], [run_id, ttl])
        current = cast(str, claimed) or None
        if current is not None and current == run_id:
            return await self._start(run_id, firing, repaired=False, before_queue=before_queue)
        return current

    async def _start_claimed(
        self, key: str, run_id: str, alerts: Sequence[RedactedAlert]
    ) -> Admission | str:
        """Start the group's run as `_start` does, in one script that also claims the
        group; when the group has a run, nothing is written: that run's id."""
        admitted = ("admitted", {"repaired": False, "alerts": len(alerts)})
        new = new_run(
            self._deps, alerts[0], trigger="alert", run_id=run_id, alerts=alerts, events=[admitted]
        )
        _, stream, *queue_args = self._queue.start_command(run_id)  # XADD stream ...
        claim = GroupClaim(
            dedup_key=key,
            ttl_seconds=self._deps.settings.retention_seconds,
            stream=stream,
            queue_args=tuple(queue_args),
        )
        created = await self._deps.store.create_claimed(
            new.run, events=new.events, alerts=new.alerts, claim=claim
        )
        if isinstance(created, str):
            return created
        count_started(self._deps, new)
        return Admission(run_id=run_id, outcome="started")

    async def _start(
        self,
        run_id: str,
        alerts: Sequence[RedactedAlert],
        *,
        repaired: bool,
        before_queue: BeforeQueue | None,
    ) -> Admission:
        admitted = ("admitted", {"repaired": repaired, "alerts": len(alerts)})
        try:
            run = await start_run(
                self._deps,
                alerts[0],
                trigger="alert",
                run_id=run_id,
                alerts=alerts,
                events=[admitted],
            )
        except RunExists:
            # A concurrent delivery of the same group created it first: join it.
            plain = [a.alert for a in alerts]
            fold = await self._deps.store.fold_alerts(run_id, plain)
            return await self._folded(run_id, plain, fold)
        if before_queue is not None:
            await before_queue(run.id)
        await self._enqueue(run.id)
        return Admission(run_id=run.id, outcome="started")

    async def _folded(
        self,
        run_id: str,
        alerts: Sequence[Alert],
        fold: AlertFold,
        before_queue: BeforeQueue | None = None,
    ) -> Admission:
        if fold.status is RunStatus.QUEUED and not fold.enqueued:
            # A crash may have kept it from the queue (and `before_queue` from running).
            if before_queue is not None:
                await before_queue(run_id)
            await self._enqueue(run_id)
        if not fold.logged:
            return Admission(run_id=run_id, outcome="repeated")
        resolved = all(a.status == "resolved" for a in alerts)
        await self._deps.store.audit(
            run_id,
            "alerts_resolved" if resolved else "alerts_updated",
            fingerprints=[a.fingerprint for a in alerts],
        )
        return Admission(run_id=run_id, outcome="resolved" if resolved else "updated")

    async def _enqueue(self, run_id: str) -> None:
        """Queue the run and mark it so; repeats of its group add no entries.

        The mark is written after the entry, so a crash between the two only means a
        duplicate entry later (harmless: driving a run is idempotent), never a missing one.
        """
        await self._deps.store.mark_enqueued(run_id, queued_by=self._queue.start_command(run_id))
