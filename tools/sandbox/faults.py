"""What the sandbox does before answering: record the request, play the bot's RBAC, and
inject the scenario's faults.

- Every request is recorded (method and path with query) in `RequestLog`, so a test can
  assert that a refused tool call sent nothing; the Prometheus API also records each
  query it is sent (POSTed forms included), exactly as received.
- Kubernetes RBAC of a read-only service account: Secrets are always forbidden; with
  `readable_namespaces` set, so is every namespaced read outside them (HTTP 403 with the
  API server's message).
- `faults`: a matching request gets the fault's status (with `Retry-After` when set) the
  first `times` times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from tools.sandbox.kubernetes_api import status_error
from tools.sandbox.scenario import WORLD

_NAMESPACED = re.compile(r"^/apis?/(?:([a-z0-9.]+)/)?v1/namespaces/([^/]+)/([a-z]+)")
SERVICE_ACCOUNT = "system:serviceaccount:incident-bot:incident-bot"


@dataclass
class RequestLog:
    """The requests the sandbox received, as `METHOD /path?query`."""

    entries: list[str] = field(default_factory=list)
    fault_hits: dict[int, int] = field(default_factory=dict)
    promql: list[str] = field(default_factory=list)  # `query` of each Prometheus query call

    def matching(self, pattern: str) -> list[str]:
        """The recorded requests in which `pattern` (a regex) is found."""
        return [e for e in self.entries if re.search(pattern, e)]


REQUESTS = web.AppKey("requests", RequestLog)


def _forbidden(request: web.Request, readable: list[str] | None) -> web.Response | None:
    path = request.path
    verb = "get" if request.method == "GET" else request.method.lower()
    if "/secrets" in path:
        namespace = path.split("/namespaces/")[1].split("/")[0] if "/namespaces/" in path else ""
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        return status_error(
            403,
            "Forbidden",
            f'secrets is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource "secrets" '
            f'in API group ""{where}',
        )
    found = _NAMESPACED.match(path)
    if found is None or readable is None or found.group(2) in readable:
        return None
    group, namespace, resource = found.groups()
    return status_error(
        403,
        "Forbidden",
        f'{resource} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource '
        f'"{resource}" in API group "{group or ""}" in the namespace '
        f'"{namespace}"',
    )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record, check RBAC, inject faults; then answer."""
    log = request.app[REQUESTS]
    log.entries.append(f"{request.method} {request.path_qs}")
    scenario = request.app[WORLD].scenario
    for index, fault in enumerate(scenario.faults):
        if fault.method != request.method or not re.search(fault.path, request.path):
            continue
        hits = log.fault_hits.get(index, 0)
        if fault.times is not None and hits >= fault.times:
            continue
        log.fault_hits[index] = hits + 1
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        return web.json_response(
            {"kind": "Status", "status": "Failure", "message": fault.message, "code": fault.status},
            status=fault.status,
            headers=headers,
        )
    if request.path.startswith(("/api/", "/apis/")):
        refused = _forbidden(request, scenario.readable_namespaces)
        if refused is not None:
            return refused
    return await handler(request)
