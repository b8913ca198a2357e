"""`incident-bot policy check` and `incident-bot policy explain`.

`check` validates policy files (and a directory's runbooks) and prints every problem as
`file:line: field: message`. `explain` prints what the policy asks of one action on an
alert with the given labels: the rule that applies, approvals and approvers, any freeze.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from bot.approvals import KNOWN_ACTIONS, REVERSIBLE_ACTIONS, target_of
from bot.errors import ConfigError
from bot.models import utcnow
from bot.runbook import load_runbooks
from bot.settings import Settings
from policies.approval import ProposalFacts, evaluate
from policies.documents import PolicyConfigError, PolicyError
from policies.schema import Policy, load_policy, policy_files, read_policy
from policies.target import Target

EXIT_OK = 0
EXIT_PROBLEMS = 1


def add_policy_commands(sub: Any) -> None:
    """Register `policy check` and `policy explain` on the CLI's subcommands."""
    policy = sub.add_parser("policy", help="check policy files; explain a decision").add_subparsers(
        required=True, metavar="ACTION"
    )
    check = policy.add_parser("check", help="validate policy files, naming file, line, field")
    check.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="policy files or directories (default: INCIDENT_BOT_POLICY_DIR, else shipped)",
    )
    check.set_defaults(handler=check_command)
    explain = policy.add_parser("explain", help="which rule applies to an action, and why")
    explain.add_argument("action", help="e.g. kubernetes.rollback")
    explain.add_argument("--labels", nargs="*", default=[], metavar="K=V", help="alert labels")
    explain.add_argument(
        "--args",
        type=_arguments,
        default={},
        metavar="JSON",
        help='the proposal\'s arguments, e.g. \'{"namespace": "shop", "deployment": "checkout"}\'',
    )
    explain.add_argument("--at", type=datetime.fromisoformat, help="time (ISO 8601; now)")
    explain.add_argument("--policy-dir", type=Path, help="default: INCIDENT_BOT_POLICY_DIR")
    explain.set_defaults(handler=explain_command)


def _known() -> list[str]:
    return list(KNOWN_ACTIONS)


def _check_one(path: Path) -> tuple[list[str], str]:
    """Problems of one file or directory, and a one-line summary when there are none."""
    try:
        if path.is_dir():
            files = policy_files(path)
            policy = load_policy(
                path, known_actions=_known(), reversible_actions=REVERSIBLE_ACTIONS
            )
            runbooks = path / "runbooks"
            books = load_runbooks(runbooks) if runbooks.is_dir() else ()
            shown = ", ".join(f.name for f in files) or "no policy file: the shipped default"
        else:
            policy = read_policy(
                [(str(path), path.read_text())],
                known_actions=_known(),
                reversible_actions=REVERSIBLE_ACTIONS,
            )
            books = ()
            shown = path.name
    except PolicyError as exc:
        return [str(p) for p in exc.problems], ""
    except (ConfigError, PolicyConfigError, OSError) as exc:
        return [f"{path}: {exc}"], ""
    unknown = [
        f"{path / 'runbooks'}: runbook {b.name} proposes unknown action {b.proposal.action!r}"
        for b in books
        if b.proposal is not None and b.proposal.action not in _known()
    ]
    return unknown, (
        f"{path}: ok ({shown}): {len(policy.actions)} action rule(s), {len(policy.freezes)} "
        f"freeze(s), {len(policy.webhooks)} webhook(s), {len(books)} runbook(s)"
    )


async def check_command(args: argparse.Namespace, settings: Settings) -> int:
    """Validate each path; print every problem; exit 1 when there is any."""
    paths: list[Path] = args.paths or ([settings.policy_dir] if settings.policy_dir else [])
    if not paths:
        load_policy(None, known_actions=_known(), reversible_actions=REVERSIBLE_ACTIONS)
        print("shipped policies/default.yaml: ok")
        return EXIT_OK
    failed = False
    for path in paths:
        problems, summary = _check_one(path)
        for problem in problems:
            print(problem)
        if problems:
            failed = True
            print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        else:
            print(summary)
    return EXIT_PROBLEMS if failed else EXIT_OK


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must be KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _arguments(text: str) -> dict[str, JsonValue]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of the action's arguments")
    return value


def explain_lines(
    policy: Policy,
    action: str,
    labels: dict[str, str],
    arguments: dict[str, JsonValue],
    at: datetime,
) -> list[str]:
    """The explanation `policy explain` prints."""
    if arguments:
        target, shown_target = target_of(action, arguments), ""
    else:
        # Without arguments: a change in the alert's own namespace.
        target = Target(kind="target", namespace=labels.get("namespace", ""))
        shown_target = "not given (--args JSON); taken to be in the alert's namespace"
    facts = ProposalFacts(
        action=action,
        arguments=arguments,
        target=target,
        alert_labels=labels,
        reversible=action in REVERSIBLE_ACTIONS,
    )
    req = evaluate(policy, facts, at)
    shown = " ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(no labels)"
    lines = [
        f"{action} for {shown} at {at:%Y-%m-%d %H:%M %Z}",
        f"  target:    {shown_target or target.describe()}",
        f"  rule:      {req.rule or 'none matches (an action no rule allows is forbidden)'}",
        f"  allowed:   {'yes' if req.allowed else 'NO'}",
    ]
    if req.allowed:
        if req.auto_approved:
            lines.append("  approvals: none: the policy approves it itself")
        elif req.awaits_alert_check:
            lines.append(
                "  approvals: none if Alertmanager confirms, just before, that it affects no "
                f"firing alert of another group; else {req.required_approvals} from "
                f"{req.approvers()}"
            )
        else:
            lines.append(f"  approvals: {req.required_approvals} from {req.approvers()}")
    active = [f for f in policy.freezes if f.applies(action, facts.labels()) and f.active(at)]
    freeze = active[0].describe() if active else "none in force"
    lines += [
        f"  freeze:    {freeze}",
        f"  timeout:   {policy.approval_timeout_seconds:g}s without a decision -> expired",
        f"  why:       {req.reason}",
    ]
    return lines


async def explain_command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the rule, approvals, approvers and freeze for one action."""
    policy = load_policy(
        args.policy_dir or settings.policy_dir,
        known_actions=_known(),
        reversible_actions=REVERSIBLE_ACTIONS,
    )
    at = args.at or utcnow()
    if at.tzinfo is None:
        raise ConfigError("--at needs a time zone, e.g. 2026-11-27T10:00:00+00:00")
    for line in explain_lines(policy, args.action, _pairs(args.labels, "--labels"), args.args, at):
        print(line)
    return EXIT_OK
