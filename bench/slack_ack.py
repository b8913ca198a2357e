"""Slack click and command acks while intake is loaded, against an unloaded same-run baseline.

The real `incident-bot serve` (Bolt in HTTP mode, 4 workers, the runbook planner) talks
to the bad-deploy sandbox and to the local Slack (`tests/slack_server.py`), each in its
own process, on a redis-server of its own. `2 x --clicks` alerts of distinct groups are
posted and the bench waits until each run proposes a rollback (awaiting approval). Then
two phases of `--seconds` each, the same sends spread evenly over each:

  baseline  `--clicks` signed Approve clicks (one per run) and `--commands` signed
            `/incident list` / `/incident status RUN` commands, nothing else running
  loaded    the same on the other runs, while a load generator (its own process, open
            loop) posts `--rate` alerts/s to /webhooks/alertmanager: a new alert group
            per request (`--load groups`: a run created and queued per alert) or one
            group repeated (`--load repeat`: the dedup path, nothing queued)

Reported per phase: the ack latency (HTTP response time) of clicks and of commands,
p50/p99; click -> action start (the action record's `started_at` minus the click's send
time) p50/p99, waiting up to `--settle` seconds after the phase for the actions, and
the same wait in two parts at the run's `decision` audit event (the click handled and
recorded; the resume driven to the action's start); the
work queue's length after the phase (starts and resumes); the bot's event-loop lag p99 (the
`incident_bot_event_loop_lag_seconds` buckets, when the bot exports them); the rate the
load generator sent, the 202s per second it got while sending, its latencies (waiting
for one of its connections included) and what was unanswered 2 s after its last send;
the load average. Targets beside them: ack p99 <= 50 ms, click -> action start p99
<= 100 ms under 1,000 alerts/s. With few clicks p99 is the slowest click (nearest rank).
The runs share one service, so the bot runs with
`INCIDENT_BOT_MAX_INVESTIGATIONS_PER_SERVICE=8` (default 3) to propose them sooner.

With `--split` the alerts go to a second `serve` (`INCIDENT_BOT_WORKERS=0`,
`INCIDENT_BOT_SLACK_EVENTS=false`: intake only) on the same Redis, as the chart's
`intake.enabled` gives the webhooks replicas of their own;
Slack's requests and the drives stay on the first, whose event loop the flood no longer
shares.

    python bench/slack_ack.py [--clicks 20] [--commands 60] [--rate 1000]
                              [--seconds 10] [--settle 10] [--load groups|repeat] [--split]

The children run from this file: `slack_ack.py slack` (the local Slack) and
`slack_ack.py load URL RATE SECONDS MODE` (the load generator).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as redis
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.store import RunStore  # noqa: E402
from tests.processes import bot_env  # noqa: E402
from tests.replica_helpers import TOKEN, alert_body  # noqa: E402
from tests.servers import free_port, redis_server, wait_for_port  # noqa: E402
from tests.slack_helpers import APPROVER, POLICY, SHOP_CHANNEL  # noqa: E402
from tests.slack_server import (  # noqa: E402
    BOT_TOKEN,
    SIGNING_SECRET,
    Message,
    SlackServer,
    block_action,
    form,
    signed,
    slash_command,
)

PREFIX = "incident-bot:"
ACK_TARGET_MS = 50.0
ACTION_TARGET_MS = 100.0
WARMUP_SECONDS = 1.0  # the load runs this long before the loaded phase's first send
DRAIN_SECONDS = 2.0  # the load generator waits this long for answers after its last send
FORM = "application/x-www-form-urlencoded"


# -- the children ---------------------------------------------------------------------------
async def _slack_child() -> None:
    """The local Slack, plus `GET /proposals` on a second port: the proposal messages."""
    async with SlackServer() as slack:
        info = web.Application()

        async def proposals(_: web.Request) -> web.Response:
            found = [
                {"channel": m.channel, "ts": m.ts, "text": m.text, "value": m.button_value(a)}
                for m in list(slack.messages.values())
                for a in m.action_ids()
                if a == "approve"
            ]
            return web.json_response(found)

        info.router.add_get("/proposals", proposals)
        runner = web.AppRunner(info, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(json.dumps({"url": slack.url, "info": f"http://127.0.0.1:{port}"}), flush=True)
        await asyncio.Event().wait()


async def _load_child(url: str, rate: float, seconds: float, mode: str) -> None:
    """Post `rate` alerts/s for `seconds` (open loop: sends do not wait for answers);
    prints, as JSON, what it sent, how many got a 202 while it sent (per second), and
    the latency of those answered (waiting for one of its 256 connections included)."""
    template = json.loads((ROOT / "tests/fixtures/alertmanager/firing-single.json").read_text())
    tag = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    accepted_at: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def post(http: aiohttp.ClientSession, n: int) -> None:
        key = f"load-{tag}-{n}" if mode == "groups" else f"load-{tag}"
        body = json.dumps(dict(template, groupKey=key))
        started = time.monotonic()
        try:
            async with http.post(url, data=body, headers=headers) as r:
                await r.read()
                status = str(r.status)
        except aiohttp.ClientError as exc:
            status = type(exc).__name__
        latencies.append(time.monotonic() - started)
        statuses[status] = statuses.get(status, 0) + 1
        if status == "202":
            accepted_at.append(time.monotonic())

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks: set[asyncio.Task[None]] = set()
        begin = time.monotonic()
        total = int(rate * seconds)
        for n in range(total):
            delay = begin + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(post(http, n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        end = time.monotonic()
        _, unanswered = await asyncio.wait(list(tasks), timeout=DRAIN_SECONDS)
        for task in unanswered:
            task.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)
    latencies.sort()
    print(
        json.dumps(
            {
                "sent": total,
                "rate": total / (end - begin),
                "accepted_rate": sum(1 for t in accepted_at if t <= end) / (end - begin),
                "unanswered": len(unanswered),
                "statuses": statuses,
                "p50_ms": _pct(latencies, 50) * 1000,
                "p99_ms": _pct(latencies, 99) * 1000,
            }
        ),
        flush=True,
    )


# -- measuring ------------------------------------------------------------------------------
def _pct(values: list[float], pct: float) -> float:
    """The nearest-rank percentile of sorted `values` (nan when empty)."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(len(values) * pct / 100) - 1)]


