"""Real Prometheus and Alertmanager on loopback for end-to-end tests, and a webhook relay.

Each server runs from its Debian package's binary on a free 127.0.0.1 port with its own
storage under a temporary directory, and with the fast settings of
`tests/fixtures/README.md`: rules evaluated every second and resent after 1 s; groups
waited 1 s, flushed every 2 s and repeated every 4 s; no cluster gossip port. A server is
ready when its `/-/ready` answers 200, and is terminated when its context ends.

`WebhookRelay` sits between Alertmanager and the bot: it forwards every delivery
unchanged (body and headers, the bearer token included) and records what was posted and
what the bot answered, so a test knows exactly which notifications Alertmanager sent.
`running_bot` runs `incident-bot serve` as a real subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import aiohttp
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import eventually, start_bot
from tests.servers import free_port

INSTALL_HINT = "install them with `bash scripts/install-system-packages.sh` (as root, needs apt)"
LOOPBACK = "127.0.0.1"
# Alertmanager's routing timers: first notification of a group, changes, repeats.
GROUP_WAIT = "1s"
GROUP_INTERVAL = "2s"
REPEAT_INTERVAL = "4s"
_LISTENING = "incident-bot listening on "  # serve prints this and its URL when ready


class MissingServer(RuntimeError):
    """A server binary the end-to-end tests need is not installed."""


def find_binary(*names: str) -> str:
    """The path of the first of `names` on PATH; `MissingServer` names them all if none is."""
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    raise MissingServer(f"none of {', '.join(names)} is on PATH; {INSTALL_HINT}")


@dataclass(frozen=True, kw_only=True)
class AlertRule:
    """One Prometheus alerting rule (fires as soon as `expr` returns series)."""

    alert: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def to_yaml(self) -> dict[str, Any]:
        """The rule as it stands in a rule file."""
        return {
            "alert": self.alert,
            "expr": self.expr,
            "labels": self.labels,
            "annotations": self.annotations,
        }


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a Prometheus text exposition, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric_sum(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> float:
    """The sum of every sample called `name`, whatever its labels."""
    return sum(value for (sample, _), value in samples.items() if sample == name)


async def fetch_metrics(
    http: aiohttp.ClientSession, url: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Scrape `url` (a `/metrics` endpoint) once."""
    async with http.get(url) as response:
        response.raise_for_status()
        return parse_metrics(await response.text())


# -- processes -----------------------------------------------------------------------------
def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    """Write `document` to `path` as YAML, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def _log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(no output)"


@dataclass(kw_only=True)
class ServerProcess:
    """A server subprocess with its output in a log file."""

    name: str
    url: str
    process: asyncio.subprocess.Process
    log_path: Path

    def describe(self) -> str:
        """The server's name, URL and the end of its log, for failure messages."""
        return f"{self.name} at {self.url}:\n{_log_tail(self.log_path)}"

    async def wait_ready(self, http: aiohttp.ClientSession, within: float = 20) -> None:
        """Wait until `/-/ready` answers 200; fail at once if the process exits."""

        async def ready() -> bool | None:
            if self.process.returncode is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}: {self.describe()}"
                )
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/-/ready") as response:
                    if response.status == 200:
                        return True
            return None

        try:
            await eventually(ready, within=within)
        except TimeoutError as exc:
            raise TimeoutError(
                f"{self.name} not ready within {within}s: {self.describe()}"
            ) from exc

    async def stop(self, within: float = 10) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `within` seconds."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@contextlib.asynccontextmanager
async def _server(
    name: str, binary: str, args: Sequence[str], *, port: int, workdir: Path
) -> AsyncIterator[ServerProcess]:
    log_path = workdir / f"{name}.log"
    log = _open_log(log_path)
    try:
        process = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=workdir,
        )
        server = ServerProcess(
            name=name, url=f"http://{LOOPBACK}:{port}", process=process, log_path=log_path
        )
        try:
            yield server
        finally:
            await server.stop()
    finally:
        log.close()


