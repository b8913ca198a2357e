"""Frozen checkpoints of every schema version keep loading, saving unchanged, and resuming."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.deps import Deps, open_deps
from bot.models import Decision, Run, RunStatus, Step
from bot.runs import record_decision
from bot.settings import Settings
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "checkpoints").glob("v*_*.json"))


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_load_then_save_is_unchanged(path: Path) -> None:
    document = _load(path)
    assert Run.model_validate(document["run"]).model_dump(mode="json") == document["run"]
    for step in document["transcript"]:
        assert Step.model_validate(step).model_dump(mode="json") == step


def test_there_is_a_fixture_for_each_schema_version() -> None:
    from bot.models import SCHEMA_VERSION

    versions = {int(p.name.split("_")[0].removeprefix("v")) for p in FIXTURES}
    assert versions == set(range(1, SCHEMA_VERSION + 1))


@pytest.fixture
async def deps(redis_url: str, sandbox: RunningSandbox) -> AsyncIterator[Deps]:
    # The frozen proposal is old: a long approval timeout keeps it decidable.
    settings = Settings(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_APPROVAL_TIMEOUT=10**9,
        INCIDENT_BOT_VERIFY_INTERVAL=0.1,
    )
    async with open_deps(settings) as built:
        yield built


async def _import(deps: Deps, name: str) -> Run:
    document = _load(Path(__file__).parent / "fixtures" / "checkpoints" / name)
    run = Run.model_validate(document["run"])
    steps = [Step.model_validate(s) for s in document["transcript"]]
    return await deps.store.create(run, steps)


async def test_a_frozen_awaiting_approval_checkpoint_resumes_to_resolved(deps: Deps) -> None:
    run = await _import(deps, "v1_awaiting_approval.json")
    assert run.proposal is not None
    await record_decision(
        deps, Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve")
    )
    finished = await deps.driver().drive(run.id)
    assert finished.status is RunStatus.RESOLVED, finished.outcome


async def test_a_frozen_mid_investigation_checkpoint_resumes_to_a_proposal(deps: Deps) -> None:
    run = await _import(deps, "v1_investigating.json")
    finished = await deps.driver().drive(run.id)
    assert finished.status is RunStatus.AWAITING_APPROVAL
    assert finished.proposal is not None
    assert finished.proposal.arguments["to_revision"] == 1
    transcript = await deps.store.transcript(run.id)
    # The planner's pending calls ran once, answered in the step right after them.
    assert transcript[2].author == "tools"
    assert {p.tool_use_id for p in transcript[2].content} == {  # type: ignore[union-attr]
        c.id for c in transcript[1].tool_calls()
    }