@dataclass
class Proposal:
    """A proposal message in the local Slack: where it is and what its buttons name."""

    channel: str
    ts: str
    text: str
    value: str

    @property
    def run_id(self) -> str:
        return str(json.loads(self.value)["run"])

    @property
    def proposal_id(self) -> str:
        return str(json.loads(self.value)["proposal"])

    def click(self, slack_url: str) -> str:
        """The signed-to-be body of an Approve click by the policy's approver."""
        blocks = [{"type": "actions", "elements": [{"action_id": "approve", "value": self.value}]}]
        message = Message(
            channel=self.channel, ts=self.ts, thread_ts=None, text=self.text, blocks=blocks
        )
        return block_action(
            message, "approve", user=APPROVER, response_url=f"{slack_url}/respond/{uuid.uuid4()}"
        )


@dataclass
class Phase:
    """One phase's figures."""

    name: str
    clicks: list[tuple[float, int]] = field(default_factory=list)  # (seconds, status)
    commands: list[tuple[float, int]] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)  # run id -> click's time.time()
    to_action: list[float] = field(default_factory=list)
    # The same waits in two parts, at the run's `decision` audit event: the click handled
    # and recorded, then the resume driven to the action's start.
    to_decision: list[float] = field(default_factory=list)
    decision_to_action: list[float] = field(default_factory=list)
    queue: int = 0
    lag_p99_ms: float | None = None
    load: dict[str, Any] | None = None
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)


async def _send(http: aiohttp.ClientSession, url: str, body: str) -> tuple[float, int]:
    headers = {"Content-Type": FORM, **signed(body)}
    started = time.monotonic()
    async with http.post(url, data=body, headers=headers) as r:
        await r.read()
        return time.monotonic() - started, r.status


