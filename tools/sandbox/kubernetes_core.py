"""The Kubernetes core API subset of the sandbox: pods, pod logs, events, nodes, /version.

Objects have the real JSON shapes so lightkube's models decode them. Events are
the deployment controller's (one `ScalingReplicaSet` per rollout), every pod's events
from its image's profile, and the scenario's own.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tools.sandbox.kubernetes_api import selector_matches, status_error, timestamp
from tools.sandbox.pods import SimPod, current_pods, log_entries, pods_of
from tools.sandbox.scenario import WORLD, JsonDict, World, stable_uid

routes = web.RouteTableDef()


def _fields(selector: str) -> dict[str, str]:
    """A field selector of equalities (`involvedObject.name=x,type=Warning`)."""
    pairs = (t.split("=", 1) for t in selector.split(",") if "=" in t)
    return {k.strip(): v.strip().lstrip("=") for k, v in pairs}


def _list(kind: str, world: World, items: list[JsonDict]) -> web.Response:
    return web.json_response(
        {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"resourceVersion": str(world.resource_version)},
            "items": items,
        }
    )


def render_pod(world: World, pod: SimPod) -> JsonDict:
    """A pod as `GET /api/v1/namespaces/{ns}/pods` lists it."""
    profile = pod.profile
    now = world.clock()
    restarts = profile.restarts
    running_since = pod.started + min(60.0 * restarts, max(0.0, now - pod.started) / 2)
    state: JsonDict = {"running": {"startedAt": timestamp(running_since)}}
    if profile.waiting_reason:
        state = {"waiting": {"reason": profile.waiting_reason, "message": "back-off restarting"}}
    status: JsonDict = {
        "name": pod.container,
        "image": pod.image,
        "imageID": "",
        "ready": profile.ready and not profile.waiting_reason,
        "started": not profile.waiting_reason,
        "restartCount": restarts,
        "state": state,
        "lastState": {},
    }
    if profile.last_termination is not None and restarts:
        t = profile.last_termination
        status["lastState"] = {
            "terminated": {
                "exitCode": t.exit_code,
                "reason": t.reason,
                "message": t.message or None,
                "startedAt": timestamp(pod.started),
                "finishedAt": timestamp(running_since),
            }
        }
    ready = "True" if status["ready"] else "False"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": stable_uid("pod", pod.namespace, pod.name),
            "labels": pod.labels,
            "creationTimestamp": timestamp(pod.started),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": pod.replica_set.name,
                    "uid": stable_uid("replicaset", pod.namespace, pod.replica_set.name),
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": pod.node, "containers": [{"name": pod.container, "image": pod.image}]},
        "status": {
            "phase": "Running",
            "startTime": timestamp(pod.started),
            "conditions": [
                {"type": "Ready", "status": ready},
                {"type": "ContainersReady", "status": ready},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [status],
        },
    }


@routes.get("/api/v1/namespaces/{namespace}/pods")
async def list_pods(request: web.Request) -> web.Response:
    """The running pods of a namespace, filtered by `labelSelector`."""
    world = request.app[WORLD]
    namespace = request.match_info["namespace"]
    selector = request.query.get("labelSelector", "")
    items = [
        render_pod(world, p)
        for p in current_pods(world)
        if p.namespace == namespace and selector_matches(selector, p.labels)
    ]
    return _list("PodList", world, items)


@routes.get("/api/v1/namespaces/{namespace}/pods/{name}/log")
async def pod_log(request: web.Request) -> web.Response:
    """A container's log as text, honouring tailLines, sinceSeconds and previous."""
    world = request.app[WORLD]
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    pod = next((p for p in current_pods(world) if (p.namespace, p.name) == (namespace, name)), None)
    if pod is None:
        return status_error(404, "NotFound", f'pods "{name}" not found')
    container = request.query.get("container", pod.container)
    if container != pod.container:
        return status_error(400, "BadRequest", f"container {container} is not valid for pod {name}")
    previous = request.query.get("previous") in ("true", "True", "1")
    if previous and not pod.profile.restarts:
        return status_error(
            400,
            "BadRequest",
            f'previous terminated container "{container}" in pod "{name}" not found',
        )
    now = world.clock()
    since = float(request.query.get("sinceSeconds", "0") or 0)
    tail = int(request.query.get("tailLines", "1000") or 1000)
    entries = log_entries(pod, now - since if since else 0.0, now, now, previous=previous)
    lines = [line for _, (_, line) in zip(range(tail), entries, strict=False)]
    text = "".join(f"{line}\n" for line in reversed(lines))
    limit = int(request.query.get("limitBytes", "0") or 0)
    return web.Response(text=text[-limit:] if limit else text, content_type="text/plain")


def _event(
    world: World,
    *,
    namespace: str,
    kind: str,
    name: str,
    reason: str,
    message: str,
    kind_type: str,
    at: float,
    count: int = 1,
    first: float | None = None,
) -> JsonDict:
    uid = stable_uid("event", namespace, kind, name, reason, str(at))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{name}.{uid[:16].replace('-', '')}",
            "namespace": namespace,
            "uid": uid,
            "creationTimestamp": timestamp(first or at),
        },
        "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
        "reason": reason,
        "message": message,
        "type": kind_type,
        "count": count,
        "firstTimestamp": timestamp(first or at),
        "lastTimestamp": timestamp(at),
        "source": {"component": "sandbox"},
    }


