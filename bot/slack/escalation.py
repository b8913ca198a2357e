"""Paging a person: a run that ends needing someone mentions its route's escalation target.

The policy's `routing` names the target (`policies.routing.escalation_for`): a user ID,
a user group ID or a user group's @handle. Slack notifies people only for a mention in
its own syntax, `<@U…>` for a user and `<!subteam^S…>` for a user group, so a handle is
looked up first (`usergroups.list`, cached by `GroupMembers`); one Slack does not know is
named in the message with a note that nobody was paged. A run pages once, ever:
the page is claimed in the run's Slack references (`escalated`, set with HSETNX), so a
redraw, a second replica or a run that ends a second time never pages again.
"""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot.models import Run
from bot.slack.approvers import GroupMembers
from bot.slack.blocks import NEEDS_SOMEONE, Escalation, escape
from bot.slack.refs import MessageRefs
from policies.routing import escalation_for
from policies.schema import Policy

log = logging.getLogger(__name__)

PAGED = "escalated"  # the run's Slack reference that records the page


class Pager:
    """Decides whom a run's outcome message pages, claiming the page once per run."""

    def __init__(self, policy: Policy, refs: MessageRefs, members: GroupMembers) -> None:
        self._policy = policy
        self._refs = refs
        self._members = members

    async def claim(self, run: Run, claimant: str) -> Escalation | None:
        """The escalation of an ended run that needs someone (None for any other run); its
        `mention` is set only for the one caller that claimed the page."""
        if not run.status.terminal or run.status not in NEEDS_SOMEONE:
            return None
        target = escalation_for(self._policy, run.alert.labels)
        if target is None or not await self._refs.mark(run.id, PAGED, claimant):
            return Escalation(target=target, mention=None)
        try:
            mention = await self.mention(target, run.id)
        except BaseException:
            await self._refs.unmark(run.id, PAGED)
            raise
        return Escalation(target=target, mention=mention)

    async def unclaim(self, run: Run, escalation: Escalation | None) -> None:
        """Give the page back: the message carrying it was not posted."""
        if escalation is not None and escalation.mention is not None:
            await self._refs.unmark(run.id, PAGED)

    async def mention(self, target: str, run_id: str) -> str:
        """`target` as a Slack mention; a handle Slack does not resolve is named, unpaged."""
        if target.startswith(("U", "W")):
            return f"<@{target}>"
        if target.startswith("S"):
            return f"<!subteam^{target}>"
        try:
            group_id = await self._members.group_id(target)
        except SlackApiError as exc:
            log.warning(
                "slack: could not look up the escalation group %s: %s",
                target,
                exc.response.get("error"),
                extra={"run_id": run_id},
            )
            return f"`{escape(target)}` (Slack did not say who that is, so nobody was paged)"
        if group_id is None:
            log.warning("slack: no user group %s to page", target, extra={"run_id": run_id})
            return f"`{escape(target)}` (Slack knows no such user group, so nobody was paged)"
        return f"<!subteam^{group_id}>"