async def _phase(
    phase: Phase,
    http: aiohttp.ClientSession,
    bot_url: str,
    slack_url: str,
    proposals: list[Proposal],
    commands: int,
    seconds: float,
) -> None:
    """Clicks and commands spread evenly over `seconds`, each sent on time (open loop)."""
    url = f"{bot_url}/slack/events"
    sends: list[tuple[float, Proposal | str]] = [
        (seconds * (i + 0.5) / len(proposals), p) for i, p in enumerate(proposals)
    ]
    for i in range(commands):
        text = "list" if i % 2 == 0 else f"status {proposals[i % len(proposals)].run_id}"
        sends.append((seconds * (i + 0.25) / max(commands, 1), text))
    sends.sort(key=lambda s: s[0])

    async def one(what: Proposal | str) -> None:
        if isinstance(what, Proposal):
            body = what.click(slack_url)
            phase.sent_at[what.run_id] = time.time()
            phase.clicks.append(await _send(http, url, body))
        else:
            fields = slash_command(
                what,
                user=APPROVER,
                channel=SHOP_CHANNEL,
                response_url=f"{slack_url}/respond/{uuid.uuid4()}",
            )
            phase.commands.append(await _send(http, url, form(fields)))

    begin = time.monotonic()
    tasks = []
    for at, what in sends:
        delay = begin + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(what)))
    await asyncio.gather(*tasks)


async def _actions_started(
    store: RunStore, phase: Phase, proposals: list[Proposal], settle: float
) -> None:
    """Each click's time to its action record's `started_at`, for the actions that
    started within `settle` seconds of the phase's end."""
    deadline = time.monotonic() + settle
    waiting = {p.run_id: p for p in proposals if p.run_id in phase.sent_at}
    while waiting and time.monotonic() < deadline:
        for run_id, p in list(waiting.items()):
            record = await store.action_record(run_id, p.proposal_id)
            if record is not None:
                phase.to_action.append(record.started_at.timestamp() - phase.sent_at[run_id])
                await _split_at_decision(store, phase, run_id, record.started_at.timestamp())
                del waiting[run_id]
        if waiting:
            await asyncio.sleep(0.05)


async def _split_at_decision(store: RunStore, phase: Phase, run_id: str, started: float) -> None:
    """Split a click's wait for its action at the decision's audit event (its stream id:
    Redis's clock, on this machine the same as the bench's)."""
    decided = [e.at.timestamp() for e in await store.read_audit(run_id) if e.event == "decision"]
    if decided:
        phase.to_decision.append(decided[-1] - phase.sent_at[run_id])
        phase.decision_to_action.append(started - decided[-1])


_BUCKET = re.compile(r'^incident_bot_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', re.M)


async def _lag_buckets(http: aiohttp.ClientSession, bot_url: str) -> dict[float, float]:
    """The bot's loop-lag histogram now: upper bound -> cumulative count (empty if absent)."""
    async with http.get(f"{bot_url}/metrics") as r:
        text = await r.text()
    return {float(le): float(count) for le, count in _BUCKET.findall(text)}


