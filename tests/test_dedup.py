"""Alert groups against a real Redis: one open run per group, whatever the storm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.dedup import AlertGroups
from bot.deps import Deps, open_deps
from bot.models import Alert, RunStatus
from bot.settings import Settings
from tests.factories import alert


@pytest.fixture
async def deps(redis_url: str) -> AsyncIterator[Deps]:
    async with open_deps(Settings(REDIS_URL=redis_url)) as built:
        await built.queue.ensure_group()
        yield built


@pytest.fixture
def groups(deps: Deps) -> AlertGroups:
    return AlertGroups(deps, deps.queue)


def _pod(pod: str, status: str = "firing") -> Alert:
    return alert(alertname="PodCrashLooping", pod=pod).model_copy(
        update={"group_key": "group:crashloop", "fingerprint": f"fp-{pod}", "status": status}
    )


async def test_a_storm_of_one_group_starts_one_run(groups: AlertGroups, deps: Deps) -> None:
    admissions = await asyncio.gather(*(groups.admit([_pod(f"p{n % 3}")]) for n in range(50)))
    run_ids = {a.run_id for a in admissions}
    assert len(run_ids) == 1
    assert [a.outcome for a in admissions].count("started") == 1
    (run,) = await deps.store.list_runs()
    assert run.status is RunStatus.QUEUED
    assert {a.fingerprint for a in await deps.store.alert_log(run.id)} == {
        "fp-p0",
        "fp-p1",
        "fp-p2",
    }
    assert await deps.queue.depth() >= 1


async def test_repeats_new_alerts_and_resolution_reach_the_same_run(
    groups: AlertGroups, deps: Deps
) -> None:
    first = await groups.admit([_pod("a")])
    repeat = await groups.admit([_pod("a")])
    new = await groups.admit([_pod("a"), _pod("b")])
    resolved = await groups.admit([_pod("a", "resolved"), _pod("b", "resolved")])
    refire = await groups.admit([_pod("a")])  # flapping while the run is open
    assert [first.outcome, repeat.outcome, new.outcome, resolved.outcome, refire.outcome] == [
        "started",
        "repeated",
        "updated",
        "resolved",
        "updated",
    ]
    assert {a.run_id for a in (first, repeat, new, resolved, refire)} == {first.run_id}
    assert first.run_id is not None
    log = await deps.store.alert_log(first.run_id)
    assert [(a.fingerprint, a.status) for a in log] == [
        ("fp-a", "firing"),
        ("fp-b", "firing"),
        ("fp-a", "resolved"),
        ("fp-b", "resolved"),
        ("fp-a", "firing"),
    ]


async def _end(deps: Deps, run_id: str | None) -> None:
    assert run_id is not None
    run = await deps.store.load(run_id)
    await deps.store.acquire_lease(run.id, "t", 30)
    await deps.store.checkpoint(run.model_copy(update={"status": RunStatus.CONCLUDED}), owner="t")
    await deps.store.release_lease(run.id, "t")


async def test_a_group_that_fires_again_after_its_run_ended_starts_a_new_run(
    groups: AlertGroups, deps: Deps
) -> None:
    first = await groups.admit([_pod("a")])
    await _end(deps, first.run_id)
    # Alertmanager repeats what the ended run saw: no new run every repeat_interval.
    repeat = await groups.admit([_pod("a")])
    assert (repeat.run_id, repeat.outcome) == (first.run_id, "repeated")
    # The alert resolves, then fires again: that is a new incident.
    resolved = await groups.admit([_pod("a", "resolved")])
    assert (resolved.run_id, resolved.outcome) == (first.run_id, "resolved")
    again = await groups.admit([_pod("a")])
    assert again.outcome == "started"
    assert again.run_id != first.run_id


async def test_a_new_alert_in_the_group_of_an_ended_run_starts_a_new_run(
    groups: AlertGroups, deps: Deps
) -> None:
    first = await groups.admit([_pod("a")])
    await _end(deps, first.run_id)
    again = await groups.admit([_pod("a"), _pod("b")])
    assert again.outcome == "started"
    assert again.run_id != first.run_id


async def test_resolved_for_a_group_without_a_run_is_ignored(
    groups: AlertGroups, deps: Deps
) -> None:
    admission = await groups.admit([_pod("a", "resolved")])
    assert admission.outcome == "ignored"
    assert await deps.store.list_runs() == []


async def test_a_crash_between_claiming_the_group_and_creating_the_run_is_repaired(
    groups: AlertGroups, deps: Deps
) -> None:
    # The dedup key was set for run-lost, then the process died before creating it.
    key = groups.dedup_key("group:crashloop")
    await deps.store.redis.set(key, "run-lost")
    admission = await groups.admit([_pod("a")])
    assert admission.run_id == "run-lost"
    assert admission.outcome == "started"
    assert (await deps.store.load("run-lost")).status is RunStatus.QUEUED


async def test_repeats_of_a_queued_run_add_no_queue_entries(
    groups: AlertGroups, deps: Deps
) -> None:
    first = await groups.admit([_pod("a")])
    for _ in range(10):
        assert (await groups.admit([_pod("a")])).outcome == "repeated"
    assert await deps.queue.depth() == 1
    assert first.run_id is not None
