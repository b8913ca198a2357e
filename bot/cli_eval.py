"""`incident-bot eval`: run the scenario suite on the runbook planner, recorded transcripts
and (with ANTHROPIC_API_KEY) Claude models, score each run, print a table per engine.

Exit codes: 0 every engine's rate is at least `--min-pass` (or none was given); 1 bad
input or error; 3 an engine is below `--min-pass`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.evals.attempt import Engine
from bot.evals.report import below_min_pass, json_report, markdown_report, text_report
from bot.evals.scenarios import ScenarioDir, default_scenarios_dir, discover, load_transcripts
from bot.evals.suite import run_suite
from bot.settings import Settings

EXIT_BELOW_MIN_PASS = 3


def add_eval_command(sub: Any) -> None:
    """Register `eval` on the CLI's subparsers."""
    p = sub.add_parser("eval", help="score the bot on the scenario suite (evals/scenarios)")
    p.add_argument("--scenario", default="*", metavar="GLOB", help="scenario names (default *)")
    p.add_argument(
        "--scenarios",
        type=Path,
        metavar="DIR",
        help="the scenarios directory (default: evals/scenarios of this checkout)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M",
        help="a Claude model to run (repeatable; needs ANTHROPIC_API_KEY; "
        "default with a key: INCIDENT_BOT_MODEL)",
    )
    p.add_argument(
        "--runbook-only", action="store_true", help="only the runbook planner (no model, offline)"
    )
    p.add_argument(
        "--transcripts",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="replay recorded transcripts (the default without a key): each scenario's "
        "transcripts/, or DIR/<scenario>/*.yaml",
    )
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="attempts per scenario")
    p.add_argument("--json", action="store_true", help="print the JSON report instead")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write a Markdown report")
    p.add_argument(
        "--min-pass",
        type=float,
        metavar="F",
        help="exit 3 when an engine's rate (0..1) is below F",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=max(2, os.cpu_count() or 2),
        metavar="N",
        help="attempts run at once (default: the CPU count, at least 2)",
    )
    p.set_defaults(handler=run_eval)


def engines_for(args: argparse.Namespace, settings: Settings) -> list[Engine]:
    """The runbook planner, then transcripts, then models, as the flags and the key say."""
    engines = [Engine(kind="runbook")]
    if args.runbook_only:
        if args.model or args.transcripts is not None:
            raise ConfigError("--runbook-only runs neither --model nor --transcripts")
        return engines
    keyed = settings.anthropic_api_key is not None
    if args.model and not keyed:
        raise ConfigError("--model needs ANTHROPIC_API_KEY (without it: --runbook-only)")
    if args.transcripts is not None or not keyed:
        engines.append(Engine(kind="transcript"))  # expanded per recorded name below
    if keyed:
        engines += [Engine(kind="model", model=m) for m in args.model or [settings.model]]
    return engines


def _with_transcripts(
    scenarios: list[ScenarioDir], engines: list[Engine], directory: str | None
) -> tuple[list[ScenarioDir], list[Engine]]:
    """Replace the transcript placeholder by one engine per recorded transcript name."""
    if not any(e.kind == "transcript" for e in engines):
        return scenarios, engines
    if directory:
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(f"{root}: no such transcripts directory")
        scenarios = [replace(s, transcripts=load_transcripts(root / s.name)) for s in scenarios]
    names = sorted({n for s in scenarios for n in s.transcripts}, key=lambda n: (n != "good", n))
    expanded = [Engine(kind="transcript", transcript=n) for n in names]
    i = next(i for i, e in enumerate(engines) if e.kind == "transcript")
    return scenarios, [*engines[:i], *expanded, *engines[i + 1 :]]


async def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    """The `eval` command."""
    if args.repeat < 1 or args.jobs < 1:
        raise ConfigError("--repeat and --jobs must be at least 1")
    if args.min_pass is not None and not 0 <= args.min_pass <= 1:
        raise ConfigError("--min-pass is a share between 0 and 1")
    scenarios = discover(args.scenarios or default_scenarios_dir(), args.scenario)
    scenarios, engines = _with_transcripts(scenarios, engines_for(args, settings), args.transcripts)
    results = await run_suite(
        scenarios, engines, settings=settings, repeat=args.repeat, jobs=args.jobs
    )
    if args.json:
        print(json.dumps(json_report(results, min_pass=args.min_pass), indent=2))
    else:
        print(text_report(results), end="")
    if args.markdown is not None:
        args.markdown.write_text(markdown_report(results), encoding="utf-8")
    below = below_min_pass(results, args.min_pass)
    if below:
        print(f"below --min-pass {args.min_pass:g}: {', '.join(below)}", file=sys.stderr)
        return EXIT_BELOW_MIN_PASS
    return 0
