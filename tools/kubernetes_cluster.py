"""Read-only Kubernetes tools about what happened and where: events and nodes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from lightkube.resources.core_v1 import Event, Node
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tools.describing import failed, integer, listed, objects, plural, quote, text, total
from tools.kube_client import (
    NOT_CONFIGURED,
    KubernetesError,
    call_kubernetes,
    collected,
    http_client,
    iso,
)
from tools.kube_inputs import NAME, Namespace, optional_name
from tools.toolset import Health, ToolContext, ToolResult, tool

MAX_EVENTS = 100
MAX_NODES = 100
_PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")

JsonObject = dict[str, JsonValue]


class EventsInput(BaseModel):
    """Arguments of `kubernetes.events`."""

    model_config = ConfigDict(extra="forbid")
    namespace: Namespace
    kind: (
        Literal["Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "Service"]
        | None
    ) = Field(default=None, description="Only events about objects of this kind.")
    name: str | None = optional_name("Only events about the object of this name.", "checkout")
    warnings_only: bool = Field(default=False, description="Only events of type Warning.")


def _when(event: Any) -> datetime | None:
    series = getattr(event, "series", None)
    last = series.lastObservedTime if series is not None else None
    result: datetime | None = last or event.lastTimestamp or event.eventTime or event.firstTimestamp
    if result is None and event.metadata is not None:
        result = event.metadata.creationTimestamp
    return result


def describe_event(event: Any) -> JsonObject:
    """An event in one line's worth of fields."""
    obj = event.involvedObject
    return {
        "last_seen": iso(_when(event)),
        "type": event.type,
        "reason": event.reason,
        "object": f"{obj.kind}/{obj.name}",
        "message": event.message,
        "count": event.count or 1,
    }


def describe_events(args: EventsInput, result: ToolResult) -> str:
    """`Read 8 events of shop: 6 warnings (21 Unhealthy, 6 BackOff); latest: 'Readiness
    probe failed: ...'`."""
    which = args.namespace + (f" about {args.kind or 'object'} {args.name}" if args.name else "")
    kind = "warning events" if args.warnings_only else "events"
    if result.status == "error":
        return failed(f"read the {kind} of {which}", result)
    if result.status == "no_data":
        return f"No {kind} in {which}"
    found = objects(result.data)
    warnings = [e for e in found if e.get("type") == "Warning"]
    counts: dict[str, int] = {}
    for event in warnings:
        reason = text(event.get("reason"))
        counts[reason] = counts.get(reason, 0) + max(1, integer(event.get("count")))
    line = f"Read {plural(total(result, len(found)), 'event')} of {which}: "
    if warnings:
        top = sorted(counts.items(), key=lambda kv: -kv[1])
        line += f"{plural(len(warnings), 'warning')} ({listed([f'{n} {r}' for r, n in top])})"
    else:
        line += "no warnings"
    latest = (warnings or found)[0] if found else {}
    return line + f"; latest {text(latest.get('reason'))}: {quote(text(latest.get('message')))}"


@tool(
    "kubernetes.events",
    namespace="namespace",
    narrow="kind and name, warnings_only=true",
    describe=describe_events,
)
async def events(ctx: ToolContext, args: EventsInput) -> ToolResult:
    """List the Kubernetes events of a namespace, or of one object in it, newest first:
    when, Normal or Warning, the reason (ScalingReplicaSet, BackOff, Unhealthy, OOMKilling,
    FailedScheduling...), the object and the message. Use it to see what the cluster did
    around the alert: rollouts, failing probes, crashes, evictions.
    Example: namespace="shop", kind="Deployment", name="checkout".
    """
    if ctx.kubernetes is None:
        return ToolResult.fail(NOT_CONFIGURED)
    fields: dict[str, Any] = {}
    if args.kind:
        fields["involvedObject.kind"] = args.kind
    if args.name:
        fields["involvedObject.name"] = args.name
    if args.warnings_only:
        fields["type"] = "Warning"
    about = f" about {args.kind or 'object'} {args.name}" if args.name else ""
    try:
        client = await ctx.kubernetes.client()
        found_events = await call_kubernetes(
            lambda: collected(client.list(Event, namespace=args.namespace, fields=fields or None)),
            what=f"events in namespace {args.namespace}{about}",
            timeout_seconds=ctx.timeout_seconds,
        )
    except KubernetesError as exc:
        return ToolResult.fail(str(exc))
    ordered = sorted(found_events, key=lambda e: iso(_when(e)) or "", reverse=True)
    found: list[JsonValue] = [describe_event(e) for e in ordered[:MAX_EVENTS]]
    if not found:
        return ToolResult.no_data(f"no events in namespace {args.namespace}{about}")
    note = None
    if len(ordered) > MAX_EVENTS:
        note = f"{len(ordered)} events; showing the newest {MAX_EVENTS}"
    return ToolResult.ok(found, note=note)


