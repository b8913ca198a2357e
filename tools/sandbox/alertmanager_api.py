"""The Alertmanager API v2 subset of the sandbox: alerts, alert groups, silences, status.

Alerts and silences come from the scenario; `POST /api/v2/silences` adds one, which then
mutes the alerts its matchers match; `filter` matchers are parsed like
Alertmanager's (`name="value"`, `=~`, `!=`, `!~`, quotes optional) and a bad one is
answered with HTTP 400 and Alertmanager's message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from tools.sandbox.kubernetes_api import timestamp
from tools.sandbox.scenario import WORLD, JsonDict, World, stable_uid
from tools.sandbox.scenario_parts import SilenceSpec

routes = web.RouteTableDef()

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')
Matcher = Callable[[dict[str, str]], bool]


class BadMatcher(ValueError):
    """A matcher Alertmanager cannot parse."""


def parse_matcher(text: str) -> tuple[str, str, str]:
    """(name, operator, value) of one matcher."""
    found = _MATCHER.match(text)
    if found is None:
        raise BadMatcher(f"bad matcher format: {text}")
    name, op, value = found.groups()
    return name, op, value


def matcher(text: str) -> Matcher:
    """A test of a label set for one matcher."""
    name, op, value = parse_matcher(text)

    def test(labels: dict[str, str]) -> bool:
        actual = labels.get(name, "")
        hit = re.fullmatch(value, actual) is not None if "~" in op else actual == value
        return hit == (op in ("=", "=~"))

    return test


def _filters(request: web.Request) -> list[Matcher]:
    return [matcher(f) for f in request.query.getall("filter", [])]


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "true").lower() == "true"


def _silence_state(world: World, spec: SilenceSpec) -> str:
    now = world.clock() - world.started
    if now < spec.starts:
        return "pending"
    return "active" if now < spec.ends else "expired"


def _silence_id(spec: SilenceSpec) -> str:
    return spec.id or stable_uid("silence", *spec.matchers, str(spec.starts))


def render_alerts(world: World) -> list[JsonDict]:
    """Every alert, in the API's shape."""
    active_silences = {
        _silence_id(s) for s in world.scenario.silences if _silence_state(world, s) == "active"
    }
    created = [
        (_silence_id(s), [matcher(m) for m in s.matchers])
        for s in world.created_silences
        if _silence_state(world, s) == "active"
    ]
    alerts = []
    for spec in world.scenario.alerts:
        silenced = [s for s in spec.silenced_by if s in active_silences]
        silenced += [sid for sid, tests in created if all(t(spec.labels) for t in tests)]
        alerts.append(
            {
                "labels": spec.labels,
                "annotations": spec.annotations,
                "startsAt": timestamp(world.started + spec.at),
                "endsAt": timestamp(world.clock() + 300),
                "updatedAt": timestamp(world.clock()),
                "fingerprint": stable_uid(
                    "alert", *(f"{k}={v}" for k, v in sorted(spec.labels.items()))
                ).replace("-", "")[:16],
                "receivers": [{"name": "incident-bot"}],
                "status": {
                    "state": "suppressed" if silenced else "active",
                    "silencedBy": silenced,
                    "inhibitedBy": [],
                },
                "generatorURL": "",
            }
        )
    return alerts


def _selected(request: web.Request) -> list[JsonDict]:
    tests = _filters(request)
    wanted = {
        "active": _flag(request, "active"),
        "silenced": _flag(request, "silenced"),
        "inhibited": _flag(request, "inhibited"),
    }
    found = []
    for alert in render_alerts(request.app[WORLD]):
        status = alert["status"]
        if status["silencedBy"] and not wanted["silenced"]:
            continue
        if status["inhibitedBy"] and not wanted["inhibited"]:
            continue
        if status["state"] == "active" and not wanted["active"]:
            continue
        if all(t(alert["labels"]) for t in tests):
            found.append(alert)
    return found


def _bad(exc: Exception) -> web.Response:
    return web.json_response(str(exc), status=400)


