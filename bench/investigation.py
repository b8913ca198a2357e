"""What one investigation costs: model requests, their bytes and cacheable prefix, Redis trips.

The demo investigation (the bad-deploy sandbox, the demo's alert) is driven by the real
Investigator (`open_deps`, `RunDriver.drive`, the real tools against the sandbox) with a
redis-server of its own. The model is the scripted Messages API (`tests/anthropic_server.py`)
replaying the recorded transcript `evals/scenarios/bad-deploy-errors/transcripts/good.yaml`:
three requests (the error ratio and the rollout history, the logs, then the rollback).

Per run it reports:
- each investigation request: its body bytes as the server received them, estimated tokens
  (bytes / 4, the bot's own estimate) and, from the second request on, the share of it that
  repeats the previous request's prefix. The prefix is taken in the order the API caches a
  prompt (tools, system, messages) with `cache_control` markers left out (they move to the
  newest block each turn, which the cache allows). `prefix` is all of the common prefix;
  `cached` only the part ending at one of the previous request's cache breakpoints, which is
  what prompt caching can serve. `raw` is the common prefix of the bodies byte for byte (the
  SDK writes `messages` before `system` and `tools`, so it is no measure of the cache).
  `reused` is the cached part as a share of the previous request: 100% means nothing the
  previous request cached was invalidated, and the rest of the new request is new content
  (the model's reply and the tool results), which no cache can serve.
- Redis: round trips, counted by a TCP relay between the bot and Redis (one round trip: the
  bytes a connection sends after its last answer), and commands (MONITOR on the bench's own
  server; commands run inside Lua scripts are not counted), per loop step (one engine turn)
  and by command. The trips are also split at the model requests (the relay's count as each
  request reaches the scripted API): before the first, between two (one loop step: its
  model reply and its tool round), after the last (the last reply, the proposal and the end
  of the drive). The steady state is the mean of the loop steps between two requests; the
  fixed cost of a drive is the rest (total - loop steps x steady state).

Every figure is deterministic (no timings): each run prints the same numbers, except that
the first run loads the Lua scripts into the fresh server.
Uses redis-server when installed, else an embedded Valkey.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.demo import DEMO_SCENARIO, demo_alert  # noqa: E402
from bot.deps import open_deps  # noqa: E402
from bot.evals.scenarios import load_transcripts  # noqa: E402
from bot.runs import start_run  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.anthropic_server import API_KEY, Exchange, ScriptedAnthropic, message  # noqa: E402
from tests.servers import redis_server  # noqa: E402
from tests.trip_relay import TripRelay  # noqa: E402
from tools.sandbox import load_scenario, run_sandbox  # noqa: E402

RUNS = 3
TRANSCRIPT = ROOT / "evals" / "scenarios" / "bad-deploy-errors" / "transcripts"
CHARS_PER_TOKEN = 4
PREFIX_TARGET = 0.90
TRIPS_TARGET = 2.0


# -- Redis: MONITOR (the round trips: `tests.trip_relay`) ----------------------------------
@dataclass
class Monitor:
    """Every command the server runs for the relay's connections (MONITOR), by window."""

    url: str
    relay: TripRelay
    seen: list[tuple[str, str]] = field(default_factory=list)  # (marker or "", command)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def _note(self, marker: str, command: str = "") -> None:
        async with self._changed:
            self.seen.append((marker, command))
            self._changed.notify_all()

    async def wait_for(self, marker: str) -> None:
        """Wait (at most 10 s) until MONITOR saw the marker."""
        async with asyncio.timeout(10), self._changed:
            await self._changed.wait_for(lambda: (marker, "") in self.seen)

    async def watch(self) -> None:
        """Read MONITOR until cancelled."""
        client = redis.from_url(self.url, decode_responses=True)
        async with client.monitor() as monitor:
            await self._note("ready")
            while True:
                info = await monitor.next_command()
                if info.get("client_type") == "lua":
                    continue
                command = str(info.get("command", ""))
                if command.startswith("ECHO bench-mark"):
                    await self._note(command.split()[-1])
                    continue
                port = int(str(info.get("client_port") or 0))
                if port in self.relay.ports:
                    await self._note("", command.split(" ", 1)[0].upper())

    async def mark(self, control: redis.Redis, name: str) -> None:
        """Mark a point in the command stream, and wait until MONITOR saw it."""
        await control.echo(f"bench-mark {name}")
        await self.wait_for(name)

    def between(self, start: str, end: str) -> Counter[str]:
        """The commands between two marks, by name."""
        names = [marker for marker, _ in self.seen]
        first, last = names.index(start), names.index(end)
        return Counter(cmd for marker, cmd in self.seen[first + 1 : last] if not marker)


