"""Fixtures for Slack tests: the local Slack, a policy and the sandbox.

A test module uses them with `pytest_plugins = ("tests.slack_fixtures",)`.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from bot.store import RunStore
from tests.slack_helpers import POLICY, SRE_MEMBER
from tests.slack_server import SlackServer
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox

RUNBOOKS = Path(__file__).resolve().parent.parent / "policies" / "runbooks"


@pytest.fixture
async def slack() -> AsyncIterator[SlackServer]:
    """The local Slack; every message the bot sent must have passed Slack's validation."""
    async with SlackServer() as server:
        server.usergroups["S0SRE0001"] = ("sre", [SRE_MEMBER, "USRE00002"])
        yield server
    assert server.problems == [], server.problems


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A policy (rollbacks in `shop` need one approval from APPROVER or @sre) and the
    shipped runbooks."""
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "policy.yaml").write_text(POLICY)
    shutil.copytree(RUNBOOKS, directory / "runbooks")
    return directory


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """The bad-deploy cluster; a rollback shows at once."""
    scenario = load_scenario("bad-deploy").model_copy(update={"recovery_seconds": 0})
    async with run_sandbox(scenario) as running:
        yield running


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RunStore]:
    client = redis.from_url(redis_url, decode_responses=True)
    yield RunStore(client, prefix="incident-bot:", retention_seconds=3600)
    await client.aclose()
