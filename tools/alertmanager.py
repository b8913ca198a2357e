"""Read-only Alertmanager tools (API v2): current alerts, silences and alert groups.

Filters are Alertmanager matchers (`namespace="shop"`, `alertname=~"High.*"`), passed
through as the API's `filter` parameters; a matcher Alertmanager cannot parse comes back as
an error with its own message.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tools.describing import ago, failed, get, listed, objects, plural, quote, text, texts, total
from tools.http_backend import BackendError, fetch, join_url
from tools.toolset import Health, ToolContext, ToolResult, Toolset, tool

NOT_CONFIGURED = "Alertmanager is not configured (ALERTMANAGER_URL is unset)"
NARROW = 'more matchers, e.g. namespace="shop" or alertname="HighErrorRate"'
MAX_ITEMS = 100

JsonObject = dict[str, JsonValue]


class AlertmanagerError(Exception):
    """Alertmanager refused a request or could not be reached."""


async def _api(ctx: ToolContext, path: str, params: list[tuple[str, str]]) -> JsonValue:
    if not ctx.alertmanager_url:
        raise AlertmanagerError(NOT_CONFIGURED)
    url = join_url(ctx.alertmanager_url, f"/api/v2/{path}")
    try:
        answer = await fetch(
            ctx.http,
            url,
            service="Alertmanager",
            auth=ctx.alertmanager_auth,
            timeout_seconds=ctx.timeout_seconds,
            params=params,
        )
    except BackendError as exc:
        raise AlertmanagerError(str(exc)) from exc
    try:
        body: JsonValue = json.loads(answer.text)
    except ValueError:
        body = answer.text.strip()
    if not answer.ok:
        detail = body if isinstance(body, str) else json.dumps(body)
        raise AlertmanagerError(f"Alertmanager answered HTTP {answer.status}: {detail}")
    return body


def _objects(value: JsonValue) -> list[JsonObject]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _get(obj: JsonValue, *path: str) -> JsonValue:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _filters(matchers: list[str]) -> list[tuple[str, str]]:
    return [("filter", m) for m in matchers]


def _capped(items: list[JsonValue], what: str) -> tuple[list[JsonValue], str | None]:
    if len(items) <= MAX_ITEMS:
        return items, None
    return items[:MAX_ITEMS], f"{len(items)} {what}; showing {MAX_ITEMS}: add matchers"


class AlertsInput(BaseModel):
    """Arguments of `alertmanager.alerts`."""

    model_config = ConfigDict(extra="forbid")
    matchers: list[str] = Field(
        default_factory=list,
        description="Alertmanager matchers every alert must satisfy (=, !=, =~, !~).",
        examples=[['namespace="shop"', 'alertname=~"High.*"']],
    )
    include_silenced: bool = Field(default=False, description="Also alerts a silence mutes.")
    include_inhibited: bool = Field(
        default=False, description="Also alerts another alert inhibits."
    )


def _alert(alert: JsonObject) -> JsonObject:
    return {
        "labels": alert.get("labels"),
        "annotations": alert.get("annotations"),
        "state": _get(alert, "status", "state"),
        "silenced_by": _get(alert, "status", "silencedBy") or None,
        "inhibited_by": _get(alert, "status", "inhibitedBy") or None,
        "starts_at": alert.get("startsAt"),
        "fingerprint": alert.get("fingerprint"),
    }


def _where(matchers: list[str]) -> str:
    return f" matching {', '.join(matchers)}" if matchers else ""


def describe_alerts(args: AlertsInput, result: ToolResult) -> str:
    """`Listed 2 alerts in Alertmanager matching namespace="shop": HighErrorRate, ...`."""
    which = _where(args.matchers)
    if result.status == "error":
        return failed(f"list the alerts in Alertmanager{which}", result)
    if result.status == "no_data":
        return f"No alerts in Alertmanager{which}"
    found = objects(result.data)
    names = [text(get(a, "labels", "alertname")) for a in found]
    muted = sum(1 for a in found if a.get("silenced_by") or a.get("inhibited_by"))
    count = plural(total(result, len(found)), "alert")
    return f"Listed {count} in Alertmanager{which}: {listed(names)}" + (
        f"; {muted} silenced or inhibited" if muted else ""
    )


@tool("alertmanager.alerts", narrow=NARROW, describe=describe_alerts)
async def alerts(ctx: ToolContext, args: AlertsInput) -> ToolResult:
    """List the alerts Alertmanager holds now, from every source, with labels, annotations,
    state (active, suppressed), which silences or alerts mute them, and since when they fire.
    Use it to see related alerts (same namespace, same node) and whether someone already
    silenced one. Example: matchers=['namespace="shop"'].
    """
    params = [
        ("active", "true"),
        ("silenced", str(args.include_silenced).lower()),
        ("inhibited", str(args.include_inhibited).lower()),
        *_filters(args.matchers),
    ]
    try:
        body = await _api(ctx, "alerts", params)
    except AlertmanagerError as exc:
        return ToolResult.fail(str(exc))
    found: list[JsonValue] = [_alert(a) for a in _objects(body)]
    if not found:
        return ToolResult.no_data(f"no alerts match {args.matchers or 'any matcher'}")
    items, note = _capped(found, "alerts")
    return ToolResult.ok(items, note=note)


class SilencesInput(BaseModel):
    """Arguments of `alertmanager.silences`."""

    model_config = ConfigDict(extra="forbid")
    matchers: list[str] = Field(
        default_factory=list,
        description="Only silences whose matchers include these.",
        examples=[['service="checkout"']],
    )
    state: Literal["active", "pending", "expired"] | None = Field(
        default=None, description="Only silences in this state; omit for active and pending."
    )


def describe_silences(args: SilencesInput, result: ToolResult) -> str:
    """`Found 1 silence: alertname="X" by alice, 'capacity review', ends in 6 d`."""
    which = f"{args.state or 'active or pending'} silences" + _where(args.matchers)
    if result.status == "error":
        return failed(f"list the {which}", result)
    if result.status == "no_data":
        return f"No {which}"
    found = objects(result.data)
    first = found[0] if found else {}
    matched = listed(texts(first.get("matchers")), 2)
    started = ago(first.get("starts_at"))
    return (
        f"Found {plural(total(result, len(found)), 'silence')}: {text(first.get('state'))} "
        f"on {matched} by {text(first.get('created_by'))}, {quote(text(first.get('comment')), 50)}"
        + (f", started {started}" if started else "")
    )


@tool("alertmanager.silences", narrow=NARROW, describe=describe_silences)
async def silences(ctx: ToolContext, args: SilencesInput) -> ToolResult:
    """List Alertmanager's silences: id, matchers, state (active, pending, expired), who
    created it, the comment, and its start and end. Use it to check whether an alert is
    already being handled. Example: matchers=['service="checkout"'].
    """
    try:
        body = await _api(ctx, "silences", _filters(args.matchers))
    except AlertmanagerError as exc:
        return ToolResult.fail(str(exc))
    found: list[JsonValue] = []
    for silence in _objects(body):
        state = _get(silence, "status", "state")
        if (args.state is None and state == "expired") or args.state not in (None, state):
            continue
        found.append(
            {
                "id": silence.get("id"),
                "state": state,
                "matchers": [
                    f"{m.get('name')}{_operator(m)}{json.dumps(m.get('value'))}"
                    for m in _objects(silence.get("matchers"))
                ],
                "created_by": silence.get("createdBy"),
                "comment": silence.get("comment"),
                "starts_at": silence.get("startsAt"),
                "ends_at": silence.get("endsAt"),
            }
        )
    if not found:
        return ToolResult.no_data(f"no {args.state or 'active or pending'} silences match")
    items, note = _capped(found, "silences")
    return ToolResult.ok(items, note=note)


def _operator(matcher: JsonObject) -> str:
    equal = matcher.get("isEqual", True) is not False
    if matcher.get("isRegex"):
        return "=~" if equal else "!~"
    return "=" if equal else "!="


class GroupsInput(BaseModel):
    """Arguments of `alertmanager.groups`."""

    model_config = ConfigDict(extra="forbid")
    matchers: list[str] = Field(
        default_factory=list,
        description="Alertmanager matchers every alert must satisfy (=, !=, =~, !~).",
        examples=[['namespace="shop"', 'alertname=~"High.*"']],
    )


def describe_groups(args: GroupsInput, result: ToolResult) -> str:
    """`Listed 2 alert groups (2 alerts) for receiver incident-bot: HighErrorRate, ...`."""
    which = _where(args.matchers)
    if result.status == "error":
        return failed(f"list the alert groups{which}", result)
    if result.status == "no_data":
        return f"No alert groups{which}"
    found = objects(result.data)
    alerts = sum(a for g in found if isinstance(a := g.get("alerts"), int))
    receivers = listed([text(g.get("receiver")) for g in found], 2)
    names = [text(m.get("alertname")) for g in found for m in objects(g.get("members"))]
    count = plural(total(result, len(found)), "alert group")
    return f"Listed {count} ({plural(alerts, 'alert')}) for {receivers}: {listed(names)}"


@tool("alertmanager.groups", narrow=NARROW, describe=describe_groups)
async def groups(ctx: ToolContext, args: GroupsInput) -> ToolResult:
    """List Alertmanager's alert groups as it notifies them: the group's labels, its
    receiver, and the alerts in it (names, states, start times). Use it to see which alerts
    arrive together and where they are sent. Example: matchers=['namespace="shop"'].
    """
    try:
        body = await _api(ctx, "alerts/groups", _filters(args.matchers))
    except AlertmanagerError as exc:
        return ToolResult.fail(str(exc))
    found: list[JsonValue] = []
    for group in _objects(body):
        members = _objects(group.get("alerts"))
        found.append(
            {
                "labels": group.get("labels"),
                "receiver": _get(group, "receiver", "name"),
                "alerts": len(members),
                "members": [
                    {
                        "alertname": _get(a, "labels", "alertname"),
                        "state": _get(a, "status", "state"),
                        "starts_at": a.get("startsAt"),
                    }
                    for a in members[:20]
                ],
            }
        )
    if not found:
        return ToolResult.no_data(f"no alert groups match {args.matchers or 'any matcher'}")
    items, note = _capped(found, "groups")
    return ToolResult.ok(items, note=note)


async def probe_alertmanager(ctx: ToolContext) -> Health:
    """Whether Alertmanager is configured and answers `/api/v2/status`."""
    if not ctx.alertmanager_url:
        return Health(configured=False, reachable=False, detail="ALERTMANAGER_URL is unset")
    try:
        body = await _api(ctx, "status", [])
    except AlertmanagerError as exc:
        return Health(configured=True, reachable=False, detail=str(exc))
    version = _get(body, "versionInfo", "version") or "unknown version"
    return Health(
        configured=True,
        reachable=True,
        detail=f"Alertmanager {version} at {ctx.alertmanager_url}",
    )


ALERTMANAGER = Toolset(
    name="alertmanager", tools=(alerts, silences, groups), probe=probe_alertmanager
)
