"""Helpers for tests that run `incident-bot serve` processes and post alerts to them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.processes import bot_env, eventually, start_bot
from tests.servers import free_port

SHARED = Path(__file__).resolve().parent / "fixtures" / "alertmanager"
TOKEN = "s3cret-webhook-token"


def alert_body(n: int) -> dict[str, Any]:
    """A real Alertmanager body (firing-single.json) made into alert group number `n`."""
    body: dict[str, Any] = json.loads((SHARED / "firing-single.json").read_text())
    body["groupKey"] = f'{{}}:{{alertname="HighErrorRate", instance="i{n}"}}'
    body["groupLabels"]["instance"] = f"i{n}"
    for alert in body["alerts"]:
        alert["labels"]["instance"] = f"i{n}"
        alert["fingerprint"] = f"{n:016x}"
    return body


class Replica:
    """One `incident-bot serve` process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


async def start_replica(tmp_path: Path, **env: str) -> Replica:
    """Start `incident-bot serve` on a free port and wait until it answers /healthz."""
    port = free_port()
    process = await start_bot(
        "serve",
        env=bot_env(
            INCIDENT_BOT_HOST="127.0.0.1",
            INCIDENT_BOT_PORT=str(port),
            INCIDENT_BOT_WEBHOOK_TOKEN=TOKEN,
            **env,
        ),
        cwd=tmp_path,
    )
    replica = Replica(process, port)

    async def healthy() -> bool | None:
        if process.returncode is not None:
            err = await process.stderr.read() if process.stderr else b""
            raise RuntimeError(f"serve exited with {process.returncode}: {err.decode()[-2000:]}")
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{replica.url}/readyz") as r:
                return True if r.status == 200 else None
        except aiohttp.ClientConnectionError:
            return None

    await eventually(healthy, within=30)
    return replica


async def post_alert(http: aiohttp.ClientSession, replica: Replica, body: dict[str, Any]) -> int:
    """POST an Alertmanager body with the bearer token; returns the HTTP status."""
    async with http.post(
        f"{replica.url}/webhooks/alertmanager",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        await response.read()
        return response.status