# -- Alertmanager --------------------------------------------------------------------------
@dataclass(kw_only=True)
class Alertmanager:
    """A running Alertmanager that sends every group to one webhook."""

    server: ServerProcess
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        """Its base URL."""
        return self.server.url

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Its own `/metrics`."""
        return await fetch_metrics(self.http, f"{self.url}/metrics")


def alertmanager_config(*, webhook_url: str, bearer_token: str) -> dict[str, Any]:
    """One route grouped by alert name and service, to a webhook with a bearer token."""
    return {
        "route": {
            "receiver": "incident-bot",
            "group_by": ["alertname", "service"],
            "group_wait": GROUP_WAIT,
            "group_interval": GROUP_INTERVAL,
            "repeat_interval": REPEAT_INTERVAL,
        },
        "receivers": [
            {
                "name": "incident-bot",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials": bearer_token}
                        },
                    }
                ],
            }
        ],
    }


@contextlib.asynccontextmanager
async def run_alertmanager(
    http: aiohttp.ClientSession, *, workdir: Path, webhook_url: str, bearer_token: str
) -> AsyncIterator[Alertmanager]:
    """Start Alertmanager in `workdir`, wait until it is ready, stop it afterwards."""
    binary = find_binary("prometheus-alertmanager", "alertmanager")
    config = write_yaml(
        workdir / "alertmanager.yml",
        alertmanager_config(webhook_url=webhook_url, bearer_token=bearer_token),
    )
    port = free_port()
    args = [
        f"--config.file={config}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    async with _server("alertmanager", binary, args, port=port, workdir=workdir) as server:
        await server.wait_ready(http)
        yield Alertmanager(server=server, http=http)


# -- Prometheus ----------------------------------------------------------------------------
@dataclass(kw_only=True)
class Prometheus:
    """A running Prometheus whose alerting rules a test rewrites and reloads."""

    server: ServerProcess
    http: aiohttp.ClientSession
    rule_file: Path

    @property
    def url(self) -> str:
        """Its base URL."""
        return self.server.url

    async def set_rules(self, rules: Iterable[AlertRule]) -> None:
        """Replace the alerting rules and reload the configuration (`POST /-/reload`)."""
        write_rules(self.rule_file, rules)
        async with self.http.post(f"{self.url}/-/reload") as response:
            if response.status != 200:
                raise RuntimeError(f"reload failed: {response.status} {await response.text()}")

    async def query(self, expr: str) -> dict[frozenset[tuple[str, str]], float]:
        """An instant query through the HTTP API: each series' labels and value."""
        async with self.http.get(f"{self.url}/api/v1/query", params={"query": expr}) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return {
            frozenset(item["metric"].items()): float(item["value"][1])
            for item in body["data"]["result"]
        }


def write_rules(path: Path, rules: Iterable[AlertRule]) -> Path:
    """Write a rule file with one group evaluated every second."""
    group = {"name": "e2e", "interval": "1s", "rules": [r.to_yaml() for r in rules]}
    return write_yaml(path, {"groups": [group]})


def prometheus_config(
    *, rule_file: Path, alertmanager: str, scrape_targets: dict[str, str]
) -> dict[str, Any]:
    """Alerts to `alertmanager` (host:port); one 1 s scrape job per `job: host:port`."""
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rule_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {
                "job_name": job,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [target]}],
            }
            for job, target in scrape_targets.items()
        ],
    }


@contextlib.asynccontextmanager
async def run_prometheus(
    http: aiohttp.ClientSession,
    *,
    workdir: Path,
    alertmanager: str,
    rules: Iterable[AlertRule],
    scrape_targets: dict[str, str],
) -> AsyncIterator[Prometheus]:
    """Start Prometheus in `workdir` with `rules`, wait until ready, stop it afterwards."""
    binary = find_binary("prometheus")
    rule_file = write_rules(workdir / "rules.yml", rules)
    config = write_yaml(
        workdir / "prometheus.yml",
        prometheus_config(
            rule_file=rule_file, alertmanager=alertmanager, scrape_targets=scrape_targets
        ),
    )
    port = free_port()
    args = [
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--web.enable-lifecycle",
        "--rules.alert.resend-delay=1s",
        "--log.level=warn",
    ]
    async with _server("prometheus", binary, args, port=port, workdir=workdir) as server:
        await server.wait_ready(http)
        yield Prometheus(server=server, http=http, rule_file=rule_file)


