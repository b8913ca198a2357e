"""Fixtures that serve the sandbox on a free port and build clients pointed at it.

A test module uses them with `pytest_plugins = ("tests.sandbox_fixtures",)`.
The scenario is `bad-deploy` with `recovery_seconds: 0`, so a rollback shows at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tools.actions import ActionContext
from tools.kube_client import KubernetesApi
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox
from tools.toolset import ToolContext


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """The bad-deploy scenario, recovering instantly after a rollback."""
    scenario = load_scenario("bad-deploy").model_copy(update={"recovery_seconds": 0})
    async with run_sandbox(scenario) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def kube(sandbox: RunningSandbox) -> AsyncIterator[Any]:
    """The Kubernetes API of the sandbox (its client is built at first use)."""
    client = KubernetesApi(sandbox.url, None)
    async with client:
        yield client


@pytest.fixture
def tool_context(sandbox: RunningSandbox, http: aiohttp.ClientSession, kube: Any) -> ToolContext:
    """A tool context whose Prometheus and Kubernetes are the sandbox."""
    return ToolContext(http=http, prometheus_url=sandbox.url, kubernetes=kube, timeout_seconds=5)


@pytest.fixture
def action_context(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, kube: Any
) -> ActionContext:
    """An action context whose Prometheus and Kubernetes are the sandbox."""
    return ActionContext(http=http, prometheus_url=sandbox.url, kubernetes=kube, timeout_seconds=5)


@pytest.fixture
def sandbox_state(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> Callable[[], Awaitable[Any]]:
    """Reads the sandbox's `/sandbox/state` document: `await sandbox_state()`."""

    async def read() -> Any:
        async with http.get(f"{sandbox.url}/sandbox/state") as response:
            response.raise_for_status()
            return await response.json()

    return read