class NodesInput(BaseModel):
    """Arguments of `kubernetes.nodes`."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(
        default=None, pattern=NAME, description="One node; omit for all.", examples=["node-1"]
    )
    problems_only: bool = Field(
        default=False, description="Only nodes not Ready, under pressure or cordoned."
    )


def describe_node(node: Any) -> JsonObject:
    """A node: readiness, pressure conditions, cordon, taints, capacity, kubelet version."""
    conditions = {c.type: c for c in node.status.conditions or []}
    ready = conditions.get("Ready")
    pressures: list[JsonValue] = [
        f"{kind}: {conditions[kind].message or conditions[kind].reason}"
        for kind in _PRESSURES
        if kind in conditions and conditions[kind].status == "True"
    ]
    allocatable = node.status.allocatable or {}
    return {
        "node": node.metadata.name,
        "ready": ready is not None and ready.status == "True",
        "ready_reason": None if ready is None or ready.status == "True" else ready.message,
        "pressure": pressures,
        "unschedulable": bool(node.spec.unschedulable),
        "taints": [f"{t.key}:{t.effect}" for t in node.spec.taints or []] or None,
        "allocatable": {"cpu": allocatable.get("cpu"), "memory": allocatable.get("memory")},
        "kubelet": node.status.nodeInfo.kubeletVersion if node.status.nodeInfo else None,
    }


def _in_trouble(node: JsonObject) -> bool:
    return not node["ready"] or bool(node["pressure"]) or bool(node["unschedulable"])


def _trouble_of(node: JsonObject) -> str:
    """`node-b not Ready, MemoryPressure, cordoned`; '' for a healthy node."""
    problems = [] if node.get("ready") is True else ["not Ready"]
    pressure = node.get("pressure")
    problems += [text(p).split(":", 1)[0] for p in pressure] if isinstance(pressure, list) else []
    problems += ["cordoned"] if node.get("unschedulable") is True else []
    return f"{text(node.get('node'))} {', '.join(problems)}" if problems else ""


def describe_nodes(args: NodesInput, result: ToolResult) -> str:
    """`Checked 3 nodes: all Ready` or `Checked 3 nodes: node-b not Ready, MemoryPressure`."""
    which = f"node {args.name}" if args.name else "the nodes"
    if result.status == "error":
        return failed(f"check {which}", result)
    if result.status == "no_data":
        if args.problems_only:
            return "No node is in trouble"
        return f"No node {args.name}" if args.name else "No nodes in the cluster"
    found = objects(result.data)
    troubles = [t for t in (_trouble_of(n) for n in found) if t]
    checked = f"Checked {plural(len(found), 'node')}"
    if not troubles:
        return f"{checked}: all Ready"
    return f"{checked}: {len(troubles)} in trouble: {'; '.join(troubles)}"


@tool("kubernetes.nodes", narrow="a node name, or problems_only=true", describe=describe_nodes)
async def nodes(ctx: ToolContext, args: NodesInput) -> ToolResult:
    """List the cluster's nodes with readiness, pressure conditions (MemoryPressure,
    DiskPressure, PIDPressure, NetworkUnavailable, with the kubelet's message), whether
    cordoned, taints, allocatable CPU and memory. Use it when pods fail on some nodes only,
    or are evicted. Example: problems_only=true.
    """
    if ctx.kubernetes is None:
        return ToolResult.fail(NOT_CONFIGURED)
    fields: dict[str, Any] | None = {"metadata.name": args.name} if args.name else None
    try:
        client = await ctx.kubernetes.client()
        found_nodes = await call_kubernetes(
            lambda: collected(client.list(Node, fields=fields)),
            what=f"node {args.name}" if args.name else "nodes",
            timeout_seconds=ctx.timeout_seconds,
        )
    except KubernetesError as exc:
        return ToolResult.fail(str(exc))
    described = [describe_node(n) for n in found_nodes]
    if args.problems_only:
        described = [n for n in described if _in_trouble(n)]
    if not described:
        return ToolResult.no_data(
            "no node is in trouble" if args.problems_only else f"no node {args.name or ''}"
        )
    return ToolResult.ok(list[JsonValue](described[:MAX_NODES]))


async def probe_kubernetes(ctx: ToolContext) -> Health:
    """Whether a Kubernetes API is configured and answers `GET /version`."""
    if ctx.kubernetes is None:
        return Health(configured=False, reachable=False, detail=NOT_CONFIGURED)
    kubernetes = ctx.kubernetes
    try:
        body = await call_kubernetes(
            lambda: kubernetes.get("/version"),
            what="the API version",
            timeout_seconds=ctx.timeout_seconds,
        )
        host = http_client(await kubernetes.client()).base_url
    except KubernetesError as exc:
        return Health(configured=True, reachable=False, detail=str(exc))
    version = _git_version(body)
    return Health(
        configured=True, reachable=True, detail=f"Kubernetes {version} at {str(host).rstrip('/')}"
    )


def _git_version(body: bytes) -> str | None:
    """The `gitVersion` of a `/version` answer, None if it has none."""
    try:
        info = json.loads(body)
    except ValueError:
        return None
    version = info.get("gitVersion") if isinstance(info, dict) else None
    return str(version) if version is not None else None
