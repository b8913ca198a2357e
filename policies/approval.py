"""Who must approve an action, and whether the decisions so far settle it (pure functions).

`evaluate` reads the policy for one proposed action at one moment and says whether it may
be offered at all, how many approvals it needs and from whom, whether the policy approves
it itself, and whether a change freeze is in force. It judges the change, not the story:
rules match the labels of the action's *target* (derived from its validated arguments:
namespace, kind, name, silence matchers) over the alert's, and a target outside the
alert's namespace is forbidden unless the rule says `cross_namespace: true`.

Auto-approval needs all of: a rule that says so, an action that declares itself bounded
and reversible, a run no untrusted text tried to steer (`flagged`), a change limited to
the run's own alerts (`scope_problem`), and Alertmanager's word, asked just before, that
no firing alert outside the run's group would be affected (`others_affected == 0`).

The bot asks this through one function (`bot.approvals.assess`) for every caller; the
Slack surface asks `may_approve` before recording a click; the run driver counts only
the decisions `may_approve` accepts (`settle`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from pydantic import JsonValue

from policies.schema import (
    AUTO_APPROVER,
    ActionRule,
    Approvers,
    Freeze,
    Limits,
    Policy,
    labels_match,
)
from policies.target import Target, scope_problem

Verdict = Literal["approved", "rejected", "pending"]


class Decision(Protocol):
    """A recorded decision, as far as the policy reads it."""

    @property
    def user(self) -> str: ...
    @property
    def verdict(self) -> Literal["approve", "reject"]: ...
    @property
    def groups(self) -> Sequence[str]: ...


@dataclass(frozen=True, kw_only=True)
class ProposalFacts:
    """Everything the policy reads about one proposed action."""

    action: str
    arguments: Mapping[str, JsonValue]
    target: Target
    alert_labels: Mapping[str, str] = field(default_factory=dict)
    group_labels: Mapping[str, str] = field(default_factory=dict)
    # The action declares itself bounded and reversible (today: a silence).
    reversible: bool = False
    # Untrusted text of the run addressed the model or the bot.
    flagged: bool = False
    # Firing alerts outside the run's group the change would affect; None: not asked.
    others_affected: int | None = None

    def labels(self) -> dict[str, str]:
        """The labels the rules match: the alert's, overridden by the target's."""
        return {**self.alert_labels, **self.target.labels()}


@dataclass(frozen=True, kw_only=True)
class Requirement:
    """What the policy asks of one proposed action."""

    allowed: bool
    reason: str
    required_approvals: int = 0
    approver_users: frozenset[str] = frozenset()
    approver_groups: frozenset[str] = frozenset()
    auto_approved: bool = False
    # Only Alertmanager's answer (`others_affected`) is missing to approve it automatically.
    awaits_alert_check: bool = False
    frozen: bool = False
    # The rule that decided, e.g. `actions[2] allow kubernetes.* (policy.yaml:14)`.
    rule: str = ""

    def approvers(self) -> str:
        """`users U1 or groups @sre` (or `anyone`)."""
        return Approvers(
            users=sorted(self.approver_users), groups=sorted(self.approver_groups)
        ).describe()


def evaluate(policy: Policy, facts: ProposalFacts, now: datetime) -> Requirement:
    """The requirement for the proposed action described by `facts`, at `now`."""
    action, labels = facts.action, facts.labels()
    if facts.target.problem:
        return Requirement(
            allowed=False, reason=f"{action}: invalid arguments: {facts.target.problem}"
        )
    found = next(((i, r) for i, r in enumerate(policy.actions) if r.applies(action, labels)), None)
    if found is None:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "no labels"
        return Requirement(allowed=False, reason=f"no policy rule allows {action} ({shown})")
    index, rule = found
    where = f"actions[{index}] {rule.describe()}" + (f" ({rule.source})" if rule.source else "")
    if rule.effect == "forbid":
        return Requirement(
            allowed=False, reason=f"forbidden: {rule.reason or rule.describe()}", rule=where
        )
    refusal = (
        _outside_namespace(rule, facts)
        or _outside_limits(rule.limits, facts.arguments)
        or _unlisted_webhook(policy, action, facts.arguments)
    )
    if refusal is not None:
        return Requirement(allowed=False, reason=refusal, rule=where)
    freeze = next((f for f in policy.freezes if f.applies(action, labels) and f.active(now)), None)
    if freeze is not None:
        return _frozen(rule, freeze, where)
    not_auto = _why_not_auto(rule, facts)
    if not_auto is None and facts.others_affected == 0:
        return Requirement(
            allowed=True,
            reason=f"approved by the policy ({_auto_text(rule)})",
            auto_approved=True,
            rule=where,
        )
    awaits_check = not_auto is None and facts.others_affected is None
    if awaits_check:
        not_auto = "Alertmanager was not asked which firing alerts it would affect"
    elif not_auto is None:
        not_auto = f"it would also affect {facts.others_affected} firing alert(s) of other groups"
    because = f" (not approved by the policy itself: {not_auto})" if rule.auto_approve else ""
    return Requirement(
        allowed=True,
        reason=f"needs {rule.approvals} approval(s) from {rule.approvers.describe()}{because}",
        required_approvals=rule.approvals,
        approver_users=frozenset(rule.approvers.users),
        approver_groups=frozenset(_group(g) for g in rule.approvers.groups),
        awaits_alert_check=awaits_check,
        rule=where,
    )


def may_approve(requirement: Requirement, user_id: str, user_groups: frozenset[str]) -> bool:
    """Whether this Slack user (member of `user_groups`: IDs or handles) may decide."""
    if not requirement.allowed or user_id == AUTO_APPROVER:
        return False
    if not requirement.approver_users and not requirement.approver_groups:
        return True
    groups = {_group(g) for g in user_groups}
    return user_id in requirement.approver_users or bool(groups & requirement.approver_groups)


def settle(requirement: Requirement, decisions: Sequence[Decision]) -> Verdict:
    """The verdict from the decisions that count: the policy's own for an auto-approved
    action, and those of people `may_approve` accepts. Anything forbidden is rejected."""
    if not requirement.allowed:
        return "rejected"
    counted = [d for d in decisions if counts(requirement, d)]
    return tally(counted, required_approvals=requirement.required_approvals)


def counts(requirement: Requirement, decision: Decision) -> bool:
    """Whether the decision counts: the policy's own for an auto-approved action, or one
    by a person `may_approve` accepts (the groups they had when deciding)."""
    if decision.user == AUTO_APPROVER:
        return requirement.auto_approved and requirement.allowed
    return may_approve(requirement, decision.user, frozenset(decision.groups))


def tally(decisions: Sequence[Decision], *, required_approvals: int = 1) -> Verdict:
    """A proposal is rejected by any reject, approved by enough distinct approvers."""
    if any(d.verdict == "reject" for d in decisions):
        return "rejected"
    approvers = {d.user for d in decisions if d.verdict == "approve"}
    return "approved" if len(approvers) >= required_approvals else "pending"


def _group(name: str) -> str:
    return name.removeprefix("@").casefold()


def _frozen(rule: ActionRule, freeze: Freeze, where: str) -> Requirement:
    why = f": {freeze.reason}" if freeze.reason else ""
    if freeze.override_approvals is None:
        return Requirement(
            allowed=False,
            reason=f"change freeze {freeze.describe()} is in force{why}; it allows no override",
            frozen=True,
            rule=where,
        )
    approvers = freeze.override_approvers or rule.approvers
    needed = max(rule.approvals, freeze.override_approvals)
    return Requirement(
        allowed=True,
        reason=(
            f"change freeze {freeze.describe()} is in force{why}; overriding it needs "
            f"{needed} approval(s) from {approvers.describe()}"
        ),
        required_approvals=needed,
        approver_users=frozenset(approvers.users),
        approver_groups=frozenset(_group(g) for g in approvers.groups),
        frozen=True,
        rule=where,
    )


def _number(arguments: Mapping[str, JsonValue], name: str) -> int | None:
    value = arguments.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _outside_limits(limits: Limits, arguments: Mapping[str, JsonValue]) -> str | None:
    duration = _number(arguments, "duration_seconds")
    if limits.max_duration_seconds is not None and "duration_seconds" in arguments:
        if duration is None or duration > limits.max_duration_seconds:
            return (
                f"duration_seconds {arguments['duration_seconds']} is above the policy's "
                f"limit of {limits.max_duration_seconds}"
            )
    bounded = limits.min_replicas is not None or limits.max_replicas is not None
    if bounded and "replicas" in arguments:
        replicas = _number(arguments, "replicas")
        low, high = limits.min_replicas or 0, limits.max_replicas
        if replicas is None or replicas < low or (high is not None and replicas > high):
            top = "" if high is None else f" to {high}"
            return f"replicas {arguments['replicas']} is outside the policy's bounds {low}{top}"
    return None


def _unlisted_webhook(
    policy: Policy, action: str, arguments: Mapping[str, JsonValue]
) -> str | None:
    if action != "webhook.call":
        return None
    name = arguments.get("webhook")
    if isinstance(name, str) and policy.webhook(name) is not None:
        return None
    listed = ", ".join(h.name for h in policy.webhooks) or "none"
    return f"webhook {name!r} is not listed in the policy (listed: {listed})"


def _outside_namespace(rule: ActionRule, facts: ProposalFacts) -> str | None:
    namespace = facts.target.namespace
    own = facts.alert_labels.get("namespace", "")
    if namespace is None or namespace == own or rule.cross_namespace:
        return None
    where = f"namespace {namespace}" if namespace else "every namespace"
    return (
        f"{facts.target.describe()} reaches {where}, outside the alert's namespace "
        f"{own or '(none)'}; no rule allows it (cross_namespace: true)"
    )


def _why_not_auto(rule: ActionRule, facts: ProposalFacts) -> str | None:
    """Why the policy does not approve this itself (Alertmanager's answer aside)."""
    auto = rule.auto_approve
    if auto is None:
        return "the rule does not auto-approve"
    if not facts.reversible:
        return f"{facts.action} is not bounded and reversible"
    if facts.flagged:
        return "untrusted text in this run addressed the model or the bot"
    if not labels_match(auto.match, facts.labels()):
        return "the labels do not fit the rule's auto_approve match"
    if auto.max_duration_seconds is not None:
        duration = _number(facts.arguments, "duration_seconds")
        if duration is None or duration > auto.max_duration_seconds:
            return f"the duration is above {auto.max_duration_seconds}s"
    return scope_problem(facts.target, facts.alert_labels, facts.group_labels)


def _auto_text(rule: ActionRule) -> str:
    auto = rule.auto_approve
    assert auto is not None  # noqa: S101 - only called for auto-approving rules
    parts = [f"{k}={v}" for k, v in auto.match.items()]
    if auto.max_duration_seconds is not None:
        parts.append(f"duration at most {auto.max_duration_seconds}s")
    return "auto-approve: " + (", ".join(parts) or "always")
