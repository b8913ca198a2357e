"""ConfigMaps of the sandbox (`GET /api/v1/namespaces/{ns}/configmaps[/{name}]`).

    config_maps:
      - {namespace: shop, name: checkout-config-v8, at: -300,
         data: {DB_POOL_SIZE: "0"}}     # `at`: when it was created (seconds from the start)

A deployment revision names the one its container reads (`config_map:`), so a config
change shows as a new revision with the same image; its change event is an `events:` entry.
"""

from __future__ import annotations

from aiohttp import web

from tools.sandbox.kubernetes_api import selector_matches, status_error, timestamp
from tools.sandbox.scenario import WORLD, JsonDict, World, stable_uid
from tools.sandbox.scenario_parts import ConfigMapSpec

routes = web.RouteTableDef()


def render_config_map(world: World, spec: ConfigMapSpec) -> JsonDict:
    """One ConfigMap in the API's shape."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "uid": stable_uid("configmap", spec.namespace, spec.name),
            "labels": dict(spec.labels),
            "creationTimestamp": timestamp(world.started + spec.at),
            "resourceVersion": str(world.resource_version),
        },
        "data": dict(spec.data),
    }


@routes.get("/api/v1/namespaces/{namespace}/configmaps")
async def list_config_maps(request: web.Request) -> web.Response:
    """The ConfigMaps of a namespace, filtered by `labelSelector`."""
    world = request.app[WORLD]
    selector = request.query.get("labelSelector", "")
    items = [
        render_config_map(world, c)
        for c in world.scenario.config_maps
        if c.namespace == request.match_info["namespace"] and selector_matches(selector, c.labels)
    ]
    return web.json_response(
        {"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": items}
    )


@routes.get("/api/v1/namespaces/{namespace}/configmaps/{name}")
async def get_config_map(request: web.Request) -> web.Response:
    """One ConfigMap, or 404 like the API server."""
    world = request.app[WORLD]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    for spec in world.scenario.config_maps:
        if (spec.namespace, spec.name) == (namespace, name):
            return web.json_response(render_config_map(world, spec))
    return status_error(404, "NotFound", f'configmaps "{name}" not found')
