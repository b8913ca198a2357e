"""`alertmanager.silence`: silence alerts for a bounded time, once per proposal.

The silence's comment carries the run and the proposal (`[incident-bot run R, proposal
P]`). Before creating one, the action lists Alertmanager's silences (expired ones too)
and looks for that marker: a silence the proposal already made is reported, never made
twice. The duration is bounded by the policy before the action is ever offered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from policies.target import SilenceMatcher, Target
from tools.actions.base import Action, ActionContext, ActionError, Effect

CREATED_BY = "incident-bot"


class Matcher(BaseModel):
    """One Alertmanager matcher: `name="value"`, `name=~"regex"`, `!=` or `!~`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, examples=["alertname"])
    value: str = Field(examples=["HighErrorRate"])
    is_regex: bool = False
    is_equal: bool = True

    def as_target(self) -> SilenceMatcher:
        """The matcher as the policy reads it."""
        return SilenceMatcher(
            name=self.name, value=self.value, is_regex=self.is_regex, is_equal=self.is_equal
        )

    def __str__(self) -> str:
        return str(self.as_target())


class SilenceInput(BaseModel):
    """Arguments of `alertmanager.silence`."""

    model_config = ConfigDict(extra="forbid")
    matchers: list[Matcher] = Field(
        min_length=1, description="Alerts matching all of these are silenced."
    )
    duration_seconds: int = Field(
        ge=1, le=7 * 24 * 3600, description="How long the silence lasts.", examples=[3600]
    )
    comment: str = Field(default="", description="Why, for the people who see the silence.")


def marker(ctx: ActionContext, proposal_id: str) -> str:
    """The tag in the comment that ties a silence to its proposal."""
    return f"[incident-bot run {ctx.run_id or '?'}, proposal {proposal_id}]"


def _base(ctx: ActionContext) -> str:
    if not ctx.alertmanager_url:
        raise ActionError("Alertmanager is not configured (ALERTMANAGER_URL)")
    return ctx.alertmanager_url.rstrip("/")


async def _call(ctx: ActionContext, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
    url = f"{_base(ctx)}{path}"
    timeout = aiohttp.ClientTimeout(total=ctx.timeout_seconds)
    auth = ctx.alertmanager_auth
    try:
        async with ctx.http.request(
            method, url, timeout=timeout, headers=dict(auth.headers), ssl=auth.ssl, **kwargs
        ) as response:
            text = await response.text()
            if response.status >= 300:
                raise ActionError(f"Alertmanager answered {response.status} to {what}: {text}")
            return json.loads(text) if text else None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ActionError(f"cannot reach Alertmanager at {url} ({what}): {exc!r}") from exc


async def find_silence(ctx: ActionContext, proposal_id: str) -> dict[str, Any] | None:
    """The silence this proposal created, in any state, if there is one."""
    tag = f", proposal {proposal_id}]"
    silences = await _call(ctx, "GET", "/api/v2/silences", what="listing silences")
    mine = [s for s in silences or [] if tag in str(s.get("comment", ""))]
    return max(mine, key=lambda s: str(s.get("updatedAt", ""))) if mine else None


def _describe(silence: dict[str, Any]) -> str:
    state = silence.get("status", {}).get("state", "?")
    return f"silence {silence.get('id')} ({state}, ends {silence.get('endsAt')})"


def _matchers_text(args: SilenceInput) -> str:
    return "{" + ", ".join(str(m) for m in args.matchers) + "}"


async def dry_run(ctx: ActionContext, args: SilenceInput) -> str:
    """`silence {…}: 2 firing alert(s) notifying -> silenced for 3600s (until …)`."""
    params = [("filter", str(m)) for m in args.matchers] + [("silenced", "false")]
    alerts = await _call(ctx, "GET", "/api/v2/alerts", what="listing alerts", params=params)
    until = datetime.now(UTC) + timedelta(seconds=args.duration_seconds)
    return (
        f"silence {_matchers_text(args)}: {len(alerts or [])} alert(s) notifying -> "
        f"silenced for {args.duration_seconds}s (until {until:%Y-%m-%d %H:%M:%S} UTC)"
    )


async def execute(ctx: ActionContext, args: SilenceInput, proposal_id: str) -> str:
    """Create the silence, unless this proposal already created one."""
    existing = await find_silence(ctx, proposal_id)
    if existing is not None:
        return f"{_describe(existing)} already exists for {proposal_id}: nothing changed"
    starts = datetime.now(UTC)
    comment = " ".join(filter(None, [args.comment, marker(ctx, proposal_id)]))
    body = {
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}
            for m in args.matchers
        ],
        "startsAt": starts.isoformat(),
        "endsAt": (starts + timedelta(seconds=args.duration_seconds)).isoformat(),
        "createdBy": CREATED_BY,
        "comment": comment,
    }
    created = await _call(ctx, "POST", "/api/v2/silences", what="creating a silence", json=body)
    return (
        f"silence {created.get('silenceID')} created: {_matchers_text(args)} for "
        f"{args.duration_seconds}s"
    )


async def observe(ctx: ActionContext, args: SilenceInput) -> str:
    """The proposal's silence, if it exists."""
    found = await find_silence(ctx, ctx.proposal_id)
    if found is None:
        return f"no silence of proposal {ctx.proposal_id} for {_matchers_text(args)}"
    return _describe(found)


async def observe_effect(ctx: ActionContext, args: SilenceInput, proposal_id: str) -> Effect:
    """`applied` when a silence (in any state) carries this proposal's marker."""
    try:
        found = await find_silence(ctx, proposal_id)
    except ActionError:
        return "unknown"
    return "not_applied" if found is None else "applied"


def target(args: SilenceInput) -> Target:
    """The alerts it silences: its matchers, in the namespace an equality matcher names
    (every namespace when none does)."""
    matchers = tuple(m.as_target() for m in args.matchers)
    namespace = next((m.value for m in matchers if m.name == "namespace" and m.equality), "")
    return Target(kind="silence", namespace=namespace, matchers=matchers)


async def firing_alerts(ctx: ActionContext, args: SilenceInput) -> list[dict[str, Any]]:
    """The alerts Alertmanager has now (active, silenced or not) that the silence matches."""
    params = [("filter", str(m)) for m in args.matchers] + [("active", "true")]
    alerts = await _call(ctx, "GET", "/api/v2/alerts", what="listing alerts", params=params)
    return [a for a in alerts or [] if isinstance(a, dict)]


SILENCE = Action(
    name="alertmanager.silence",
    description=(
        "Silence alerts matching the matchers for duration_seconds (bounded by policy), "
        "e.g. a known, harmless alert while its fix rolls out. Stops notifications only."
    ),
    input_model=SilenceInput,
    dry_run=dry_run,
    execute=execute,
    observe=observe,
    observe_effect=observe_effect,
    target=target,
    reversible=True,
    # Looked up by the proposal's marker before it is created.
    idempotent_by_proposal=True,
)