def events_of(world: World, namespace: str) -> list[JsonDict]:
    """Every event of a namespace."""
    now = world.clock()
    found: list[JsonDict] = []
    for dep in world.deployments.values():
        if dep.spec.namespace != namespace:
            continue
        name = dep.spec.name
        pods = pods_of(world, dep)
        rollouts = zip(dep.rollouts, dep.rolled_sets, strict=True)
        for ((_, _), before), ((at, _), after) in itertools.pairwise(rollouts):
            new, old = after.name, before.name
            for verb, rs, size in (("up", new, dep.replicas), ("down", old, 0)):
                found.append(
                    _event(
                        world,
                        namespace=namespace,
                        kind="Deployment",
                        name=name,
                        reason="ScalingReplicaSet",
                        message=f"Scaled {verb} replica set {rs} to {size}",
                        kind_type="Normal",
                        at=at,
                    )
                )
        for pod in pods:
            if pod.ended is not None:
                continue
            for e in pod.profile.events:
                found.append(
                    _event(
                        world,
                        namespace=namespace,
                        kind="Pod",
                        name=pod.name,
                        reason=e.reason,
                        message=e.message,
                        kind_type=e.type,
                        at=max(pod.started, now - 5),
                        count=e.count,
                        first=pod.started,
                    )
                )
    for spec in world.scenario.events:
        if spec.namespace == namespace:
            found.append(
                _event(
                    world,
                    namespace=namespace,
                    kind=spec.kind,
                    name=spec.name,
                    reason=spec.reason,
                    message=spec.message,
                    kind_type=spec.type,
                    at=world.started + spec.at,
                    count=spec.count,
                )
            )
    return found


_EVENT_FIELDS = {
    "involvedObject.kind": lambda e: e["involvedObject"]["kind"],
    "involvedObject.name": lambda e: e["involvedObject"]["name"],
    "type": lambda e: e["type"],
    "reason": lambda e: e["reason"],
}


@routes.get("/api/v1/namespaces/{namespace}/events")
async def list_events(request: web.Request) -> web.Response:
    """The events of a namespace, filtered by `fieldSelector`."""
    world = request.app[WORLD]
    wanted = _fields(request.query.get("fieldSelector", ""))
    unknown = set(wanted) - set(_EVENT_FIELDS)
    if unknown:
        return status_error(
            400, "BadRequest", f'"{sorted(unknown)[0]}" is not a known field selector'
        )
    items = [
        e
        for e in events_of(world, request.match_info["namespace"])
        if all(_EVENT_FIELDS[k](e) == v for k, v in wanted.items())
    ]
    return _list("EventList", world, items)


def render_node(world: World, index: int) -> JsonDict:
    """A node of the scenario."""
    spec = world.scenario.nodes[index]
    since = timestamp(world.started - 30 * 86400)
    conditions: list[JsonDict] = [
        {
            "type": kind,
            "status": "True" if kind in spec.pressure else "False",
            "reason": f"Kubelet{'Has' if kind in spec.pressure else 'HasNo'}{kind}",
            "message": f"kubelet has {'' if kind in spec.pressure else 'no '}{kind}",
            "lastHeartbeatTime": timestamp(world.clock()),
            "lastTransitionTime": since,
        }
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if spec.ready else "Unknown",
            "reason": "KubeletReady" if spec.ready else "NodeStatusUnknown",
            "message": "kubelet is posting ready status"
            if spec.ready
            else "Kubelet stopped posting node status.",
            "lastHeartbeatTime": timestamp(world.clock()),
            "lastTransitionTime": since,
        }
    )
    info = dict.fromkeys(
        (
            "architecture",
            "bootID",
            "containerRuntimeVersion",
            "kernelVersion",
            "kubeProxyVersion",
            "machineID",
            "operatingSystem",
            "osImage",
            "systemUUID",
        ),
        "sandbox",
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "uid": stable_uid("node", spec.name)},
        "spec": {"unschedulable": spec.unschedulable},
        "status": {
            "conditions": conditions,
            "allocatable": {"cpu": spec.cpu, "memory": spec.memory},
            "capacity": {"cpu": spec.cpu, "memory": spec.memory},
            "nodeInfo": {**info, "kubeletVersion": "v1.30.0"},
        },
    }


@routes.get("/api/v1/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    """The scenario's nodes, filtered by `fieldSelector=metadata.name=...`."""
    world = request.app[WORLD]
    name = _fields(request.query.get("fieldSelector", "")).get("metadata.name")
    items = [
        render_node(world, i)
        for i, spec in enumerate(world.scenario.nodes)
        if name is None or spec.name == name
    ]
    return _list("NodeList", world, items)


@routes.get("/version")
@routes.get("/version/")
async def version(request: web.Request) -> web.Response:
    """The API server's version."""
    info: dict[str, Any] = dict.fromkeys(
        ("buildDate", "compiler", "gitCommit", "gitTreeState", "goVersion", "platform"),
        "sandbox",
    )
    info |= {"major": "1", "minor": "30", "gitVersion": "v1.30.0-sandbox"}
    return web.json_response(info)
