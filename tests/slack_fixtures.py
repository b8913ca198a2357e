"""Fixtures for Slack tests: the local Slack and a policy naming approvers.

A test module uses them with
`pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")` (the latter: `sandbox`).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.slack_helpers import POLICY, SRE_MEMBER
from tests.slack_server import SlackServer

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