# -- the requests' prefixes -----------------------------------------------------------------
def _raw(request_body: dict[str, Any]) -> bytes:
    """The body as the SDK serialised it (its encoder: compact, not ASCII-escaped)."""
    return json.dumps(request_body, ensure_ascii=False, separators=(",", ":")).encode()


def _dump(block: Any) -> bytes:
    return json.dumps(block, ensure_ascii=False, separators=(",", ":")).encode()


def cache_order(body: dict[str, Any]) -> tuple[bytes, list[int]]:
    """The prompt as the cache reads it (tools, system, messages; no cache_control), and
    the offsets where the request's cache breakpoints end."""
    out = bytearray()
    breakpoints: list[int] = []

    def add(block: Any) -> None:
        if not isinstance(block, dict):
            out.extend(_dump(block))
            return
        out.extend(_dump({k: v for k, v in block.items() if k != "cache_control"}))
        if "cache_control" in block:
            breakpoints.append(len(out))

    for tool in body.get("tools") or []:
        add(tool)
    system = body.get("system") or []
    for block in [{"type": "text", "text": system}] if isinstance(system, str) else system:
        add(block)
    for msg in body.get("messages") or []:
        out.extend(_dump(msg.get("role")))
        content = msg.get("content")
        for block in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            add(block)
    return bytes(out), breakpoints


def common(a: bytes, b: bytes) -> int:
    """The length of the common prefix of two byte strings."""
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on prefix equality: fast for long bodies
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class RequestFigures:
    """One investigation request."""

    bytes: int
    tokens: int
    raw_share: float | None = None
    prefix_share: float | None = None
    cached_share: float | None = None
    reused_share: float | None = None  # of the previous request's prompt


