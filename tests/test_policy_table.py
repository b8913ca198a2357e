"""The policy as a table: actions x labels x approvers x times -> what the YAML says.

Also the loader: every mistake of a file reported with its line, files of a directory
merged, the shipped default valid; and routing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.approvals import REVERSIBLE_ACTIONS, target_of
from bot.models import Decision
from bot.runbook import load_runbooks
from policies.approval import ProposalFacts, Requirement, evaluate, may_approve, settle
from policies.documents import PolicyError
from policies.routing import channel_for
from policies.schema import AUTO_APPROVER, Policy, load_policy, read_policy
from tools.actions import ACTIONS

KNOWN = [a.name for a in ACTIONS]
POLICY = """\
approval_timeout_seconds: 900
actions:
  - action: "*"
    match: {namespace: kube-system}
    effect: forbid
    reason: system namespace
  - action: kubernetes.rollback
    match: {environment: production}
    approvals: 2
    approvers: {users: [UALICE, UBOB], groups: ["@sre-oncall"]}
  - action: kubernetes.*
    match: {environment: staging|dev}
  - action: kubernetes.scale
    match: {environment: production}
    approvers: {groups: [S0SRE]}
    limits: {min_replicas: 2, max_replicas: 10}
  - action: alertmanager.silence
    match: {severity: critical}
    limits: {max_duration_seconds: 14400}
  - action: alertmanager.silence
    auto_approve: {max_duration_seconds: 3600}
    limits: {max_duration_seconds: 14400}
  - action: webhook.call
freezes:
  - name: black-friday
    start: 2026-11-27T00:00:00Z
    end: 2026-11-30T00:00:00Z
    match: {environment: production}
    actions: [kubernetes.*]
    override_approvals: 3
    override_approvers: {users: [UCTO, UALICE, UBOB]}
  - name: weekend
    weekly: {days: [sat, sun], start: "00:00", end: "23:59"}
    match: {environment: production}
    actions: [alertmanager.*]
webhooks:
  - {name: flush-cache, url: "https://automation.example/hooks/flush"}
routing:
  default: "#incidents"
  routes:
    - {match: {namespace: shop}, channel: "#shop-oncall"}
"""

WEDNESDAY = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BLACK_FRIDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a Saturday, too
PROD = {
    "alertname": "HighErrorRate",
    "namespace": "shop",
    "environment": "production",
    "severity": "warning",
}
STAGING = {
    "alertname": "HighErrorRate",
    "namespace": "shop",
    "environment": "staging",
    "severity": "critical",
}
SYSTEM = {"namespace": "kube-system", "environment": "production"}
ROLLBACK = ("kubernetes.rollback", {"namespace": "shop", "deployment": "c", "to_revision": 1})
RESTART = ("kubernetes.restart", {"namespace": "shop", "deployment": "c"})


def scale(n: int) -> tuple[str, dict[str, Any]]:
    return "kubernetes.scale", {"namespace": "shop", "deployment": "c", "replicas": n}


def silence(seconds: int) -> tuple[str, dict[str, Any]]:
    """A silence of exactly the alert these tests use."""
    matchers = [
        {"name": "alertname", "value": "HighErrorRate"},
        {"name": "namespace", "value": "shop"},
    ]
    return "alertmanager.silence", {"matchers": matchers, "duration_seconds": seconds}


def facts(call: tuple[str, dict[str, Any]], labels: dict[str, str]) -> ProposalFacts:
    """The facts of a proposal on an alert, Alertmanager having confirmed (for a silence)
    that it affects no other group's alerts."""
    action, arguments = call
    return ProposalFacts(
        action=action,
        arguments=arguments,
        target=target_of(action, arguments),
        alert_labels=labels,
        reversible=action in REVERSIBLE_ACTIONS,
        others_affected=0,
    )


@pytest.fixture(scope="module")
def policy() -> Policy:
    return read_policy(
        [("policy.yaml", POLICY)], known_actions=KNOWN, reversible_actions=REVERSIBLE_ACTIONS
    )


