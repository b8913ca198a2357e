"""Every multi-key script and transaction the bot issues touches keys of one hash slot,
so that it runs on a Redis Cluster (which refuses CROSSSLOT).

The flows run against a single real Redis watched with `MONITOR`; the server itself
names each command's keys (`COMMAND GETKEYS`) and `key_slot` says their slots. Every
Lua script in `bot/` (found by its `register_script` call) that reads more than
`KEYS[1]` must have been seen, so a new multi-key script fails here until a flow below
issues it, and then fails if its keys span slots (unless it is one of `SINGLE_SERVER`).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio as redis
from redis.crc import key_slot

from bot.dedup import AlertGroups
from bot.deps import Deps, open_deps
from bot.models import Decision, RunStatus, Usage
from bot.runs import record_decision, start_run
from bot.settings import Settings
from bot.slack.deliveries import Deliveries
from bot.slack.refs import MessageRefs
from bot.spend import DailySpend
from bot.sweeper import Sweeper
from tests.factories import alert
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

BOT = Path(__file__).resolve().parent.parent / "bot"
_LINE = re.compile(r"^\S+ \[\d+ (?P<client>[^\]]+)\] (?P<args>.*)$")
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SCRIPTED = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}
# Scripts sent only to a single server (a cluster takes another path, which
# tests/test_redis_cluster.py runs): their keys may span slots.
SINGLE_SERVER = {"store.py:_CLAIM_CREATE"}


@dataclass
class Watched:
    """What MONITOR saw: scripts and transactions (as command lists), other commands."""

    scripts: list[list[str]] = field(default_factory=list)
    transactions: list[list[list[str]]] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)
    _open: dict[str, list[list[str]]] = field(default_factory=dict)

    def add(self, client: str, args: list[str]) -> None:
        name = args[0].upper()
        if name == "MULTI":
            self._open[client] = []
        elif name in ("EXEC", "DISCARD"):
            done = self._open.pop(client, [])
            if name == "EXEC":
                self.transactions.append(done)
        elif client in self._open:
            self._open[client].append(args)
        elif name in _SCRIPTED:
            self.scripts.append(args)
        else:
            self.commands.append(args)


def _unescape(arg: str) -> str:
    return re.sub(r"\\(.)", r"\1", arg)


@pytest.fixture
async def watched(redis_url: str) -> AsyncIterator[Watched]:
    """Every command the server executes while the test runs."""
    parts = urlsplit(redis_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(b"MONITOR\r\n")
    assert await reader.readline() == b"+OK\r\n"
    seen = Watched()

    async def read() -> None:
        while line := await reader.readline():
            found = _LINE.match(line.decode(errors="replace").removeprefix("+").rstrip("\r\n"))
            if found:
                seen.add(found["client"], [_unescape(a) for a in _ARG.findall(found["args"])])

    task = asyncio.create_task(read())
    yield seen
    writer.close()
    await writer.wait_closed()
    task.cancel()


def multi_key_scripts() -> dict[str, str]:
    """sha1 -> `file:name` of every Lua script `bot/` registers that uses keys past KEYS[1]."""
    found = {}
    for path in BOT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        sources: dict[str, str] = {}
        for node in tree.body:  # in order: a script may be built from the ones above it
            if isinstance(node, ast.Assign) and (lua := _text(node.value, sources)) is not None:
                sources.update({t.id: lua for t in node.targets if isinstance(t, ast.Name)})
        for call in ast.walk(tree):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "register_script"
            ):
                continue
            [arg] = call.args
            assert isinstance(arg, ast.Name), f"{path}: register_script of a non-constant"
            lua = sources[arg.id]
            if "#KEYS" in lua or any(int(n) > 1 for n in re.findall(r"KEYS\[(\d+)\]", lua)):
                found[hashlib.sha1(lua.encode(), usedforsecurity=False).hexdigest()] = (
                    f"{path.name}:{arg.id}"
                )
    return found


def _text(value: ast.expr, known: dict[str, str]) -> str | None:
    """A module constant's text: a string, or strings and earlier constants joined by +."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value
    if isinstance(value, ast.Name):
        return known.get(value.id)
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
        left, right = _text(value.left, known), _text(value.right, known)
        return None if left is None or right is None else left + right
    return None


