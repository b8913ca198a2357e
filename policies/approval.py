"""Who must approve, and whether the decisions so far settle a proposal (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from bot.models import Decision

Verdict = Literal["approved", "rejected", "pending"]


def tally(decisions: Sequence[Decision], *, required_approvals: int = 1) -> Verdict:
    """A proposal is rejected by any reject, approved by enough distinct approvers."""
    if any(d.verdict == "reject" for d in decisions):
        return "rejected"
    approvers = {d.user for d in decisions if d.verdict == "approve"}
    return "approved" if len(approvers) >= required_approvals else "pending"
