"""Run the `incident-bot` command as a real subprocess, and wait on Redis for a condition."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent


def bot_env(**overrides: str) -> dict[str, str]:
    """The environment for a bot subprocess: this one, without model, Redis or Slack settings,
    logging at WARNING."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("ANTHROPIC_", "INCIDENT_BOT_", "REDIS_", "KUBE", "PROMETHEUS_", "SLACK_")
        )
    }
    env["PYTHONPATH"] = str(ROOT)
    # `serve` logs INFO by default; nobody reads a test process's pipes until it ends, and
    # a long test's INFO lines would fill them and block the process.
    env["INCIDENT_BOT_LOG_LEVEL"] = "WARNING"
    return env | overrides


async def start_bot(*args: str, env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """Start `python -m bot ARGS` with stdin closed (not a TTY) and output captured."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_bot(
    *args: str, env: dict[str, str], cwd: Path, within: float = 60
) -> tuple[int, str, str]:
    """Run `python -m bot ARGS` to its end; returns exit code, stdout, stderr."""
    process = await start_bot(*args, env=env, cwd=cwd)
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 30) -> T:
    """Poll `probe` until it returns something other than None (a condition, not a sleep)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)
