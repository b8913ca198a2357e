"""What an action changes, as the policy judges it (pure data, no I/O).

Every action derives its `Target` from its validated arguments: the namespace, kind and
name of what it changes, or for a silence its matchers. The policy matches its rules on
the target's labels (they override the alert's), and every channel shows
`Target.describe()`, never the model's own description of what it wants to change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class SilenceMatcher:
    """One Alertmanager matcher of a silence: `name="value"`, `=~`, `!=` or `!~`."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    @property
    def equality(self) -> bool:
        """Whether it is a plain `name="value"` matcher."""
        return self.is_equal and not self.is_regex

    def __str__(self) -> str:
        op = {(True, False): "=", (True, True): "=~", (False, False): "!=", (False, True): "!~"}
        return f"{self.name}{op[(self.is_equal, self.is_regex)]}{json.dumps(self.value)}"


@dataclass(frozen=True, kw_only=True)
class Target:
    """What one action changes.

    `namespace` is None for what has no namespace (a webhook), and "" for a change that
    reaches every namespace (a silence without a `namespace="…"` matcher).
    """

    kind: str
    name: str = ""
    namespace: str | None = None
    matchers: tuple[SilenceMatcher, ...] = ()
    # Arguments the action cannot read: such a target is never allowed.
    problem: str = ""

    @classmethod
    def invalid(cls, problem: str) -> Target:
        """The target of arguments that do not validate."""
        return cls(kind="invalid", problem=problem)

    def labels(self) -> dict[str, str]:
        """The labels the policy's rules see for this target (they override the alert's):
        `namespace`, `target_kind`, `target_name`, and a silence's equality matchers."""
        labels = {m.name: m.value for m in self.matchers if m.equality}
        labels |= {"target_kind": self.kind, "target_name": self.name}
        labels["namespace"] = self.namespace or ""
        return labels

    def describe(self) -> str:
        """`deployment shop/checkout`, `silence {alertname="X", namespace="shop"}`."""
        if self.problem:
            return f"invalid arguments ({self.problem})"
        if self.matchers:
            return f"{self.kind} {{{', '.join(str(m) for m in self.matchers)}}}"
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}".rstrip()


def scope_problem(
    target: Target, alert_labels: Mapping[str, str], group_labels: Mapping[str, str]
) -> str | None:
    """Why a change does not stay within the run's own alerts; None when it does.

    Only a silence can: every matcher must be an equality matcher that the alert itself
    satisfies, and together they must name `alertname` and every label of the group.
    """
    if target.kind != "silence":
        return f"a {target.kind} is not limited to the run's own alerts"
    loose = [str(m) for m in target.matchers if not m.equality]
    if loose:
        return f'matchers other than name="value": {", ".join(loose)}'
    foreign = [str(m) for m in target.matchers if alert_labels.get(m.name) != m.value]
    if foreign:
        return f"matchers the run's alert does not have: {', '.join(foreign)}"
    named = {m.name for m in target.matchers}
    missing = sorted({"alertname", *group_labels} - named)
    if missing:
        return f"no matcher for {', '.join(missing)} (needed: alertname and the group's labels)"
    return None