@routes.get("/api/v2/alerts")
async def alerts(request: web.Request) -> web.Response:
    """The alerts that match every `filter`."""
    try:
        return web.json_response(_selected(request))
    except BadMatcher as exc:
        return _bad(exc)


@routes.get("/api/v2/alerts/groups")
async def groups(request: web.Request) -> web.Response:
    """The selected alerts grouped by alert name."""
    try:
        selected = _selected(request)
    except BadMatcher as exc:
        return _bad(exc)
    by_name: dict[str, list[JsonDict]] = {}
    for alert in selected:
        by_name.setdefault(alert["labels"].get("alertname", ""), []).append(alert)
    return web.json_response(
        [
            {"labels": {"alertname": name}, "receiver": {"name": "incident-bot"}, "alerts": members}
            for name, members in by_name.items()
        ]
    )


@routes.get("/api/v2/silences")
async def silences(request: web.Request) -> web.Response:
    """The silences whose matchers include every `filter` matcher."""
    world = request.app[WORLD]
    try:
        wanted = [parse_matcher(f) for f in request.query.getall("filter", [])]
    except BadMatcher as exc:
        return _bad(exc)
    found = []
    for spec in [*world.scenario.silences, *world.created_silences]:
        own = [parse_matcher(m) for m in spec.matchers]
        if not all(w in own for w in wanted):
            continue
        found.append(
            {
                "id": _silence_id(spec),
                "matchers": [
                    {"name": n, "value": v, "isRegex": "~" in op, "isEqual": not op.startswith("!")}
                    for n, op, v in own
                ],
                "startsAt": timestamp(world.started + spec.starts),
                "endsAt": timestamp(world.started + spec.ends),
                "updatedAt": timestamp(world.started + spec.starts),
                "createdBy": spec.created_by,
                "comment": spec.comment,
                "status": {"state": _silence_state(world, spec)},
            }
        )
    return web.json_response(found)


def _created_silence(world: World, body: object) -> SilenceSpec:
    """The silence a `POST /api/v2/silences` body describes; ValueError when malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("matchers"), list):
        raise ValueError("silence needs matchers")
    matchers = []
    for m in body["matchers"]:
        if not isinstance(m, dict) or not m.get("name") or not isinstance(m.get("value"), str):
            raise ValueError(f"bad matcher: {m!r}")
        op = {(True, False): "=", (True, True): "=~", (False, False): "!=", (False, True): "!~"}[
            (bool(m.get("isEqual", True)), bool(m.get("isRegex", False)))
        ]
        matchers.append(f'{m["name"]}{op}"{m["value"]}"')
    try:
        starts = datetime.fromisoformat(str(body["startsAt"])).timestamp() - world.started
        ends = datetime.fromisoformat(str(body["endsAt"])).timestamp() - world.started
    except (KeyError, ValueError) as exc:
        raise ValueError(f"bad startsAt/endsAt: {exc}") from exc
    if ends <= starts:
        raise ValueError("endsAt must be after startsAt")
    number = len(world.created_silences) + 1
    return SilenceSpec(
        id=stable_uid("created-silence", str(world.started), str(number)),
        matchers=matchers,
        created_by=str(body.get("createdBy", "")),
        comment=str(body.get("comment", "")),
        starts=starts,
        ends=ends,
    )


@routes.post("/api/v2/silences")
async def create_silence(request: web.Request) -> web.Response:
    """Add a silence; answers `{"silenceID": ...}` like Alertmanager, 400 when malformed."""
    world = request.app[WORLD]
    try:
        spec = _created_silence(world, await request.json())
    except ValueError as exc:  # includes a body that is not JSON
        return _bad(exc)
    world.created_silences.append(spec)
    return web.json_response({"silenceID": spec.id})


@routes.get("/api/v2/status")
async def status(request: web.Request) -> web.Response:
    """Alertmanager's version and cluster status."""
    return web.json_response(
        {
            "versionInfo": {"version": "0.25.0-sandbox"},
            "cluster": {"status": "disabled", "peers": []},
            "config": {"original": ""},
            "uptime": timestamp(request.app[WORLD].started),
        }
    )
