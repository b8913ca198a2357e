"""The `incident-bot` command: triage, demo, serve, runs, pause, resume, policy, tools, mcp,
eval."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bot.approvals import describe_target
from bot.cli_eval import add_eval_command
from bot.cli_mcp import add_mcp_command
from bot.cli_memory import add_similar_command
from bot.cli_policy import add_policy_commands
from bot.cli_replay import add_replay_command
from bot.cli_report import add_report_command, audit_lines
from bot.cli_tools import add_tools_commands
from bot.demo import DEMO_SCENARIO, demo_alert
from bot.deps import Deps, open_deps
from bot.errors import IncidentBotError
from bot.intake.alertmanager import parse_document
from bot.logs import configure_logging
from bot.models import Alert, Decision, Run, RunStatus
from bot.parking import retry
from bot.pausing import pause, resume
from bot.runs import follow, record_decision, start_run
from bot.server import serve
from bot.settings import LOG_LEVELS, Settings
from bot.terminal import TerminalView
from policies.documents import PolicyConfigError
from tools.sandbox import run_sandbox

# Exit codes a script can branch on.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NEEDS_HUMAN = 2

_HEALTHY_ENDS = {RunStatus.RESOLVED, RunStatus.CONCLUDED, RunStatus.REJECTED}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `incident-bot` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
        configure_logging(_log_level(args, settings))
        code = asyncio.run(args.handler(args, settings))
    except (IncidentBotError, PolicyConfigError, ValidationError) as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        code = EXIT_ERROR
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _log_level(args: argparse.Namespace, settings: Settings) -> str:
    """`--log-level`; else the settings' level for `serve` (INFO unless set), and for the
    terminal commands WARNING unless `INCIDENT_BOT_LOG_LEVEL` is set: they print what a
    person reads, and INFO lines would interleave with it."""
    if args.log_level is not None:
        return str(args.log_level)
    if args.handler is _serve or "log_level" in settings.model_fields_set:
        return settings.log_level
    return "WARNING"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="incident-bot", description=__doc__)
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="overrides INCIDENT_BOT_LOG_LEVEL (default: INFO for serve, else WARNING)",
    )
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def answer_flags(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument(
            "--yes",
            action="store_const",
            const=True,
            dest="answer",
            help="approve the proposal without asking",
        )
        group.add_argument(
            "--no",
            action="store_const",
            const=False,
            dest="answer",
            help="reject the proposal without asking",
        )

    triage = sub.add_parser("triage", help="investigate an alert in the terminal")
    triage.add_argument(
        "alert_file", type=Path, help="Alertmanager webhook body or one alert (JSON)"
    )
    answer_flags(triage)
    triage.set_defaults(handler=_triage)

    demo = sub.add_parser("demo", help="the whole flow against the bundled sandbox, offline")
    demo.add_argument("--scenario", default=DEMO_SCENARIO)
    demo.add_argument(
        "--with-model",
        action="store_true",
        help="use Claude (ANTHROPIC_API_KEY) instead of the runbook planner",
    )
    answer_flags(demo)
    demo.set_defaults(handler=_demo)

    serve = sub.add_parser("serve", help="the HTTP service: webhooks, workers, /metrics")
    serve.add_argument("--host", help="listen address (INCIDENT_BOT_HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (INCIDENT_BOT_PORT, default 8080)")
    serve.add_argument(
        "--sandbox",
        metavar="SCENARIO",
        help="point the tools at the built-in simulator (webhooks may go without a token)",
    )
    serve.add_argument(
        "--socket-mode",
        action="store_true",
        help="connect to Slack over Socket Mode (SLACK_APP_TOKEN) instead of HTTP",
    )
    serve.set_defaults(handler=_serve)

    runs = sub.add_parser("runs", help="list, show and decide runs").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = runs.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=_runs_list)
    show = runs.add_parser("show", help="one run with its transcript and audit trail")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_runs_show)
    add_report_command(runs)
    resume = runs.add_parser("resume", help="drive a run whose process died to its end")
    resume.add_argument("run_id")
    answer_flags(resume)
    resume.set_defaults(handler=_runs_resume)
    retry = runs.add_parser("retry", help="queue a run whose work was parked again")
    retry.add_argument("run_id")
    retry.add_argument("--user", default=f"{getpass.getuser()}@{socket.gethostname()}")
    retry.set_defaults(handler=_runs_retry)
    add_similar_command(runs)
    add_replay_command(runs)
    for verb in ("approve", "reject"):
        decide = runs.add_parser(verb, help=f"{verb} the run's proposal and resume the run")
        decide.add_argument("run_id")
        decide.add_argument("--user", default=f"{getpass.getuser()}@{socket.gethostname()}")
        decide.add_argument("--reason", default="")
        decide.set_defaults(handler=_runs_decide, verdict=verb)
    pausing = sub.add_parser(
        "pause", help="pause the bot at once: no investigation or action until resume"
    )
    pausing.add_argument("reason", nargs="*", help="why (shown in Slack and the audit)")
    pausing.add_argument("--user", default=f"{getpass.getuser()}@{socket.gethostname()}")
    pausing.set_defaults(handler=_pause)
    resuming = sub.add_parser("resume", help="lift the pause: stopped runs go on")
    resuming.add_argument("--user", default=f"{getpass.getuser()}@{socket.gethostname()}")
    resuming.set_defaults(handler=_resume)
    add_policy_commands(sub)
    add_tools_commands(sub)
    add_mcp_command(sub)
    add_eval_command(sub)
    return parser


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {
        "host": args.host,
        "port": args.port,
        "sandbox": args.sandbox,
        "slack_socket_mode": args.socket_mode,
        # The simulator is a trial: its webhooks may be open (a token still applies if set).
        "allow_unauthenticated_webhooks": bool(args.sandbox),
    }
    await serve(settings.model_copy(update={k: v for k, v in overrides.items() if v}))
    return EXIT_OK


async def _pause(args: argparse.Namespace, settings: Settings) -> int:
    async with open_deps(settings, tool_sources=False) as deps:
        done = await pause(deps, who=args.user, reason=" ".join(args.reason), source="cli")
    print(done.describe())
    print(json.dumps({"paused": done.state.describe()}))
    return EXIT_OK


async def _resume(args: argparse.Namespace, settings: Settings) -> int:
    async with open_deps(settings, tool_sources=False) as deps:
        done = await resume(deps, who=args.user)
        state = await deps.pause.current()
    if done.refused is not None:
        print(f"incident-bot: {done.refused}", file=sys.stderr)
        return EXIT_ERROR
    print(done.describe())
    print(json.dumps({"paused": state.describe() if state else None}))
    return EXIT_OK


async def _triage(args: argparse.Namespace, settings: Settings) -> int:
    try:
        document = json.loads(args.alert_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"incident-bot: cannot read {args.alert_file}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    alerts = parse_document(document)
    async with open_deps(settings) as deps:
        return await _investigate(deps, alerts[0], trigger="cli", answer=args.answer)


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    async with run_sandbox(args.scenario) as sandbox:
        demo_settings = settings.pointed_at_sandbox(sandbox.url).model_copy(
            update={
                "verify_interval_seconds": 1.0,
                "anthropic_api_key": settings.anthropic_api_key if args.with_model else None,
            }
        )
        print(
            f"Sandbox '{args.scenario}' serving Prometheus, Alertmanager, Loki and "
            f"Kubernetes APIs at {sandbox.url}"
        )
        async with open_deps(demo_settings) as deps:
            return await _investigate(
                deps, demo_alert(sandbox.url), trigger="demo", answer=args.answer
            )


async def _investigate(deps: Deps, alert: Alert, *, trigger: str, answer: bool | None) -> int:
    run = await start_run(deps, alert, trigger=trigger)
    print(f"Run {run.id}: {alert.title}  [{alert.severity}]")
    print(f"  labels: {', '.join(f'{k}={v}' for k, v in sorted(alert.labels.items()))}")
    return await _follow_in_terminal(deps, run.id, answer)


async def _follow_in_terminal(deps: Deps, run_id: str, answer: bool | None) -> int:
    """Drive the run with the terminal view; ask for approval (or take `answer`)."""
    view = TerminalView(deps.actions, deps.action_context)

    async def decide(waiting: Run) -> bool:
        assert waiting.proposal is not None  # noqa: S101 - awaiting approval has a proposal
        verdict = answer
        if verdict is None and sys.stdin.isatty():
            verdict = await view.ask_approval(waiting)
        if verdict is None:
            view.say("Waiting for a decision from another process:")
            view.say(f"  incident-bot runs approve {waiting.id}   (or: runs reject {waiting.id})")
            return True
        view.say(f"{'Approved' if verdict else 'Rejected'} from the terminal.")
        await record_decision(
            deps,
            Decision(
                run_id=waiting.id,
                proposal_id=waiting.proposal.id,
                user=f"{getpass.getuser()}@{socket.gethostname()}",
                verdict="approve" if verdict else "reject",
                via="terminal",
            ),
        )
        return True

    run = await follow(deps.driver(view.on_checkpoint), deps, run_id, decide, view.say)
    view.finished(run, deps.redis_location)
    return EXIT_OK if run.status in _HEALTHY_ENDS else EXIT_NEEDS_HUMAN


async def _runs_list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_deps(settings, tool_sources=False) as deps:
        runs = await deps.store.list_runs(limit=args.limit)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in runs], indent=2))
        return EXIT_OK
    if not runs:
        print("no runs")
    for run in runs:
        print(
            f"{run.id}  {run.status.value:<18} {run.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{run.alert.title}"
        )
    return EXIT_OK


async def _runs_show(args: argparse.Namespace, settings: Settings) -> int:
    async with open_deps(settings, tool_sources=False) as deps:
        run = await deps.store.load(args.run_id)
        transcript = await deps.store.transcript(run.id)
        audit = await deps.store.read_audit(run.id)
        record = await deps.store.action_record(run.id, run.proposal.id) if run.proposal else None
    if args.json:
        print(
            json.dumps(
                {
                    "run": run.model_dump(mode="json"),
                    "transcript": [s.model_dump(mode="json") for s in transcript],
                    "audit": [
                        {"id": a.id, "at": a.at.isoformat(), "event": a.event, **a.data}
                        for a in audit
                    ],
                    "action": record.model_dump(mode="json") if record else None,
                },
                indent=2,
            )
        )
        return EXIT_OK
    engine = f"{run.engine}: {run.engine_reason}" if run.engine_reason else run.engine
    print(f"{run.id}: {run.status.value}  ({engine})")
    print(f"  alert:   {run.alert.title}")
    print(f"  steps:   {run.steps}  model calls: {run.model_calls}  tokens: {run.usage.total}")
    if run.summary:
        print(f"  summary: {run.summary}")
    if run.proposal:
        p = run.proposal
        print(f"  proposal {p.id}: {p.action} on {describe_target(p)}")
    if record:
        print(f"  action:  {record.state} by {record.owner} {record.detail}")
    if run.outcome:
        print(f"  outcome: {run.outcome}")
    print(f"  started: {run.created_at:%Y-%m-%d %H:%M:%S} UTC; audit (UTC, since the start):")
    for line in audit_lines(audit, run.created_at):
        print(f"    {line}")
    return EXIT_OK


async def _runs_decide(args: argparse.Namespace, settings: Settings) -> int:
    async with open_deps(settings) as deps:
        run = await deps.store.load(args.run_id)
        if run.proposal is None or run.status is not RunStatus.AWAITING_APPROVAL:
            print(f"run {run.id} is {run.status.value}, not awaiting approval", file=sys.stderr)
            return EXIT_ERROR
        recorded = await record_decision(
            deps,
            Decision(
                run_id=run.id,
                proposal_id=run.proposal.id,
                user=args.user,
                verdict=args.verdict,
                reason=args.reason,
                via="cli",
            ),
        )
        print(f"{args.verdict} by {args.user} {'recorded' if recorded else 'was already recorded'}")
        workers = await deps.queue.live_workers()
        if workers:
            print(f"The run is queued for the serve workers ({len(workers)} replica(s) alive).")
            return EXIT_OK
        view = TerminalView(deps.actions, deps.action_context)

        async def still_waiting(waiting: Run) -> bool:
            view.say("The proposal needs more decisions; the run stays paused in Redis.")
            return False

        run = await follow(deps.driver(view.on_checkpoint), deps, run.id, still_waiting, view.say)
        view.finished(run, deps.redis_location)
        return EXIT_OK if run.status in _HEALTHY_ENDS else EXIT_NEEDS_HUMAN


async def _runs_resume(args: argparse.Namespace, settings: Settings) -> int:
    async with open_deps(settings) as deps:
        run = await deps.store.load(args.run_id)
        print(f"Resuming {run.id} ({run.status.value}, {run.steps} steps so far)")
        return await _follow_in_terminal(deps, run.id, args.answer)


async def _runs_retry(args: argparse.Namespace, settings: Settings) -> int:
    async with open_deps(settings, tool_sources=False) as deps:
        retried = await retry(deps, args.run_id, user=args.user)
        workers = await deps.queue.live_workers()
    parked = retried.parked
    print(
        f"Run {retried.run.id} is queued again ({retried.run.status.value}); it was parked "
        f"after {parked.deliveries} failed drives: {parked.error}"
    )
    if not workers:
        print(
            "No serve worker is alive: the entry waits for one (or drive it here with "
            f"`incident-bot runs resume {retried.run.id}`)."
        )
    return EXIT_OK