def _lag_p99_ms(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The p99 of the lag observed between two scrapes, as its bucket's upper bound."""
    if not after:
        return None
    delta = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = delta.get(math.inf, 0.0)
    if total <= 0:
        return None
    return next(le for le, count in delta.items() if count >= 0.99 * total) * 1000


# -- the processes ----------------------------------------------------------------------------
async def _until(probe: Callable[[], Awaitable[bool]], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {within:.0f} s")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _processes(data: Path, *, split: bool) -> AsyncIterator[tuple[Urls, RunStore]]:
    """Redis, the sandbox, the local Slack and `serve` (and, `split`, an intake-only
    `serve`): their URLs and a store reading the bot's Redis."""
    redis_stack = contextlib.ExitStack()
    redis_url = redis_stack.enter_context(redis_server(data))
    children: list[asyncio.subprocess.Process] = []
    client = redis.from_url(redis_url, decode_responses=True)
    try:
        # bad-deploy recovering at once after a rollback: verifying holds no worker long.
        scenario = yaml.safe_load((ROOT / "tools/sandbox/scenarios/bad-deploy.yaml").read_text())
        (data / "scenario.yaml").write_text(yaml.safe_dump(scenario | {"recovery_seconds": 0}))
        sandbox_port = free_port()
        children.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tools.sandbox",
                "--scenario",
                str(data / "scenario.yaml"),
                "--port",
                str(sandbox_port),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=(data / "sandbox.err").open("wb"),
            )
        )
        slack = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "slack",
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(data / "slack.err").open("wb"),
        )
        children.append(slack)
        assert slack.stdout is not None
        urls = json.loads(await asyncio.wait_for(slack.stdout.readline(), 30))
        policy = data / "policy"
        policy.mkdir()
        (policy / "policy.yaml").write_text(POLICY)
        shutil.copytree(ROOT / "policies" / "runbooks", policy / "runbooks")
        port = free_port()
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        env = bot_env(
            REDIS_URL=redis_url,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=f"{urls['url']}/api/",
            INCIDENT_BOT_POLICY_DIR=str(policy),
            INCIDENT_BOT_WEBHOOK_TOKEN=TOKEN,
            INCIDENT_BOT_HOST="127.0.0.1",
            INCIDENT_BOT_PORT=str(port),
            INCIDENT_BOT_SLACK_MIN_INTERVAL="0.05",
            INCIDENT_BOT_VERIFY_INTERVAL="0.2",
            INCIDENT_BOT_MAX_INVESTIGATIONS_PER_SERVICE="8",  # the runs share one service
            PROMETHEUS_URL=sandbox,
            KUBERNETES_URL=sandbox,
        )
        wait_for_port(sandbox_port, timeout=30)
        bot_url = await _serve(children, data, env, "serve")
        intake_url = bot_url
        if split:
            intake_env = env | {
                "INCIDENT_BOT_PORT": str(free_port()),
                "INCIDENT_BOT_WORKERS": "0",
                "INCIDENT_BOT_SLACK_EVENTS": "false",
            }
            intake_url = await _serve(children, data, intake_env, "intake")
        yield (
            Urls(bot=bot_url, intake=intake_url, slack=urls["url"], info=urls["info"]),
            RunStore(client, prefix=PREFIX, retention_seconds=3600),
        )
    finally:
        for child in children:
            if child.returncode is None:
                child.terminate()
        for child in children:
            try:
                await asyncio.wait_for(child.wait(), 10)
            except TimeoutError:
                child.kill()
                await child.wait()
        await client.aclose()
        redis_stack.close()


