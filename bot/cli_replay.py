"""`incident-bot runs replay RUN_ID`: today's code against a run's record (`bot.replay`).

Only Redis is opened: no model client, no tool or action backend. Exit codes: 0 the
replay is identical to the record, 1 it diverges (the first difference is printed),
2 the run does not exist, its investigation has not ended, or today's policy or
runbooks do not load.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.divergence import compare
from bot.errors import ConfigError, NotReplayable, RunNotFound
from bot.redis_connection import open_redis
from bot.replay import replay_run
from bot.settings import Settings
from policies.documents import PolicyConfigError

EXIT_IDENTICAL = 0
EXIT_DIVERGED = 1
EXIT_NOT_REPLAYABLE = 2


def add_replay_command(runs: Any) -> None:
    """Register `runs replay` on the `runs` subparsers."""
    replay = runs.add_parser(
        "replay",
        help="re-run a run's investigation on its recorded replies and results (no backend, "
        "no model) and print where today's code diverges",
    )
    replay.add_argument("run_id")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(handler=runs_replay)


async def runs_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the run and print the comparison; the exit code says identical or not."""
    async with open_redis(settings) as connection:
        try:
            replayed = await replay_run(connection.client, settings, args.run_id)
        except (RunNotFound, NotReplayable, ConfigError, PolicyConfigError) as exc:
            if args.json:
                print(json.dumps({"run_id": args.run_id, "replayable": False, "error": str(exc)}))
            print(f"incident-bot: {exc}", file=sys.stderr)
            return EXIT_NOT_REPLAYABLE
    comparison = compare(replayed)
    if args.json:
        print(json.dumps({"replayable": True, **comparison.as_json()}, indent=2))
    else:
        print(f"{comparison.run_id}: {comparison.describe()}")
    return EXIT_IDENTICAL if comparison.identical else EXIT_DIVERGED
