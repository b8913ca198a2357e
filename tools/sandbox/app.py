"""The sandbox server: one aiohttp app that plays Prometheus, Alertmanager, Loki and the
Kubernetes API.

`run_sandbox` starts it in the running event loop; `python -m tools.sandbox` runs it alone.
Besides the real APIs it answers `GET /healthz` and `GET /sandbox/state` (each deployment's
image, revision and count of applied patches), which tests and the demo read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from tools.sandbox import (
    alertmanager_api,
    kubernetes_api,
    kubernetes_config,
    kubernetes_core,
    loki_api,
    prometheus_api,
    prometheus_catalog,
)
from tools.sandbox.faults import REQUESTS, RequestLog, guard
from tools.sandbox.scenario import WORLD, Scenario, World, load_scenario


@dataclass(frozen=True, kw_only=True)
class RunningSandbox:
    """A sandbox serving at `url` (such as `http://127.0.0.1:41233`)."""

    url: str
    world: World
    requests: RequestLog


async def healthz(request: web.Request) -> web.Response:
    """Liveness."""
    return web.json_response({"status": "ok"})


async def state(request: web.Request) -> web.Response:
    """The simulated state that tests and the demo check."""
    world = request.app[WORLD]
    deployments = {
        key: {
            "image": dep.current.images[0],
            "revision": dep.current.revision,
            "replicas": dep.replicas,
            "patches": dep.patches,
        }
        for key, dep in world.deployments.items()
    }
    return web.json_response(
        {"scenario": world.scenario.name, "started": world.started, "deployments": deployments}
    )


@web.middleware
async def _latency(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer the simulated APIs after the scenario's latency, like a slow cluster."""
    delay = request.app[WORLD].scenario.latency_seconds
    if delay and request.path.startswith(("/api", "/apis")):
        await asyncio.sleep(delay)
    return await handler(request)


def create_sandbox_app(scenario: Scenario) -> web.Application:
    """The sandbox app for a scenario; its world starts when the app is created."""
    app = web.Application(middlewares=[guard, _latency])
    app[WORLD] = World.start(scenario)
    app[REQUESTS] = RequestLog()
    app.add_routes(prometheus_api.routes)
    app.add_routes(prometheus_catalog.routes)
    app.add_routes(kubernetes_api.routes)
    app.add_routes(kubernetes_core.routes)
    app.add_routes(kubernetes_config.routes)
    app.add_routes(loki_api.routes)
    app.add_routes(alertmanager_api.routes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/sandbox/state", state)
    return app


@asynccontextmanager
async def run_sandbox(
    scenario: Scenario | str | Path, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSandbox]:
    """Serve a scenario (a `Scenario`, a bundled name or a path) until the block ends.

    With `port=0` the system picks a free port; the yielded `url` has the real one.
    """
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    app = create_sandbox_app(loaded)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        if ":" in bound_host:
            bound_host = f"[{bound_host}]"
        yield RunningSandbox(
            url=f"http://{bound_host}:{bound_port}", world=app[WORLD], requests=app[REQUESTS]
        )
    finally:
        await runner.cleanup()
