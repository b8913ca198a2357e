"""Where a run is posted and whom it pages (pure functions of the policy and the labels)."""

from __future__ import annotations

from collections.abc import Mapping

from policies.schema import Policy, labels_match


def channel_for(policy: Policy, labels: Mapping[str, str]) -> str | None:
    """The channel of the first route whose matchers fit `labels`, else the default."""
    for route in policy.routing.routes:
        if labels_match(route.match, labels):
            return route.channel
    return policy.routing.default


def escalation_for(policy: Policy, labels: Mapping[str, str]) -> str | None:
    """Whom a run with `labels` pages when it ends needing someone: the `escalate` of the
    first route whose matchers fit, else `routing.default_escalate` (None: nobody)."""
    for route in policy.routing.routes:
        if labels_match(route.match, labels):
            return route.escalate or policy.routing.default_escalate
    return policy.routing.default_escalate
