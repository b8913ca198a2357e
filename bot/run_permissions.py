"""Who may cancel or otherwise change a run: its approvers, and the policy's operators.

A run's proposal is decided by the people the policy lets approve it; the same people
may stop the run. A run without a proposal yet (or one the policy approves itself, or
forbids) may be changed by the approvers of any rule that allows an action for its
alert's labels, and a rule naming no approvers lets anyone. Members of the policy's
`operators` may change any run. Group membership is the caller's to look up (Slack:
`bot.slack.approvers.GroupMembers`) for the groups `groups_that_may_change` names.

Pausing or resuming the whole bot (`bot.pausing`) is for the operators and whoever may
approve some action under the policy: the approvers of every `allow` rule (a rule that
names no approvers lets anyone approve, so it lets anyone pause).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.approvals import KNOWN_ACTIONS, assess
from bot.models import Run
from policies.schema import Approvers, Policy


@dataclass(frozen=True, kw_only=True)
class Changers:
    """Who may change one run, besides the operators."""

    anyone: bool
    users: frozenset[str]
    groups: frozenset[str]  # as `GroupMembers` names them: no `@`, case-folded
    because: str  # `the approvers of kubernetes.rollback on shop/checkout`


async def groups_that_may_change(policy: Policy, run: Run, *, now: datetime) -> frozenset[str]:
    """The user groups whose members may change the run (operators' included)."""
    changers = await _changers(policy, run, now)
    return changers.groups | _groups(policy.operators.groups)


async def why_not_allowed_to_change(
    policy: Policy, run: Run, user_id: str, user_groups: frozenset[str], *, now: datetime
) -> str | None:
    """Why `user_id` (a member of `user_groups`) may not change the run; None: they may."""
    groups = _groups(user_groups)
    operators = policy.operators
    if user_id in operators.users or groups & _groups(operators.groups):
        return None
    changers = await _changers(policy, run, now)
    if changers.anyone or user_id in changers.users or groups & changers.groups:
        return None
    named = Approvers(
        users=sorted(changers.users), groups=[f"@{g}" for g in sorted(changers.groups)]
    )
    who = [named.describe()] if named.users or named.groups else []
    if operators.users or operators.groups:
        who.append(f"the operators ({operators.describe()})")
    return f"only {' or '.join(who) or 'nobody'} may change {run.id} ({changers.because})"


async def _changers(policy: Policy, run: Run, now: datetime) -> Changers:
    proposal = run.proposal
    if proposal is not None:
        # The one call of the policy's verdict on a proposal (`bot.approvals.assess`).
        requirement = await assess(policy, run, proposal, now=now)
        if requirement.allowed and not requirement.auto_approved:
            users, groups = requirement.approver_users, requirement.approver_groups
            return Changers(
                anyone=not users and not groups,
                users=users,
                groups=_groups(groups),
                because=f"the approvers of its proposal, {proposal.action}",
            )
    return _by_labels(policy, run)


def _by_labels(policy: Policy, run: Run) -> Changers:
    """The approvers of every rule that decides some action for the alert's labels and
    allows it."""
    labels = run.alert.labels
    users: set[str] = set()
    groups: set[str] = set()
    anyone = False
    for action in KNOWN_ACTIONS:
        rule = next((r for r in policy.actions if r.applies(action, labels)), None)
        if rule is None or rule.effect != "allow":
            continue
        anyone = anyone or not (rule.approvers.users or rule.approvers.groups)
        users.update(rule.approvers.users)
        groups.update(_groups(rule.approvers.groups))
    return Changers(
        anyone=anyone,
        users=frozenset(users),
        groups=frozenset(groups),
        because="the approvers of the actions the policy allows for its alert's labels",
    )


def groups_that_may_pause(policy: Policy) -> frozenset[str]:
    """The user groups whose members may pause and resume the bot."""
    return _bot_changers(policy).groups


def why_not_allowed_to_pause(
    policy: Policy, user_id: str, user_groups: frozenset[str]
) -> str | None:
    """Why `user_id` (a member of `user_groups`) may not pause or resume the bot; None: they
    may."""
    changers = _bot_changers(policy)
    if changers.anyone or user_id in changers.users or _groups(user_groups) & changers.groups:
        return None
    if not changers.users and not changers.groups:
        named = "nobody (the policy names no operators or approvers)"
    else:
        named = Approvers(
            users=sorted(changers.users), groups=[f"@{g}" for g in sorted(changers.groups)]
        ).describe()
    return f"only {changers.because} ({named}) may pause or resume the bot"


def _bot_changers(policy: Policy) -> Changers:
    """The operators and the approvers of every rule that allows an action."""
    allowing = [r.approvers for r in policy.actions if r.effect == "allow"]
    named = [policy.operators, *allowing]
    return Changers(
        anyone=any(not a.users and not a.groups for a in allowing),
        users=frozenset(u for a in named for u in a.users),
        groups=_groups(g for a in named for g in a.groups),
        because="the policy's operators and approvers",
    )


def _groups(names: Iterable[str]) -> frozenset[str]:
    return frozenset(g.removeprefix("@").casefold() for g in names)
