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
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from bot.deps import Deps
from bot.errors import AdmissionContended, RunExists
from bot.models import Alert, RunStatus, new_id
from bot.queue import WorkQueue
from bot.runs import redact_alert_counted, start_run
from bot.store import AlertFold

# KEYS: dedup key.  ARGV: expected run id ('' for none), new run id, ttl seconds.
_SWAP = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return ARGV[2]
"""

Outcome = Literal["started", "updated", "repeated", "resolved", "ignored"]


@dataclass(frozen=True, kw_only=True)
class Admission:
    """What one delivery did: which run it reached and how."""

    run_id: str | None
    outcome: Outcome


class AlertGroups:
    """Admits alerts of one group to the group's run."""

    def __init__(self, deps: Deps, queue: WorkQueue) -> None:
        self._deps = deps
        self._queue = queue
        self._swap = deps.store.redis.register_script(_SWAP)

    def dedup_key(self, group_key: str) -> str:
        """The Redis key holding the run id of an alert group."""
        digest = hashlib.sha256(group_key.encode()).hexdigest()[:32]
        return f"{self._deps.settings.key_prefix}dedup:{{{digest}}}"

    async def admit(self, alerts: Sequence[Alert]) -> Admission:
        """Fold one delivery of a group's alerts into its run, starting one if needed.

        Returns only after everything is durably in Redis; raises redis errors as they are
        (the HTTP layer answers 503 so the sender retries).
        """
        alerts = [redact_alert_counted(self._deps, a) for a in alerts]
        group_key = alerts[0].group_key
        key = self.dedup_key(group_key)
        firing = [a for a in alerts if a.status == "firing"]
        for _ in range(5):  # a concurrent delivery may win a race; then look again
            current = cast(str | None, await self._deps.store.redis.get(key))
            if current is not None:
                fold = await self._deps.store.fold_alerts(current, alerts)
                if fold.status is None:
                    # A crash after the key was set but before the run was created.
                    return await self._start(current, firing or list(alerts), repaired=True)
                if not fold.fires_anew:
                    return await self._folded(current, alerts, fold)
            if not firing:
                return Admission(run_id=current, outcome="ignored")
            run_id = new_id("run")
            ttl = self._deps.settings.retention_seconds
            won = await self._swap(keys=[key], args=[current or "", run_id, ttl])
            if won == run_id:
                return await self._start(run_id, firing, repaired=False)
        raise AdmissionContended(f"alert group {group_key!r} kept changing; retry")

    async def _start(self, run_id: str, alerts: Sequence[Alert], *, repaired: bool) -> Admission:
        try:
            run = await start_run(self._deps, alerts[0], trigger="alert", run_id=run_id)
        except RunExists:
            # A concurrent delivery of the same group created it first: join it.
            fold = await self._deps.store.fold_alerts(run_id, alerts)
            return await self._folded(run_id, alerts, fold)
        await self._deps.store.fold_alerts(run.id, alerts)
        await self._enqueue(run.id)
        await self._deps.store.audit(run.id, "admitted", repaired=repaired, alerts=len(alerts))
        return Admission(run_id=run.id, outcome="started")

    async def _folded(self, run_id: str, alerts: Sequence[Alert], fold: AlertFold) -> Admission:
        if fold.status is RunStatus.QUEUED and not fold.enqueued:
            await self._enqueue(run_id)  # a crash may have kept it from the queue
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
        await self._queue.enqueue(run_id, "start")
        await self._deps.store.mark_enqueued(run_id)
