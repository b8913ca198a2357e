"""`python -m tools.sandbox --scenario bad-deploy --port 9090`: serve a scenario until stopped.

Prints `sandbox listening on http://HOST:PORT` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from tools.sandbox.app import run_sandbox
from tools.sandbox.scenario import Scenario, load_scenario


async def serve(scenario: Scenario, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with run_sandbox(scenario, host=host, port=port) as sandbox:
        print(f"sandbox listening on {sandbox.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m tools.sandbox", description=__doc__)
    parser.add_argument("--scenario", default="bad-deploy", help="bundled name or YAML path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--latency", type=float, default=None, help="seconds every API answer takes"
    )
    args = parser.parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
        if args.latency is not None:
            scenario = scenario.model_copy(update={"latency_seconds": args.latency})
        asyncio.run(serve(scenario, args.host, args.port))
    except FileNotFoundError as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()
