"""Which Slack channel a run is posted to (a pure function of the policy and the labels)."""

from __future__ import annotations

from collections.abc import Mapping

from policies.schema import Policy, labels_match


def channel_for(policy: Policy, labels: Mapping[str, str]) -> str | None:
    """The channel of the first route whose matchers fit `labels`, else the default."""
    for route in policy.routing.routes:
        if labels_match(route.match, labels):
            return route.channel
    return policy.routing.default
