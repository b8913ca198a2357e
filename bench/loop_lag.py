"""A process under a loop-lag microscope, for bench/webhook.py.

    python bench/loop_lag.py OUT.json serve [--debug] [--profile FILE] [--unfrozen]
    python bench/loop_lag.py OUT.json bare PORT
    python bench/loop_lag.py OUT.json idle

`serve` runs `incident-bot serve` (settings from the environment, as the command does),
`bare` the baseline aiohttp handler, `idle` an empty loop (the machine's own noise: it
does nothing, so whatever delays it is the machine). Each samples its loop every 10 ms
with `bot.loop_lag.LoopLagMonitor` and records, per sample, how late it woke and how
much of the time since the previous sample its thread spent on a CPU: a late wake-up
with the thread on the CPU is the loop's own work (a slow callback, a collection), one
with the thread off it is the process waiting (for a CPU, or in a blocking call). Every
garbage collection is timed (`gc.callbacks`). `--debug` turns on asyncio's debug mode
with `slow_callback_duration` at 20 ms and records each slow callback; `--profile`
writes a cProfile of the whole process; `--unfrozen` gives the bot back its start-up heap
to collect (`gc.unfreeze()` once `serve` has frozen it: the bot as it was before
`bot.heap`). On SIGTERM everything goes to OUT.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import re
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.loop_lag import LoopLagMonitor

SAMPLE_SECONDS = 0.01
SLOW_CALLBACK_SECONDS = 0.02
LATE_SECONDS = 0.02  # a sample this late counts as a stall


class Recorder:
    """Lag samples, collections and slow callbacks, each with its `time.monotonic()`."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float, float]] = []  # t, lag, wall, cpu
        self.collections: list[tuple[float, int, float]] = []  # t, generation, seconds
        self.slow: list[tuple[float, str, float]] = []  # t, callback, seconds
        self._last = (time.monotonic(), time.thread_time())
        self._gc_started = 0.0
        self.unfrozen = False  # undo `serve`'s gc.freeze() as soon as it has happened

    def lag(self, lateness: float) -> None:
        """One monitor sample: its lateness, and wall and CPU time since the last one."""
        now = (time.monotonic(), time.thread_time())
        wall, cpu = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        self.samples.append((now[0], lateness, wall, cpu))
        if self.unfrozen and gc.get_freeze_count():
            gc.unfreeze()

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """`gc.callbacks` hook: time each collection."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            took = time.perf_counter() - self._gc_started
            self.collections.append((time.monotonic(), int(info["generation"]), took))

    def dump(self, path: Path) -> None:
        """Everything recorded, as JSON."""
        document = {"samples": self.samples, "collections": self.collections, "slow": self.slow}
        path.write_text(json.dumps(document))


class _SlowCallbacks(logging.Handler):
    """asyncio's debug-mode warning `Executing <handle> took N seconds`, recorded."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self._recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Executing") and isinstance(record.args, tuple):
            what, seconds = record.args
            self._recorder.slow.append((time.monotonic(), _callback_name(str(what)), seconds))


def _callback_name(handle: str) -> str:
    """A slow callback's description without addresses and task numbers; a task's step as
    its coroutine and where it stopped."""
    step = re.search(r"coro=<(\S+ running at \S+)>", handle)
    if step:
        handle = f"task {step.group(1)}"
    handle = re.sub(r" at 0x[0-9a-f]+", "", handle)
    handle = re.sub(r"Task-\d+", "Task", handle)
    handle = re.sub(r"/\S*/site-packages/", "", handle)
    return re.sub(r"\S*/(bot|tools|bench)/", r"\1/", handle)[:240]


async def _until_terminated() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def _bare(port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"outcome": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post("/webhooks/alertmanager", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await _until_terminated()
    finally:
        await runner.cleanup()


async def _serve() -> None:
    from bot.logs import configure_logging
    from bot.server import serve
    from bot.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    await serve(settings)


async def _observed(
    mode: str, port: int, recorder: Recorder, *, debug: bool, unfrozen: bool
) -> None:
    loop = asyncio.get_running_loop()
    if debug:
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
        asyncio_log = logging.getLogger("asyncio")
        asyncio_log.setLevel(logging.WARNING)
        asyncio_log.propagate = False
        asyncio_log.addHandler(_SlowCallbacks(recorder))
    recorder.unfrozen = unfrozen
    monitor = LoopLagMonitor(recorder.lag, interval=SAMPLE_SECONDS)
    monitor.start()
    try:
        if mode == "serve":
            await _serve()
        elif mode == "bare":
            await _bare(port)
        else:
            await _until_terminated()
    finally:
        await monitor.stop()


def main() -> None:
    """Run the process named on the command line until SIGTERM, then write what it saw."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("mode", choices=("serve", "bare", "idle"))
    parser.add_argument("port", type=int, nargs="?", default=0)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--unfrozen", action="store_true")
    args = parser.parse_args()
    recorder = Recorder()
    gc.callbacks.append(recorder.on_gc)
    profile = cProfile.Profile() if args.profile else None
    if profile is not None:
        profile.enable()
    try:
        asyncio.run(
            _observed(args.mode, args.port, recorder, debug=args.debug, unfrozen=args.unfrozen)
        )
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        recorder.dump(args.out)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(path: Path, start: float, end: float) -> dict[str, Any]:
    """The figures of the window [start, end] (`time.monotonic()`) of a recording."""
    document = json.loads(path.read_text())
    samples = [s for s in document["samples"] if start <= s[0] <= end]
    lags = [s[1] for s in samples]
    stalls = [s for s in samples if s[1] >= LATE_SECONDS]
    collections = [c for c in document["collections"] if start <= c[0] <= end]
    full = [c[2] for c in collections if c[1] == 2]
    slow: dict[str, list[float]] = {}
    for t, what, seconds in document["slow"]:
        if start <= t <= end:
            slow.setdefault(what, []).append(seconds)
    return {
        "samples": len(samples),
        "worst": [
            (round(s[0] - start, 2), round(s[1] * 1000, 1))
            for s in sorted(stalls, key=lambda s: -s[1])[:4]
        ],
        "lag_p50_ms": _pct(lags, 0.5) * 1000,
        "lag_p99_ms": _pct(lags, 0.99) * 1000,
        "lag_max_ms": max(lags, default=0.0) * 1000,
        "stalls": len(stalls),
        # Of the stalls' time, how much the thread spent off the CPU (waiting).
        "stall_off_cpu_share": (
            sum(s[2] - s[3] for s in stalls) / sum(s[2] for s in stalls) if stalls else 0.0
        ),
        "stalls_with_gen2": sum(
            1 for s in stalls if any(s[0] - s[2] <= c[0] <= s[0] and c[1] == 2 for c in collections)
        ),
        "collections": [sum(1 for c in collections if c[1] == g) for g in (0, 1, 2)],
        "gen2_max_ms": max(full, default=0.0) * 1000,
        "gen2_median_ms": statistics.median(full) * 1000 if full else 0.0,
        "gc_ms_per_s": sum(c[2] for c in collections) * 1000 / max(end - start, 1e-9),
        "slow_callbacks": sorted(
            ((what, len(times), max(times)) for what, times in slow.items()),
            key=lambda x: -x[1] * x[2],
        ),
    }


if __name__ == "__main__":
    main()