# (action and arguments, labels, time) -> (outcome, approvals, approver users, groups)
# outcome: "forbidden", "auto", "approve" or "frozen" (approvals needed, freeze in force);
# "frozen-forbidden": a freeze without override.
GRID: list[tuple[tuple[str, dict[str, Any]], dict[str, str], datetime, tuple[Any, ...]]] = [
    (ROLLBACK, SYSTEM, WEDNESDAY, ("forbidden", 0, set(), set())),
    (RESTART, SYSTEM, WEDNESDAY, ("forbidden", 0, set(), set())),
    (ROLLBACK, PROD, WEDNESDAY, ("approve", 2, {"UALICE", "UBOB"}, {"sre-oncall"})),
    (ROLLBACK, STAGING, WEDNESDAY, ("approve", 1, set(), set())),
    (ROLLBACK, PROD, BLACK_FRIDAY, ("frozen", 3, {"UCTO", "UALICE", "UBOB"}, set())),
    (ROLLBACK, STAGING, BLACK_FRIDAY, ("approve", 1, set(), set())),
    (RESTART, PROD, WEDNESDAY, ("forbidden", 0, set(), set())),  # no production rule
    (RESTART, STAGING, BLACK_FRIDAY, ("approve", 1, set(), set())),
    (scale(4), PROD, WEDNESDAY, ("approve", 1, set(), {"s0sre"})),
    (scale(11), PROD, WEDNESDAY, ("forbidden", 0, set(), set())),  # above max_replicas
    (scale(1), PROD, WEDNESDAY, ("forbidden", 0, set(), set())),  # below min_replicas
    (scale(4), PROD, BLACK_FRIDAY, ("frozen", 3, {"UCTO", "UALICE", "UBOB"}, set())),
    (silence(3600), PROD, WEDNESDAY, ("auto", 0, set(), set())),
    (silence(3601), PROD, WEDNESDAY, ("approve", 1, set(), set())),
    (silence(3600), STAGING, WEDNESDAY, ("approve", 1, set(), set())),  # critical
    (silence(20000), STAGING, WEDNESDAY, ("forbidden", 0, set(), set())),  # over 4 h
    (silence(600), PROD, BLACK_FRIDAY, ("frozen-forbidden", 0, set(), set())),  # weekend
    (silence(600), STAGING, BLACK_FRIDAY, ("approve", 1, set(), set())),
    (("webhook.call", {"webhook": "flush-cache"}), PROD, WEDNESDAY, ("approve", 1, set(), set())),
    (("webhook.call", {"webhook": "rm-rf"}), PROD, WEDNESDAY, ("forbidden", 0, set(), set())),
    # An action the bot does not have has no target: never allowed, whatever the rules say.
    (("kubernetes.delete", {}), STAGING, WEDNESDAY, ("forbidden", 0, set(), set())),
    (("shell.exec", {}), STAGING, WEDNESDAY, ("forbidden", 0, set(), set())),  # no rule
]


def outcome(req: Requirement) -> str:
    if not req.allowed:
        return "frozen-forbidden" if req.frozen else "forbidden"
    if req.frozen:
        return "frozen"
    return "auto" if req.auto_approved else "approve"


@pytest.mark.parametrize(("call", "labels", "at", "expected"), GRID)
def test_the_decision_is_what_the_yaml_says(
    policy: Policy,
    call: tuple[str, dict[str, Any]],
    labels: dict[str, str],
    at: datetime,
    expected: tuple[Any, ...],
) -> None:
    req = evaluate(policy, facts(call, labels), at)
    got = (outcome(req), req.required_approvals, set(req.approver_users), set(req.approver_groups))
    assert got == expected, req.reason
    assert req.reason


APPROVERS = [
    # (user, groups) -> may approve a production rollback (UALICE, UBOB or @sre-oncall)?
    ("UALICE", frozenset(), True),
    ("UCAROL", frozenset({"sre-oncall"}), True),
    ("UCAROL", frozenset({"@SRE-Oncall"}), True),
    ("UCAROL", frozenset({"S0SRE"}), False),
    ("UMALLORY", frozenset(), False),
    (AUTO_APPROVER, frozenset(), False),
]


@pytest.mark.parametrize(("user", "groups", "allowed"), APPROVERS)
def test_who_may_approve(policy: Policy, user: str, groups: frozenset[str], allowed: bool) -> None:
    req = evaluate(policy, facts(ROLLBACK, PROD), WEDNESDAY)
    assert may_approve(req, user, groups) is allowed


def _decision(user: str, verdict: str = "approve", groups: tuple[str, ...] = ()) -> Decision:
    return Decision(
        run_id="r",
        proposal_id="p",
        user=user,
        verdict=verdict,  # type: ignore[arg-type]
        groups=list(groups),
    )


