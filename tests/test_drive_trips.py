"""A drive takes its lease with the run in one script and ends with one: what that must
keep. A lease held by another owner refuses the drive before anything is read or written;
a run that is not there leaves no lease behind; the end of a drive (its `drove` mark and
the lease given back) happens whole or, on a Redis error, not at all. On one real server
and on a real Redis Cluster; the Redis error is a real one (an ACL that lets the drive's
user write everything but its `drove` mark)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as redis
from redis.exceptions import NoPermissionError

from bot.deps import Deps, open_deps
from bot.errors import LeaseHeld, RunNotFound
from bot.models import RunStatus
from bot.settings import Settings
from tests.factories import run as new_run
from tests.factories import text_step

pytest_plugins = ("tests.redis_cluster",)

PREFIX = "trips:"
USER, PASSWORD = "trips-driver", "trips-secret"


@asynccontextmanager
async def _deps(url: str, *, cluster: bool = False) -> AsyncIterator[Deps]:
    values: dict[str, Any] = {
        "REDIS_URL": url,
        "INCIDENT_BOT_KEY_PREFIX": PREFIX,
        "INCIDENT_BOT_REDIS_CLUSTER": cluster,
        "INCIDENT_BOT_WORKERS": 0,
    }
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
        assert await deps.store.lease_holder(created.id) == deps.owner
