"""Who may approve, as Slack knows them: user group membership (cached) and the gate.

The policy names approvers by user ID and by user group (ID such as `S0123`, or handle
such as `@sre`). Membership comes from `usergroups.list` and `usergroups.users.list`,
cached for `TTL_SECONDS` per process, so a burst of clicks costs one lookup.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import Gate, escape
from policies.approval import Requirement

TTL_SECONDS = 300.0


class GroupMembers:
    """User group membership, looked up in Slack and cached."""

    def __init__(self, client: AsyncWebClient, ttl: float = TTL_SECONDS) -> None:
        self._client = client
        self._ttl = ttl
        self._groups: tuple[float, dict[str, str]] | None = None  # name -> group ID
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def groups_of(self, user: str, among: Iterable[str]) -> frozenset[str]:
        """Which of the groups `among` (IDs or handles) the user belongs to (as named)."""
        wanted = [g.removeprefix("@").casefold() for g in among]
        if not wanted:
            return frozenset()
        ids = await self._group_ids()
        found = set()
        for name in wanted:
            group_id = ids.get(name)
            if group_id is not None and user in await self._users(group_id):
                found.add(name)
        return frozenset(found)

    async def group_id(self, name: str) -> str | None:
        """The ID of the user group `name` (an ID, or a handle with or without `@`)."""
        return (await self._group_ids()).get(name.removeprefix("@").casefold())

    async def _group_ids(self) -> dict[str, str]:
        if self._groups is not None and self._groups[0] > time.monotonic():
            return self._groups[1]
        answer = await self._client.usergroups_list()
        ids: dict[str, str] = {}
        for group in cast(list[dict[str, Any]], answer.get("usergroups") or []):
            group_id = str(group.get("id", ""))
            ids[group_id.casefold()] = group_id
            if group.get("handle"):
                ids[str(group["handle"]).casefold()] = group_id
        self._groups = (time.monotonic() + self._ttl, ids)
        return ids

    async def _users(self, group_id: str) -> frozenset[str]:
        cached = self._members.get(group_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        answer = await self._client.usergroups_users_list(usergroup=group_id)
        users = frozenset(str(u) for u in cast(list[Any], answer.get("users") or []))
        self._members[group_id] = (time.monotonic() + self._ttl, users)
        return users


def approvers(requirement: Requirement) -> str:
    """`<@U1> or @sre` (Slack mentions), or `anyone in this channel`."""
    who = [f"<@{u}>" for u in sorted(requirement.approver_users)]
    who += [f"@{escape(g)}" for g in sorted(requirement.approver_groups)]
    return " or ".join(who) if who else "anyone in this channel"


def gate(requirement: Requirement) -> Gate:
    """How a proposal message shows the policy's requirement."""
    if not requirement.allowed:
        return Gate(buttons=False, note=f"⛔ Not allowed by policy: {escape(requirement.reason)}")
    if requirement.auto_approved:
        return Gate(buttons=False, note=f"🤖 {escape(requirement.reason)}")
    needs = requirement.required_approvals
    text = f"Needs {needs} approval{'s' if needs != 1 else ''} from {approvers(requirement)}"
    if requirement.frozen:
        text = f"🧊 {escape(requirement.reason)}. {text}"
    return Gate(buttons=True, note=text, asked=approvers(requirement))