def test_only_allowed_and_distinct_approvers_settle_a_proposal(policy: Policy) -> None:
    req = evaluate(policy, facts(ROLLBACK, PROD), WEDNESDAY)
    assert settle(req, [_decision("UALICE"), _decision("UALICE")]) == "pending"
    assert settle(req, [_decision("UALICE"), _decision("UMALLORY")]) == "pending"
    assert settle(req, [_decision("UALICE"), _decision("UMALLORY", "reject")]) == "pending"
    assert settle(req, [_decision("UALICE"), _decision("UC", groups=("sre-oncall",))]) == (
        "approved"
    )
    assert settle(req, [_decision("UALICE"), _decision("UBOB", "reject")]) == "rejected"
    assert settle(req, [_decision(AUTO_APPROVER)]) == "pending"  # not auto-approvable
    auto = evaluate(policy, facts(silence(60), PROD), WEDNESDAY)
    assert settle(auto, [_decision(AUTO_APPROVER)]) == "approved"
    forbidden = evaluate(policy, facts(ROLLBACK, SYSTEM), WEDNESDAY)
    assert settle(forbidden, [_decision("UALICE"), _decision("UBOB")]) == "rejected"


def test_routing_picks_the_first_matching_route(policy: Policy) -> None:
    assert channel_for(policy, {"namespace": "shop"}) == "#shop-oncall"
    assert channel_for(policy, {"namespace": "payments"}) == "#incidents"
    assert channel_for(Policy(), {"namespace": "shop"}) is None


def test_three_mistakes_are_all_reported_with_their_lines() -> None:
    text = """\
approval_timeout_seconds: 600
actions:
  - action: kubernetes.rollback
    approvals: two
  - action: kubernetes.restrat
  - action: kubernetes.scale
    match: {namespace: "shop("}
"""
    with pytest.raises(PolicyError) as caught:
        read_policy(
            [("ops/policy.yaml", text)], known_actions=KNOWN, reversible_actions=REVERSIBLE_ACTIONS
        )
    found = [(p.file, p.line, p.field) for p in caught.value.problems]
    assert found == [
        ("ops/policy.yaml", 4, "actions[0].approvals"),
        ("ops/policy.yaml", 5, "actions[1].action"),
        ("ops/policy.yaml", 7, "actions[2].match"),
    ]
    assert "unknown action 'kubernetes.restrat'" in str(caught.value)


def test_unknown_keys_yaml_errors_and_unquoted_times_point_at_their_line() -> None:
    text = "freezes:\n  - name: f\n    weekly: {days: [fri], start: 16:00, end: '18:00'}\n"
    text += "    aprovers: [U1]\n"
    with pytest.raises(PolicyError) as caught:
        read_policy([("p.yaml", text)])
    assert [str(p) for p in caught.value.problems] == [
        "p.yaml:3: freezes[0].weekly.start: write the time in quotes, e.g. '16:00' (got 960)",
        "p.yaml:4: freezes[0].aprovers: Extra inputs are not permitted",
    ]
    with pytest.raises(PolicyError, match=r"p.yaml:3: not YAML"):
        read_policy([("p.yaml", "actions:\n  - action: [unclosed\n")])


def test_a_directory_merges_its_files_and_refuses_a_setting_made_twice(tmp_path: Path) -> None:
    (tmp_path / "10-actions.yaml").write_text("actions:\n  - action: kubernetes.rollback\n")
    (tmp_path / "20-more.yaml").write_text(
        "approval_timeout_seconds: 60\nactions:\n  - action: kubernetes.restart\n"
    )
    policy = load_policy(tmp_path, known_actions=KNOWN, reversible_actions=REVERSIBLE_ACTIONS)
    assert [r.action for r in policy.actions] == ["kubernetes.rollback", "kubernetes.restart"]
    assert policy.approval_timeout_seconds == 60
    assert policy.actions[1].source == f"{tmp_path / '20-more.yaml'}:3"
    (tmp_path / "30-again.yaml").write_text("# again\napproval_timeout_seconds: 30\n")
    with pytest.raises(PolicyError, match=r"30-again.yaml:2: approval_timeout_seconds: already"):
        load_policy(tmp_path)


def test_the_shipped_policy_is_valid_and_used_without_policy_files(tmp_path: Path) -> None:
    shipped = load_policy(None, known_actions=KNOWN, reversible_actions=REVERSIBLE_ACTIONS)
    assert {r.action for r in shipped.actions} >= set(KNOWN)
    assert load_policy(tmp_path) == shipped  # a directory with only runbooks, say


def test_the_shipped_runbooks_propose_known_actions_and_one_offers_a_restart() -> None:
    books = load_runbooks()
    proposed = {b.proposal.action for b in books if b.proposal is not None}
    assert proposed <= set(KNOWN)
    assert {"kubernetes.rollback", "kubernetes.restart"} <= proposed