async def _proposals(
    http: aiohttp.ClientSession, bot_url: str, info_url: str, count: int, within: float
) -> list[Proposal]:
    """Post `count` alerts of distinct groups; wait until each run's proposal is posted
    (the run is checkpointed `awaiting_approval` before its message is)."""
    for n in range(count):
        async with http.post(
            f"{bot_url}/webhooks/alertmanager",
            json=alert_body(n),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as r:
            if r.status != 202:
                raise RuntimeError(f"alert {n}: HTTP {r.status}: {await r.text()}")
    found: list[Proposal] = []

    async def posted() -> bool:
        async with http.get(f"{info_url}/proposals") as r:
            found[:] = [Proposal(**p) for p in await r.json()]
        return len(found) >= count

    await _until(posted, f"{count} proposals", within)
    return found


# -- the report -------------------------------------------------------------------------------
def _ms(values: list[float], pct: float) -> str:
    value = _pct(sorted(values), pct)
    if math.isinf(value):
        return "never"
    return "-" if math.isnan(value) else f"{value * 1000:.1f}"


def _print_load(load: dict[str, Any]) -> None:
    others = {status: n for status, n in sorted(load["statuses"].items()) if status != "202"}
    failed = f"{sum(others.values())}" + (
        f" ({', '.join(f'{status}: {n}' for status, n in others.items())})" if others else ""
    )
    print(
        f"  intake: sent {load['rate']:.0f}/s, answered 202 while sending "
        f"{load['accepted_rate']:.0f}/s, p50 {load['p50_ms']:.1f} ms, "
        f"p99 {load['p99_ms']:.1f} ms (the generator's connection queue included), "
        f"non-202 {failed}, unanswered {DRAIN_SECONDS:g} s after the last send "
        f"{load['unanswered']}"
    )


def _print(phases: list[Phase], args: argparse.Namespace) -> None:
    print(
        f"slack_ack: {args.clicks} Approve clicks and {args.commands} commands per phase over "
        f"{args.seconds:g} s; loaded phase: {args.rate:g} alerts/s ({args.load}"
        f"{', to an intake-only serve' if args.split else ''})"
    )
    print(
        f"{'phase':<9} {'clicks':>6} {'ack p50':>8} {'ack p99':>8} | {'cmds':>4} {'p50':>6} "
        f"{'p99':>6} | {'acted':>6} {'->act p50':>9} {'p99':>7} | {'queue':>6} {'lag p99':>7} | "
        "load avg"
    )
    for p in phases:
        acks = [s for s, _ in p.clicks]
        cmds = [s for s, _ in p.commands]
        bad = sum(1 for _, status in p.clicks + p.commands if not 200 <= status < 300)
        acted = f"{len(p.to_action)}/{len(p.clicks)}"
        lag = "-" if p.lag_p99_ms is None else f"<={p.lag_p99_ms:g}"
        # Actions not started within --settle count as slower than every started one.
        waits = p.to_action + [math.inf] * (len(p.clicks) - len(p.to_action))
        print(
            f"{p.name:<9} {len(acks):>6} {_ms(acks, 50):>8} {_ms(acks, 99):>8} | "
            f"{len(cmds):>4} {_ms(cmds, 50):>6} {_ms(cmds, 99):>6} | {acted:>6} "
            f"{_ms(waits, 50):>9} {_ms(waits, 99):>7} | {p.queue:>6} {lag:>7} | "
            + " ".join(f"{v:.2f}" for v in p.loadavg)
        )
        if p.to_decision:
            print(
                f"  {p.name}: click -> decision recorded p50 {_ms(p.to_decision, 50)} p99 "
                f"{_ms(p.to_decision, 99)}; decision -> action start p50 "
                f"{_ms(p.decision_to_action, 50)} p99 {_ms(p.decision_to_action, 99)} (ms)"
            )
        if bad:
            print(f"  {p.name}: {bad} Slack requests answered outside 2xx")
        if p.load:
            _print_load(p.load)
    base, loaded = phases
    ratios: list[tuple[str, Callable[[Phase], list[float]]]] = [
        ("click ack p99", lambda p: [s for s, _ in p.clicks]),
        ("command ack p99", lambda p: [s for s, _ in p.commands]),
    ]
    if all(len(p.to_action) == len(p.clicks) for p in phases):
        ratios.append(("click -> action start p99", lambda p: p.to_action))
    for what, pick in ratios:
        b, lo = _pct(sorted(pick(base)), 99), _pct(sorted(pick(loaded)), 99)
        if not (math.isnan(b) or math.isnan(lo)) and b > 0:
            print(f"loaded / baseline, {what}: {lo / b:.1f}x")
    missing = len(loaded.clicks) - len(loaded.to_action)
    if missing:
        print(
            f"loaded: {missing} actions had not started {args.settle:g} s after the phase "
            "(shown as never)"
        )
    print(
        f"targets under load: click ack p99 <= {ACK_TARGET_MS:.0f} ms, "
        f"click -> action start p99 <= {ACTION_TARGET_MS:.0f} ms (ms above; p99 = nearest rank)"
    )


# -- the run --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Urls:
    """Where the bench's processes listen."""

    bot: str  # Slack's requests (and the drives)
    intake: str  # the load generator's alerts: `bot`, or the intake-only serve (--split)
    slack: str
    info: str  # the local Slack's proposals endpoint


async def _serve(
    children: list[asyncio.subprocess.Process], data: Path, env: dict[str, str], name: str
) -> str:
    """Start `incident-bot serve` with `env` (logs in `data/NAME.*`); its URL once ready."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        cwd=data,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=(data / f"{name}.out").open("wb"),
        stderr=(data / f"{name}.err").open("wb"),
    )
    children.append(child)
    url = f"http://127.0.0.1:{env['INCIDENT_BOT_PORT']}"

    async def ready() -> bool:
        if child.returncode is not None:
            err = (data / f"{name}.err").read_text()[-2000:]
            raise RuntimeError(f"{name} exited {child.returncode}: {err}")
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await _until(ready, f"{name} ready", 60)
    return url


async def _measure(
    name: str,
    http: aiohttp.ClientSession,
    urls: Urls,
    store: RunStore,
    proposals: list[Proposal],
    args: argparse.Namespace,
) -> Phase:
    """One phase: the sends (under the load generator when `name` is "loaded"), then the
    wait for the clicks' actions."""
    bot_url, slack_url = urls.bot, urls.slack
    phase = Phase(name)
    load = None
    if name == "loaded":
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "load",
            f"{urls.intake}/webhooks/alertmanager",
            str(args.rate),
            str(args.seconds + 2 * WARMUP_SECONDS),
            args.load,
            stdout=subprocess.PIPE,
        )
        await asyncio.sleep(WARMUP_SECONDS)  # the intake reaches its rate before the sends
    before = await _lag_buckets(http, bot_url)
    await _phase(phase, http, bot_url, slack_url, proposals, args.commands, args.seconds)
    phase.lag_p99_ms = _lag_p99_ms(before, await _lag_buckets(http, bot_url))
    phase.loadavg = os.getloadavg()
    if load is not None:
        out, _ = await load.communicate()
        phase.load = json.loads(out)
    await _actions_started(store, phase, proposals, args.settle)
    phase.queue = sum([await store.redis.xlen(f"{PREFIX}{k}") for k in ("queue", "queue:resume")])
    return phase