def test_the_static_scan_finds_the_known_multi_key_scripts() -> None:
    names = set(multi_key_scripts().values())
    assert {"store.py:_CHECKPOINT", "store.py:_DECIDE", "queue.py:_TAKE_SLOTS"} <= names
    assert {"store.py:_CREATE", *SINGLE_SERVER} <= names


async def _flows(deps: Deps) -> None:
    """Everything that issues a multi-key script or a transaction, as the bot runs it."""
    await deps.queue.ensure_group()
    groups = AlertGroups(deps, deps.queue)
    admitted = await groups.admit([alert(severity="critical")])
    assert admitted.run_id is not None
    await groups.admit([alert(severity="critical")])  # a repeat: folded in
    await start_run(deps, alert(alertname="Other"), trigger="cli")  # no group to claim
    run = await deps.driver().drive(admitted.run_id)
    assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
    decision = Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve")
    await record_decision(deps, decision, settles_at=1)
    assert (await deps.driver().drive(run.id)).status is RunStatus.RESOLVED
    assert await deps.queue.take_slots(
        run.id, service="checkout", global_limit=2, service_limit=1, ttl=5
    )
    await deps.queue.ack(await deps.queue.enqueue(run.id, "resume"))
    await Sweeper(deps, interval_seconds=0.2).sweep()
    await DailySpend(deps.store.redis, prefix=deps.settings.key_prefix).add(
        Usage(input_tokens=10, output_tokens=5), 0.01
    )
    refs = MessageRefs(deps.store.redis, prefix=deps.settings.key_prefix, retention_seconds=60)
    assert (await refs.claim(run.id, "root", "me")).mine
    await refs.posted(run.id, "root", "1.0")
    await refs.mark(run.id, "escalated", "me")
    await refs.add_progress(run.id, ["a line"], keep=5)

    async def handled() -> None:
        pass

    deliveries = Deliveries(deps.store.redis, prefix=deps.settings.key_prefix)
    assert await deliveries.handle_event("Ev1", handled) == "handled"


async def test_every_multi_key_script_and_transaction_uses_one_hash_slot(
    redis_url: str, sandbox: RunningSandbox, watched: Watched
) -> None:
    env = {"REDIS_URL": redis_url, "PROMETHEUS_URL": sandbox.url, "KUBERNETES_URL": sandbox.url}
    settings = Settings.model_validate(env | {"INCIDENT_BOT_VERIFY_INTERVAL": 0.05})
    async with open_deps(settings) as deps:
        await _flows(deps)
    # A copy: the probe's own commands below reach the monitor too.
    scripts, transactions = list(watched.scripts), list(watched.transactions)
    commands = list(watched.commands)
    expected = multi_key_scripts()
    probe = redis.from_url(redis_url, decode_responses=True)
    seen_scripts: set[str] = set()
    crossing: list[str] = []

    async def slots_of(args: list[str]) -> set[int]:
        try:
            keys = await probe.command_getkeys(*args)
        except redis.ResponseError:  # a command without keys
            return set()
        return {key_slot(str(k).encode()) for k in keys}

    try:
        for args in scripts:
            if args[0].upper().startswith("EVALSHA"):
                seen_scripts.add(args[1])
            if expected.get(args[1]) in SINGLE_SERVER:
                continue
            if len(await slots_of(args)) > 1:
                crossing.append(" ".join(args[:8]))
        for transaction in transactions:
            slots = set().union(*[await slots_of(a) for a in transaction])
            if len(slots) > 1:
                crossing.append("MULTI " + "; ".join(" ".join(a[:2]) for a in transaction))
        for args in commands:
            if len(await slots_of(args)) > 1:
                crossing.append(" ".join(args[:4]))
    finally:
        await probe.aclose()
    assert scripts and transactions  # the monitor saw the flows
    assert crossing == [], "keys of more than one hash slot"
    unexercised = {name for sha, name in expected.items() if sha not in seen_scripts}
    assert unexercised == set(), "multi-key scripts no flow here issues: add them to _flows"
