"""The Prometheus catalog endpoints of the sandbox: build info, alerts, alerting rules,
label values, series and metadata, derived from the scenario's signals and alerts."""

from __future__ import annotations

from aiohttp import web

from tools.sandbox.kubernetes_api import timestamp
from tools.sandbox.scenario import WORLD, JsonDict, World

routes = web.RouteTableDef()


def _success(data: object) -> web.Response:
    return web.json_response({"status": "success", "data": data})


def _series(world: World) -> list[dict[str, str]]:
    """One label set per signal: the metric named by its first `match` and its labels."""
    found = []
    for signal in world.scenario.signals:
        name = next((m for m in signal.match if m.isidentifier() and "_" in m), "sandbox_signal")
        labels = {"__name__": name, **signal.labels}
        if labels not in found:
            found.append(labels)
    return found


@routes.get("/api/v1/status/buildinfo")
async def buildinfo(request: web.Request) -> web.Response:
    """The version."""
    return _success({"version": "2.42.0-sandbox", "revision": "sandbox", "branch": "sandbox"})


def _alerts(world: World) -> list[JsonDict]:
    return [
        {
            "labels": spec.labels,
            "annotations": spec.annotations,
            "state": "firing",
            "activeAt": timestamp(world.started + spec.at),
            "value": "1e+00",
        }
        for spec in world.scenario.alerts
    ]


@routes.get("/api/v1/alerts")
async def alerts(request: web.Request) -> web.Response:
    """The scenario's alerts, firing."""
    return _success({"alerts": _alerts(request.app[WORLD])})


@routes.get("/api/v1/rules")
async def rules(request: web.Request) -> web.Response:
    """One firing alerting rule per alert of the scenario."""
    world = request.app[WORLD]
    rules = [
        {
            "name": alert["labels"].get("alertname", ""),
            "query": alert["annotations"].get("expr", "vector(1)"),
            "duration": 120,
            "labels": {k: v for k, v in alert["labels"].items() if k == "severity"},
            "annotations": alert["annotations"],
            "alerts": [alert],
            "health": "ok",
            "lastError": "",
            "type": "alerting",
            "state": "firing",
        }
        for alert in _alerts(world)
    ]
    return _success({"groups": [{"name": "sandbox", "file": "sandbox.yml", "rules": rules}]})


@routes.get("/api/v1/label/{name}/values")
async def label_values(request: web.Request) -> web.Response:
    """The values of a label across the scenario's series."""
    name = request.match_info["name"]
    values = sorted({s[name] for s in _series(request.app[WORLD]) if name in s})
    return _success(values)


@routes.get("/api/v1/series")
async def series(request: web.Request) -> web.Response:
    """Every series of the scenario (matchers are not evaluated)."""
    return _success(_series(request.app[WORLD]))


@routes.get("/api/v1/metadata")
async def metadata(request: web.Request) -> web.Response:
    """Every metric of the scenario, as a counter."""
    wanted = request.query.get("metric")
    names = {s["__name__"] for s in _series(request.app[WORLD])}
    return _success(
        {
            name: [{"type": "counter", "help": f"{name} (sandbox)", "unit": ""}]
            for name in sorted(names)
            if wanted in (None, name)
        }
    )
