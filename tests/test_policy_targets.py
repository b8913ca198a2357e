"""The policy judges what an action changes: rules match the target's labels (from the
arguments) over the alert's, a change outside the alert's namespace needs a rule that
allows it, and auto-approval is only for a bounded, reversible change of the run's own
alerts. `policy check` and `policy explain` say so with file, line and target."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.approvals import KNOWN_ACTIONS, REVERSIBLE_ACTIONS, target_of
from policies.approval import ProposalFacts, evaluate
from policies.documents import PolicyError
from policies.schema import Policy, load_policy, read_policy

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
ALERT = {"alertname": "HighErrorRate", "namespace": "shop", "service": "checkout"}
GROUP = {"alertname": "HighErrorRate", "namespace": "shop"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped() -> Policy:
    return load_policy(None, known_actions=KNOWN_ACTIONS, reversible_actions=REVERSIBLE_ACTIONS)


def facts(action: str, arguments: dict[str, Any], **overrides: Any) -> ProposalFacts:
    base = ProposalFacts(
        action=action,
        arguments=arguments,
        target=target_of(action, arguments),
        alert_labels=ALERT,
        group_labels=GROUP,
        reversible=action in REVERSIBLE_ACTIONS,
    )
    return replace(base, **overrides)


def silence(*matchers: tuple[str, str, bool], seconds: int = 1800) -> dict[str, Any]:
    return {
        "matchers": [{"name": n, "value": v, "is_regex": r} for n, v, r in matchers],
        "duration_seconds": seconds,
    }


EXACT = silence(
    ("alertname", "HighErrorRate", False),
    ("namespace", "shop", False),
    ("service", "checkout", False),
)


def test_the_system_namespace_rule_applies_to_the_target_not_the_alert(shipped: Policy) -> None:
    coredns = {"namespace": "kube-system", "deployment": "coredns", "replicas": 0}
    req = evaluate(shipped, facts("kubernetes.scale", coredns), NOW)
    assert not req.allowed
    assert req.reason == "forbidden: the bot never changes the cluster's own system namespaces"
    rollback = {"namespace": "shop", "deployment": "checkout", "to_revision": 1}
    assert evaluate(shipped, facts("kubernetes.rollback", rollback), NOW).allowed


def test_a_target_in_another_namespace_needs_cross_namespace() -> None:
    text = "actions:\n  - action: kubernetes.rollback\n"
    payments = {"namespace": "payments", "deployment": "api", "to_revision": 3}
    req = evaluate(read_policy([("p.yaml", text)]), facts("kubernetes.rollback", payments), NOW)
    assert not req.allowed
    assert req.reason == (
        "deployment payments/api reaches namespace payments, outside the alert's namespace "
        "shop; no rule allows it (cross_namespace: true)"
    )
    allowing = read_policy([("p.yaml", text + "    cross_namespace: true\n")])
    assert evaluate(allowing, facts("kubernetes.rollback", payments), NOW).allowed


def test_rules_match_the_targets_labels_over_the_alerts() -> None:
    # The alert says warning; the silence names severity=critical: the critical rule decides.
    policy = read_policy(
        [
            (
                "p.yaml",
                "actions:\n"
                "  - action: alertmanager.silence\n    match: {severity: critical}\n"
                "    approvals: 2\n"
                "  - action: alertmanager.silence\n",
            )
        ]
    )
    critical = silence(("alertname", "HighErrorRate", False), ("namespace", "shop", False))
    critical["matchers"].append({"name": "severity", "value": "critical"})
    req = evaluate(policy, facts("alertmanager.silence", critical), NOW)
    assert req.required_approvals == 2


@pytest.mark.parametrize(
    ("arguments", "overrides", "why"),
    [
        (silence(("alertname", ".+", True)), {}, "reaches every namespace"),
        (
            silence(("alertname", "HighErrorRate", False), ("namespace", "shop", False)),
            {"group_labels": {**GROUP, "service": "checkout"}},
            "no matcher for service",
        ),
        (
            silence(("alertname", "Other", False), ("namespace", "shop", False)),
            {},
            'matchers the run\'s alert does not have: alertname="Other"',
        ),
        (EXACT, {"flagged": True}, "untrusted text in this run addressed the model"),
        (EXACT, {"others_affected": 2}, "affect 2 firing alert(s) of other groups"),
        (EXACT, {"others_affected": None}, "Alertmanager was not asked"),
        ({**EXACT, "duration_seconds": 7200}, {}, "the duration is above 3600s"),
    ],
)
def test_a_silence_is_approved_by_the_policy_only_for_the_runs_own_alerts(
    shipped: Policy, arguments: dict[str, Any], overrides: dict[str, Any], why: str
) -> None:
    req = evaluate(shipped, facts("alertmanager.silence", arguments, **overrides), NOW)
    assert not req.auto_approved
    assert why in req.reason


def test_an_exact_silence_awaits_alertmanager_then_is_approved_by_the_policy(
    shipped: Policy,
) -> None:
    unasked = evaluate(shipped, facts("alertmanager.silence", EXACT), NOW)
    assert unasked.allowed and not unasked.auto_approved and unasked.awaits_alert_check
    asked = evaluate(shipped, facts("alertmanager.silence", EXACT, others_affected=0), NOW)
    assert asked.auto_approved
    assert asked.reason.startswith("approved by the policy (auto-approve")


def test_an_action_that_is_not_reversible_is_never_approved_by_the_policy() -> None:
    # Even where the schema check was not applied, evaluate asks the action's own traits.
    policy = read_policy(
        [("p.yaml", "actions:\n  - action: kubernetes.restart\n    auto_approve: {}\n")]
    )
    restart = {"namespace": "shop", "deployment": "checkout"}
    req = evaluate(policy, facts("kubernetes.restart", restart, others_affected=0), NOW)
    assert req.allowed and not req.auto_approved
    assert "kubernetes.restart is not bounded and reversible" in req.reason


@pytest.mark.parametrize("action", ["kubernetes.*", "kubernetes.rollback", "webhook.call", "*"])
def test_policy_check_refuses_auto_approve_on_what_is_not_reversible(
    tmp_path: Path, action: str
) -> None:
    text = f'actions:\n  - action: "{action}"\n    auto_approve: {{max_duration_seconds: 60}}\n'
    with pytest.raises(PolicyError) as raised:
        read_policy(
            [("ops/policy.yaml", text)],
            known_actions=KNOWN_ACTIONS,
            reversible_actions=REVERSIBLE_ACTIONS,
        )
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == (
        "ops/policy.yaml",
        3,
        "actions[0].auto_approve",
    )
    assert "auto_approve is only for bounded, reversible actions (alertmanager.silence)" in str(
        problem
    )
    (tmp_path / "policy.yaml").write_text(text)
    checked = _cli("policy", "check", str(tmp_path))
    assert checked.returncode == 1
    assert f"{tmp_path / 'policy.yaml'}:3: actions[0].auto_approve: auto_approve is only" in (
        checked.stdout
    )


def test_policy_explain_judges_the_target_from_the_arguments() -> None:
    coredns = json.dumps({"namespace": "kube-system", "deployment": "coredns", "replicas": 0})
    shown = _cli(
        "policy", "explain", "kubernetes.scale", "--labels", "namespace=shop", "--args", coredns
    )
    assert shown.returncode == 0, shown.stderr
    assert "  target:    deployment kube-system/coredns\n" in shown.stdout
    assert "  rule:      actions[0] forbid * where namespace=kube-.*|istio-system|cert-manager" in (
        shown.stdout
    )
    assert "  allowed:   NO\n" in shown.stdout
    bad = _cli("policy", "explain", "kubernetes.scale", "--args", "namespace=shop")
    assert bad.returncode == 2
    assert "--args: not JSON" in bad.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )


def test_the_policy_layer_imports_nothing_above_it() -> None:
    """`policies/` is pure: no import of `bot` or `tools` (no package cycle)."""
    import ast

    above = []
    for path in sorted((ROOT / "policies").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            above += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("bot", "tools")]
    assert above == []
