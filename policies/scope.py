"""Which read-only toolsets and Kubernetes namespaces a run may use (pure functions).

The policy's `scopes` is a list of rules matched on the alert's labels; the first rule
that matches decides:

    scopes:
      - match: {namespace: "kube-system|monitoring"}   # label regexes, full match
        toolsets: null                                 # all toolsets
        namespaces: ["*"]                              # any namespace
      - name: payments                                 # for `incident-bot mcp --scope`
        match: {team: payments}
        toolsets: [prometheus, kubernetes, logs]
        namespaces: [payments, shop]

Without a matching rule a run may use every toolset, and only its alert's own `namespace`
label (any namespace when the alert has none). Tools outside the scope are not offered
to the model, and a call naming one, or another namespace, is refused before it is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

ANY = "*"


class ScopeRule(BaseModel):
    """Runs whose alert labels match may use these toolsets and namespaces."""

    model_config = ConfigDict(extra="forbid")
    # Names the rule for `incident-bot mcp --scope NAME`.
    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    # Label name -> regex the label's value must fully match (a missing label is "").
    match: dict[str, str] = {}
    # None: every toolset.
    toolsets: list[str] | None = None
    # None: only the alert's own `namespace` label; ["*"]: any namespace.
    namespaces: list[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every pattern fully matches its label."""
        return all(
            re.fullmatch(pattern, labels.get(label, "")) is not None
            for label, pattern in self.match.items()
        )


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What one run may read. `None` means no limit."""

    toolsets: frozenset[str] | None
    namespaces: frozenset[str] | None

    def allows_toolset(self, toolset: str) -> bool:
        """Whether tools of `toolset` may be used."""
        return self.toolsets is None or toolset in self.toolsets

    def allows_namespace(self, namespace: str) -> bool:
        """Whether `namespace` may be read."""
        return self.namespaces is None or namespace in self.namespaces

    def describe(self) -> str:
        """The scope in words, for the model and the audit trail."""
        toolsets = "all" if self.toolsets is None else ", ".join(sorted(self.toolsets)) or "none"
        namespaces = (
            "any" if self.namespaces is None else ", ".join(sorted(self.namespaces)) or "none"
        )
        return f"toolsets: {toolsets}; namespaces: {namespaces}"


def unique_names(rules: list[ScopeRule]) -> list[ScopeRule]:
    """`rules`, when no two share a name; raises ValueError naming those that do."""
    names = [r.name for r in rules if r.name is not None]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"scope names must be unique: {', '.join(twice)}")
    return rules


def _own_namespace(labels: Mapping[str, str]) -> frozenset[str] | None:
    namespace = labels.get("namespace")
    return frozenset({namespace}) if namespace else None


def scope_for(rules: Sequence[ScopeRule], labels: Mapping[str, str]) -> Scope:
    """The scope of a run for an alert with `labels`: the first matching rule's."""
    rule = next((r for r in rules if r.matches(labels)), None)
    if rule is None:
        return Scope(toolsets=None, namespaces=_own_namespace(labels))
    return _rule_scope(rule, _own_namespace(labels))


def named_scope(rules: Sequence[ScopeRule], name: str) -> Scope | None:
    """The scope of the rule called `name` for a caller without an alert (`incident-bot
    mcp`): a rule without `namespaces` reads no namespace. None: no such rule."""
    rule = next((r for r in rules if r.name == name), None)
    return None if rule is None else _rule_scope(rule, frozenset())


def _rule_scope(rule: ScopeRule, own: frozenset[str] | None) -> Scope:
    """The rule's scope; `own` are the namespaces a rule without `namespaces` allows."""
    toolsets = None if rule.toolsets is None else frozenset(rule.toolsets)
    if rule.namespaces is None:
        namespaces = own
    elif ANY in rule.namespaces:
        namespaces = None
    else:
        namespaces = frozenset(rule.namespaces)
    return Scope(toolsets=toolsets, namespaces=namespaces)