async def _run(args: argparse.Namespace) -> list[Phase]:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            _processes(Path(tmp), split=args.split) as (urls, store),
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        ):
            started = time.monotonic()
            found = await _proposals(http, urls.bot, urls.info, 2 * args.clicks, within=120)
            print(f"{len(found)} runs awaiting approval after {time.monotonic() - started:.1f} s")
            base = await _measure("baseline", http, urls, store, found[: args.clicks], args)
            loaded = await _measure("loaded", http, urls, store, found[args.clicks :], args)
            return [base, loaded]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--clicks", type=int, default=20, help="Approve clicks per phase (20)")
    parser.add_argument("--commands", type=int, default=60, help="slash commands per phase (60)")
    parser.add_argument("--rate", type=float, default=1000, help="alerts/s when loaded (1000)")
    parser.add_argument("--seconds", type=float, default=10, help="length of a phase (10)")
    parser.add_argument(
        "--settle", type=float, default=10, help="wait for the actions after a phase (10)"
    )
    parser.add_argument(
        "--load",
        choices=("groups", "repeat"),
        default="groups",
        help="a new alert group per request (groups) or one group repeated",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="the alerts to a second, intake-only serve (no workers, no Slack events)",
    )
    args = parser.parse_args()
    if args.clicks < 1 or args.commands < 0 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--clicks must be >= 1, --commands >= 0, --rate and --seconds > 0")
    return args


def main() -> None:
    """The bench, or one of its children (`slack`, `load URL RATE SECONDS MODE`)."""
    match sys.argv[1:]:
        case ["slack"]:
            asyncio.run(_slack_child())
        case ["load", url, rate, seconds, mode]:
            asyncio.run(_load_child(url, float(rate), float(seconds), mode))
        case _:
            args = _args()
            _print(asyncio.run(_run(args)), args)


if __name__ == "__main__":
    main()
