"""Run every scenario with every engine, repeated, a few at a time; score each attempt."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from bot.evals.attempt import Engine, observe_attempt
from bot.evals.scenarios import Reason, ScenarioDir
from bot.evals.scorer import Observation, Score, score
from bot.metrics import Metrics
from bot.redis_connection import open_redis
from bot.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Result:
    """One scored attempt. `expected` is a transcript's recorded verdict (None otherwise)."""

    scenario: str
    engine: Engine
    attempt: int
    observation: Observation
    score: Score
    expected: Reason | None = None

    @property
    def ok(self) -> bool:
        """Passed; for a recorded transcript: scored the reason it was recorded for."""
        if self.expected is not None:
            return self.score.reason == self.expected
        return self.score.passed


def attempts_of(
    scenarios: Sequence[ScenarioDir], engines: Sequence[Engine], repeat: int
) -> list[tuple[ScenarioDir, Engine, int]]:
    """Every (scenario, engine, attempt) to run; a transcript engine only where recorded."""
    return [
        (s, e, i)
        for e in engines
        for s in scenarios
        if e.kind != "transcript" or e.transcript in s.transcripts
        for i in range(1, repeat + 1)
    ]


async def run_suite(
    scenarios: Sequence[ScenarioDir],
    engines: Sequence[Engine],
    *,
    settings: Settings,
    repeat: int = 1,
    jobs: int = 2,
) -> list[Result]:
    """Run and score every attempt, at most `jobs` at once, in a stable order."""
    metrics = Metrics()
    session = uuid.uuid4().hex[:8]
    gate = asyncio.Semaphore(jobs)

    async def one(scenario: ScenarioDir, engine: Engine, attempt: int) -> Result:
        prefix = f"{settings.key_prefix}eval:{session}:{scenario.name}:{engine.name}:{attempt}:"
        async with gate:
            observed = await observe_attempt(
                scenario, engine, settings=settings, metrics=metrics, prefix=prefix
            )
        expected = (
            scenario.transcripts[engine.transcript].expected_reason
            if engine.kind == "transcript"
            else None
        )
        return Result(
            scenario=scenario.name,
            engine=engine,
            attempt=attempt,
            observation=observed,
            score=score(scenario.expect, observed, engine.kind),
            expected=expected,
        )

    async with contextlib.AsyncExitStack() as stack:
        if settings.redis_url is None:
            # Holds the embedded Valkey for the whole suite; each attempt's deps reuse it.
            await stack.enter_async_context(open_redis(settings))
        return list(
            await asyncio.gather(
                *(one(s, e, i) for s, e, i in attempts_of(scenarios, engines, repeat))
            )
        )