def request_figures(bodies: list[dict[str, Any]]) -> list[RequestFigures]:
    """Bytes, estimated tokens and prefix shares of each request against the one before."""
    figures: list[RequestFigures] = []
    for i, body in enumerate(bodies):
        raw = _raw(body)
        if i == 0:
            figures.append(RequestFigures(len(raw), len(raw) // CHARS_PER_TOKEN))
            continue
        before, (prompt, _) = _raw(bodies[i - 1]), cache_order(body)
        previous, previous_breaks = cache_order(bodies[i - 1])
        shared = common(previous, prompt)
        cached = max((p for p in previous_breaks if p <= shared), default=0)
        figures.append(
            RequestFigures(
                len(raw),
                len(raw) // CHARS_PER_TOKEN,
                raw_share=common(before, raw) / len(raw),
                prefix_share=shared / len(prompt),
                cached_share=cached / len(prompt),
                reused_share=cached / len(previous),
            )
        )
    return figures


# -- one run --------------------------------------------------------------------------------
@dataclass
class RunFigures:
    """What one investigation cost."""

    status: str
    requests: list[RequestFigures]
    fast_requests: int
    count_requests: int
    loop_steps: int
    written_steps: int  # transcript steps the drive wrote (the alert's was there before)
    trips: int
    trips_at_requests: list[int]  # the drive's trips when each model request arrived
    commands: Counter[str]
    body_mismatches: int

    def trip_segments(self) -> tuple[int, list[int], int]:
        """Trips before the first model request, between each two, and after the last."""
        at = self.trips_at_requests
        between = [b - a for a, b in itertools.pairwise(at)]
        return (at[0], between, self.trips - at[-1]) if at else (self.trips, [], 0)


def _script(relay: TripRelay, at_requests: list[int]) -> list[Exchange]:
    """The recorded replies; each request notes the relay's trip count as it arrives."""

    def note_trips(_: Any) -> None:
        at_requests.append(relay.trips)

    replies = load_transcripts(TRANSCRIPT)["good"].replies
    return [
        Exchange(
            message(r.content, stop_reason=r.stop_reason, usage=r.usage.model_dump()),
            expect=(note_trips,),
            note=f"recorded reply {i + 1}",
        )
        for i, r in enumerate(replies)
    ]


async def one_run(
    index: int, url: str, relay: TripRelay, monitor: Monitor, sandbox_url: str
) -> RunFigures:
    """Drive one demo investigation to its proposal and measure it."""
    at_requests: list[int] = []
    async with ScriptedAnthropic(_script(relay, at_requests)) as claude:
        values: dict[str, Any] = {
            "REDIS_URL": relay.url,
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": claude.url,
            "INCIDENT_BOT_KEY_PREFIX": f"bench:investigation:{index}:",
            "INCIDENT_BOT_LOG_LEVEL": "ERROR",
        }
        settings = Settings(**values).pointed_at_sandbox(sandbox_url)
        control = redis.from_url(url, decode_responses=True)
        async with open_deps(settings) as deps:
            run = await start_run(deps, demo_alert(sandbox_url), trigger="demo")
            await monitor.mark(control, f"start-{index}")
            started, steps_before = relay.trips, run.steps
            run = await deps.driver().drive(run.id)
            trips = relay.trips - started
            await monitor.mark(control, f"end-{index}")
        await control.aclose()
        mismatches = sum(
            1
            for r in claude.requests
            if len(_raw(r.body)) != int(r.headers.get("Content-Length", "-1"))
        )
    bodies = [r.body for r in claude.requests]
    return RunFigures(
        status=run.status.value,
        requests=request_figures(bodies),
        fast_requests=len(claude.fast_requests),
        count_requests=len(claude.count_requests),
        loop_steps=run.model_calls,
        written_steps=run.steps - steps_before,
        trips=trips,
        trips_at_requests=[n - started for n in at_requests],
        commands=monitor.between(f"start-{index}", f"end-{index}"),
        body_mismatches=mismatches,
    )


def _pct(share: float | None) -> str:
    return "     -" if share is None else f"{share * 100:5.1f}%"


def report(index: int, run: RunFigures) -> None:
    """Print one run's figures."""
    print(f"\nrun {index + 1}: {run.status}, {len(run.requests)} investigation requests")
    head = f"  {'request':>7} {'bytes':>7} {'~tokens':>8} {'prefix':>7} {'cached':>7} {'raw':>7}"
    print(f"{head} {'reused':>7}")
    for i, r in enumerate(run.requests):
        shares = f"{_pct(r.prefix_share):>7} {_pct(r.cached_share):>7} {_pct(r.raw_share):>7}"
        shares += f" {_pct(r.reused_share):>7}"
        print(f"  {i + 1:>7} {r.bytes:>7} {r.tokens:>8} {shares}")
    later = [r.cached_share for r in run.requests[1:] if r.cached_share is not None]
    worst = min(later) if later else None
    verdict = "ok" if worst is not None and worst >= PREFIX_TARGET else "MISSED"
    print(f"  cached share, worst from request 2: {_pct(worst)} (target >= 90%: {verdict})")
    extra = f"  fast-model requests {run.fast_requests}, count_tokens requests {run.count_requests}"
    print(
        extra
        + (
            f", {run.body_mismatches} bodies NOT re-serialised exactly"
            if run.body_mismatches
            else ""
        )
    )
    steps = max(run.loop_steps, 1)
    total = sum(run.commands.values())
    verdict = "ok" if run.trips / steps <= TRIPS_TARGET else "MISSED"
    print(
        f"  Redis: {run.trips} round trips, {total} commands over {run.loop_steps} loop steps "
        f"(engine turns), {run.written_steps} transcript steps written"
    )
    print(
        f"  round trips per loop step {run.trips / steps:5.1f} on average (target <= 2: "
        f"{verdict}); per transcript step {run.trips / max(run.written_steps, 1):4.1f}; "
        f"commands per loop step {total / steps:5.1f}"
    )
    before, between, after = run.trip_segments()
    steady = sum(between) / len(between) if between else float("nan")
    fixed = run.trips - run.loop_steps * steady
    print(
        f"  round trips before the first model request {before}, between two requests "
        f"{'/'.join(map(str, between)) or '-'}, after the last {after}"
    )
    steady_verdict = "ok" if steady <= TRIPS_TARGET else "MISSED"
    print(
        f"  steady state {steady:4.1f} per loop step (target <= 2: {steady_verdict}); "
        f"fixed {fixed:4.1f} per drive (= {run.trips} - {run.loop_steps} x {steady:.1f})"
    )
    print("  commands: " + ", ".join(f"{name} {n}" for name, n in run.commands.most_common()))


async def _measure(url: str) -> None:
    relay = TripRelay(url)
    monitor = Monitor(url=url, relay=relay)
    scenario = load_scenario(DEMO_SCENARIO)
    async with relay.running(), run_sandbox(scenario) as sandbox:
        watcher = asyncio.create_task(monitor.watch())
        try:
            await monitor.wait_for("ready")
            runs = [await one_run(i, url, relay, monitor, sandbox.url) for i in range(RUNS)]
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    print(f"the demo investigation ({DEMO_SCENARIO}), recorded transcript good.yaml, {RUNS} runs")
    print("deterministic: no timings; the same figures every run (run 1 loads the Lua scripts)")
    for i, run in enumerate(runs):
        report(i, run)


def main() -> None:
    """Run the benchmark against its own Redis server."""
    with tempfile.TemporaryDirectory() as data, redis_server(Path(data)) as url:
        asyncio.run(_measure(url))


if __name__ == "__main__":
    main()