# -- the relay -----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One webhook request Alertmanager made, and the bot's answer."""

    group_key: str
    status: str
    fingerprints: tuple[str, ...]
    authorization: str
    answer: int
    reply: str

    @property
    def accepted(self) -> bool:
        """True when the bot answered 2xx (Alertmanager will not retry it)."""
        return 200 <= self.answer < 300


_FORWARDED = ("Authorization", "Content-Type", "User-Agent")


class WebhookRelay:
    """Forwards webhook requests to `upstream` unchanged and records each as a `Delivery`.

    Without an upstream it answers 200 itself (to try the servers without the bot).
    """

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.deliveries: list[Delivery] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._relay)
        self._client = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, LOOPBACK, port).start()
        self.url = f"http://{LOOPBACK}:{port}/webhook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    async def _relay(self, request: web.Request) -> web.Response:
        raw = await request.read()
        answer, text = 200, ""
        if self.upstream is not None and self._client is not None:
            headers = {k: request.headers[k] for k in _FORWARDED if k in request.headers}
            try:
                async with self._client.post(self.upstream, data=raw, headers=headers) as r:
                    answer, text = r.status, await r.text()
            except aiohttp.ClientError as exc:
                answer, text = 502, f"relay: {exc}"
        body = json.loads(raw)
        self.deliveries.append(
            Delivery(
                group_key=body["groupKey"],
                status=body["status"],
                fingerprints=tuple(a["fingerprint"] for a in body["alerts"]),
                authorization=request.headers.get("Authorization", ""),
                answer=answer,
                reply=text,
            )
        )
        return web.Response(status=answer, text=text)

    def of_group(self, group_key: str) -> list[Delivery]:
        """The deliveries of one alert group, in order."""
        return [d for d in self.deliveries if d.group_key == group_key]

    @property
    def alerts_posted(self) -> int:
        """Alerts in all deliveries the bot accepted."""
        return sum(len(d.fingerprints) for d in self.deliveries if d.accepted)


# -- the bot -------------------------------------------------------------------------------
@dataclass(kw_only=True)
class BotProcess:
    """`incident-bot serve` as a subprocess, its output drained into memory."""

    process: asyncio.subprocess.Process
    url: str = ""
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def output(self, lines: int = 40) -> str:
        """The end of what the process printed, for failure messages."""
        return "\n".join([*self.stdout[-lines:], *self.stderr[-lines:]]) or "(no output)"


async def _drain(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    # A pipe nobody reads fills up and blocks the child's logging.
    if stream is None:
        return
    async for line in stream:
        into.append(line.decode(errors="replace").rstrip())


@contextlib.asynccontextmanager
async def running_bot(
    http: aiohttp.ClientSession, *, env: dict[str, str], cwd: Path, within: float = 30
) -> AsyncIterator[BotProcess]:
    """Start `incident-bot serve`; ready once it printed its URL and `/readyz` answers 200."""
    bot = BotProcess(process=await start_bot("serve", env=env, cwd=cwd))
    drains = [
        asyncio.create_task(_drain(bot.process.stdout, bot.stdout)),
        asyncio.create_task(_drain(bot.process.stderr, bot.stderr)),
    ]

    async def ready() -> bool | None:
        if bot.process.returncode is not None:
            raise RuntimeError(f"serve exited with {bot.process.returncode}:\n{bot.output()}")
        if not bot.url:
            found = [line for line in bot.stdout if line.startswith(_LISTENING)]
            if not found:
                return None
            bot.url = found[0].removeprefix(_LISTENING).strip()
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{bot.url}/readyz") as response:
                return True if response.status == 200 else None
        return None

    try:
        try:
            await eventually(ready, within=within)
        except TimeoutError as exc:
            raise TimeoutError(f"serve not ready within {within}s:\n{bot.output()}") from exc
        yield bot
    finally:
        if bot.process.returncode is None:
            bot.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(bot.process.wait(), within)
            except TimeoutError:
                bot.process.kill()
                await bot.process.wait()
        await asyncio.gather(*drains)
