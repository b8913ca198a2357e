"""A drive takes its lease with the run in one script and ends with one: what that must
keep. A lease held by another owner refuses the drive before anything is read or written;
a run that is not there leaves no lease behind; the end of a drive (its `drove` mark and
the lease given back) happens whole or, on a Redis error, not at all. On one real server
and on a real Redis Cluster; the Redis error is a real one (an ACL that lets the drive's
user write everything but its `drove` mark).

A drive to a proposal costs one round trip for the proposal's checkpoint (its approval
deadline rides it) and one after it (the end): the settle of a proposal the drive just
made reads no decisions, and one recorded meanwhile gets the run driven again at once.
An approval reaches its action's claim in 2 round trips to record it and 5 to drive it: the
decisions are read with the lease, and each deadline rides its checkpoint.
Round trips are counted by a TCP relay between the bot and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as redis
from redis.exceptions import NoPermissionError

from bot.deps import Deps, open_deps
from bot.errors import LeaseHeld, RunNotFound
from bot.models import Decision, Run, RunStatus, Step
from bot.runs import record_decision, start_run
from bot.settings import Settings
from tests.factories import alert, text_step
from tests.factories import run as new_run
from tests.trip_relay import TripRelay
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.redis_cluster", "tests.sandbox_fixtures")

PREFIX = "trips:"
USER, PASSWORD = "trips-driver", "trips-secret"


@asynccontextmanager
async def _deps(
    url: str, *, cluster: bool = False, sandbox: RunningSandbox | None = None
) -> AsyncIterator[Deps]:
    values: dict[str, Any] = {
        "REDIS_URL": url,
        "INCIDENT_BOT_KEY_PREFIX": PREFIX,
        "INCIDENT_BOT_REDIS_CLUSTER": cluster,
        "INCIDENT_BOT_WORKERS": 0,
    }
    if sandbox is not None:
        values |= {"PROMETHEUS_URL": sandbox.url, "KUBERNETES_URL": sandbox.url}
    async with open_deps(Settings.model_validate(values)) as deps:
        yield deps


def _drove_key(run_id: str) -> str:
    return f"{PREFIX}drove:{{{run_id}}}"  # the layout in bot/drives.py


async def _lease_held_elsewhere_refuses(deps: Deps) -> None:
    created = await deps.store.create(new_run(), [text_step(0)])
    await deps.store.acquire_lease(created.id, "other-replica", 30)
    with pytest.raises(LeaseHeld, match="other-replica"):
        await deps.driver().drive(created.id)
    after = await deps.store.load(created.id)
    assert (after.version, after.status) == (created.version, RunStatus.QUEUED)
    assert len(await deps.store.transcript(created.id)) == 1
    assert await deps.store.lease_holder(created.id) == "other-replica"
    assert not await deps.store.redis.exists(_drove_key(created.id))
    assert await deps.store.read_audit(created.id) == []


async def test_a_lease_held_elsewhere_refuses_the_drive_and_changes_nothing(
    redis_url: str,
) -> None:
    async with _deps(redis_url) as deps:
        await _lease_held_elsewhere_refuses(deps)


async def test_a_lease_held_elsewhere_refuses_the_drive_on_a_cluster(cluster_url: str) -> None:
    async with _deps(cluster_url, cluster=True) as deps:
        await _lease_held_elsewhere_refuses(deps)


async def test_a_missing_run_leaves_no_lease(redis_url: str) -> None:
    async with _deps(redis_url) as deps:
        with pytest.raises(RunNotFound):
            await deps.driver().drive("run-nowhere")
        assert await deps.store.lease_holder("run-nowhere") is None
        assert not await deps.store.redis.exists(_drove_key("run-nowhere"))


async def _drive_ends_whole(deps: Deps) -> None:
    ended = new_run().model_copy(update={"status": RunStatus.CONCLUDED})
    created = await deps.store.create(ended, [text_step(0)])
    assert (await deps.driver().drive(created.id)).status is RunStatus.CONCLUDED
    assert await deps.store.lease_holder(created.id) is None
    assert await deps.store.redis.get(_drove_key(created.id)) == "0"


async def test_a_finished_drive_leaves_its_mark_and_gives_the_lease_back(
    redis_url: str, cluster_url: str
) -> None:
    async with _deps(redis_url) as deps:
        await _drive_ends_whole(deps)
    async with _deps(cluster_url, cluster=True) as deps:
        await _drive_ends_whole(deps)


@pytest.fixture
async def no_mark_url(redis_url: str) -> AsyncIterator[str]:
    """The server's URL as a user who may write every key of the bot's but the `drove`
    marks (`trips:dr…`), which it may only read."""
    admin = redis.from_url(redis_url)
    rules = ["reset", "on", f">{PASSWORD}", "+@all", "&*", "%R~*"]
    rules += [f"%RW~{PREFIX}[^d]*", f"%RW~{PREFIX}d[^r]*"]
    await admin.execute_command("ACL", "SETUSER", USER, *rules)
    parts = urlsplit(redis_url)
    yield urlunsplit(parts._replace(netloc=f"{USER}:{PASSWORD}@{parts.netloc}"))
    await admin.acl_deluser(USER)
    await admin.aclose()


async def test_a_refused_end_of_drive_leaves_neither_mark_nor_release(no_mark_url: str) -> None:
    async with _deps(no_mark_url) as deps:
        ended = new_run().model_copy(update={"status": RunStatus.CONCLUDED})
        created = await deps.store.create(ended, [text_step(0)])
        with pytest.raises(NoPermissionError):
            await deps.driver().drive(created.id)
        # Not half-done: no mark, and the lease still held (it expires by itself).
        assert not await deps.store.redis.exists(_drove_key(created.id))
        holder = await deps.store.lease_holder(created.id)
        assert holder is not None and holder.startswith(f"{deps.owner}/")  # the drive's own


async def test_a_drive_to_a_proposal_takes_one_trip_for_it_and_one_to_end(
    redis_url: str, sandbox: RunningSandbox
) -> None:
    # The runbook planner's drive of the demo's kind of alert (no model): tool rounds,
    # then the proposal; the relay's count as each checkpoint is listened to.
    seen: list[tuple[RunStatus, int]] = []
    async with TripRelay(redis_url).running() as relay, _deps(relay.url, sandbox=sandbox) as deps:

        async def listener(run: Run, _: Sequence[Step]) -> None:
            seen.append((run.status, relay.trips))

        # A first drive loads the scripts into the fresh server (a trip each, once).
        await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
        created = await start_run(deps, alert(severity="critical"))
        started = relay.trips
        driven = await deps.driver(listener).drive(created.id)
        ended = relay.trips
        deadline = await deps.store.redis.zscore(deps.deadlines.key, f"approval|{created.id}")
        approval_seconds = deps.deadlines.approval_seconds
    print(f"{ended - started} round trips; at each checkpoint: {seen}")
    assert driven.status is RunStatus.AWAITING_APPROVAL and driven.proposal is not None
    [*_, (_, before), (status, proposed)] = seen
    assert status is RunStatus.AWAITING_APPROVAL
    # The proposal's checkpoint writes its approval deadline (no ZADD of its own), then
    # the drive ends (no LRANGE of the decisions none can have recorded yet).
    assert (proposed - before, ended - proposed) == (1, 1)
    assert ended - started == 11  # the take, 7 checkpoints, 2 reads of the pause key, the end
    assert deadline == int((driven.proposal.proposed_at.timestamp() + approval_seconds) * 1000)


async def test_an_approval_reaches_its_action_in_few_round_trips(
    redis_url: str, sandbox: RunningSandbox
) -> None:
    # A click's record of an approval, then its resume's drive, as the relay counts them.
    seen: list[tuple[RunStatus, int]] = []
    async with TripRelay(redis_url).running() as relay, _deps(relay.url, sandbox=sandbox) as deps:
        await deps.queue.ensure_group()
        # Both proposed before either acts (the first's rollback ends the errors), and the
        # first's approval loads the scripts into the fresh server.
        runs = [await start_run(deps, alert(severity="critical")) for _ in range(2)]
        for proposed in [await deps.driver().drive(r.id) for r in runs]:
            assert proposed.proposal is not None
            decision = Decision(
                run_id=proposed.id, proposal_id=proposed.proposal.id, user="U1", verdict="approve"
            )
            before = relay.trips
            # As a click records it, with the run it has just read.
            assert await record_decision(deps, decision, run=proposed)
            recording = relay.trips - before
            started = relay.trips
            seen.clear()

            async def listener(run: Run, _: Sequence[Step], started: int = started) -> None:
                seen.append((run.status, relay.trips - started))

            driven = await deps.driver(listener).drive(proposed.id)
    print(f"record: {recording} round trips; the drive's, at each checkpoint: {seen}")
    assert driven.status is RunStatus.RESOLVED, driven.outcome
    # The decision with its audit event (one script), the resume queued.
    assert recording == 2
    # The lease taken with the decisions, then the `executing` checkpoint with its deadline.
    # Then the action's record and the decisions read again (one pipeline), the pause, the
    # record claimed, its audit event, the record finished, its event, the checkpoint.
    assert seen[:2] == [(RunStatus.EXECUTING, 2), (RunStatus.VERIFYING, 9)]


async def _click_reads(deps: Deps, relay: TripRelay | None = None) -> None:
    created = await deps.store.create(new_run(), [text_step(0)])
    before = relay.trips if relay is not None else 0
    raw, [pause] = await deps.store.read_beside(created.id, [deps.pause.reading()])
    if relay is not None:
        assert relay.trips - before == 1
    assert deps.store.parse_doc(created.id, raw) == created
    assert await deps.pause.state_of(pause) is None
    missing, [_] = await deps.store.read_beside("run-nowhere", [deps.pause.reading()])
    with pytest.raises(RunNotFound):
        deps.store.parse_doc("run-nowhere", missing)


async def test_a_click_reads_the_run_and_the_pause_in_one_round_trip(
    redis_url: str, cluster_url: str
) -> None:
    # What a click's handler reads before it decides (`Interactions.decide`).
    async with TripRelay(redis_url).running() as relay, _deps(relay.url) as deps:
        await _click_reads(deps, relay)
    async with _deps(cluster_url, cluster=True) as deps:  # the pause key is on another slot
        await _click_reads(deps)


async def test_a_decision_recorded_as_the_drive_proposes_is_driven_before_it_returns(
    redis_url: str, sandbox: RunningSandbox
) -> None:
    async with _deps(redis_url, sandbox=sandbox) as deps:
        await deps.queue.ensure_group()

        async def approve_once_proposed(run: Run, _: Sequence[Step]) -> None:
            # As a Slack click would, the moment the proposal's checkpoint is written.
            if run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None:
                decision = Decision(
                    run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve"
                )
                assert await record_decision(deps, decision)

        created = await start_run(deps, alert(severity="critical"))
        driven = await deps.driver(approve_once_proposed).drive(created.id)
        # Not read by the drive that proposed: its end found a decision it began without,
        # and drove the run again at once (the decision's resume, which may have found
        # the lease held, would have waited for its entry's reclaim).
        assert driven.status is RunStatus.RESOLVED, driven.outcome
        assert driven.proposal is not None
        assert await deps.marks.seen(created.id) == 1
        assert created.id in await deps.queue.queued_runs()  # the resume: a no-op now
        again = await deps.driver().drive(created.id)
        record = await deps.store.action_record(created.id, driven.proposal.id)
    assert again.status is RunStatus.RESOLVED and again.version == driven.version
    assert [d.user for d in driven.decisions] == ["U1"]
    assert record is not None and record.state == "succeeded"
