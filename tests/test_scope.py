"""The scope of a run (pure): which toolsets and namespaces its alert's labels allow."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.scoping import offered_tools, refusal
from policies.scope import Scope, ScopeRule, scope_for
from tools.alertmanager import ALERTMANAGER
from tools.kubernetes import KUBERNETES, pods
from tools.logs import LOGS
from tools.prometheus import PROMETHEUS
from tools.toolset import Toolset

SHOP = {"alertname": "HighErrorRate", "namespace": "shop", "team": "payments"}
RULES = [
    ScopeRule(match={"namespace": "kube-.*"}, namespaces=["*"]),
    ScopeRule(
        match={"team": "payments"},
        toolsets=["prometheus", "kubernetes"],
        namespaces=["shop", "payments"],
    ),
    ScopeRule(match={"team": "search"}, toolsets=["prometheus"]),
]


def test_no_rule_allows_all_toolsets_and_the_alerts_namespace() -> None:
    assert scope_for([], SHOP) == Scope(toolsets=None, namespaces=frozenset({"shop"}))
    assert scope_for([], {"alertname": "NodeDown"}) == Scope(toolsets=None, namespaces=None)


def test_first_matching_rule_wins() -> None:
    assert scope_for(RULES, SHOP) == Scope(
        toolsets=frozenset({"prometheus", "kubernetes"}),
        namespaces=frozenset({"shop", "payments"}),
    )
    kube = scope_for(RULES, {"namespace": "kube-system", "team": "payments"})
    assert kube == Scope(toolsets=None, namespaces=None)
    search = scope_for(RULES, {"namespace": "search", "team": "search"})
    assert search == Scope(toolsets=frozenset({"prometheus"}), namespaces=frozenset({"search"}))
    # Regexes match the whole value; a missing label is the empty string.
    assert scope_for(RULES, {"team": "payments-eu"}).namespaces is None


def test_rules_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        ScopeRule.model_validate({"match": {}, "tools": ["prometheus"]})


def test_scope_applied_to_tools() -> None:
    everything: tuple[Toolset, ...] = (PROMETHEUS, ALERTMANAGER, KUBERNETES, LOGS)
    tools = [t for ts in everything for t in ts.tools]
    scope = scope_for(RULES, SHOP)
    assert {t.toolset for t in offered_tools(scope, tools)} == {"prometheus", "kubernetes"}
    assert refusal(scope, pods, pods.validate_input({"namespace": "shop"})) is None
    refused = refusal(scope, pods, pods.validate_input({"namespace": "kube-system"}))
    assert refused is not None and "namespace 'kube-system' is outside" in refused
    [logs_query] = LOGS.tools
    refused = refusal(scope, logs_query, logs_query.validate_input({"query": '{a="b"}'}))
    assert refused is not None and "logs_query is outside this run's scope" in refused


def test_every_namespaced_tool_declares_its_namespace_field() -> None:
    for tool in KUBERNETES.tools:
        expected = None if tool.name == "kubernetes.nodes" else "namespace"
        assert tool.namespace_field == expected, tool.name
    with pytest.raises(ValueError, match="must be named"):
        Toolset(name="logs", tools=(pods,))
