"""Read-only Kubernetes tools about pods: their status and their containers' logs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
from lightkube.models.core_v1 import PodList
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tools.describing import (
    failed,
    frequent,
    get,
    integer,
    log_gist,
    objects,
    plural,
    quote,
    text,
    texts,
    total,
)
from tools.kube_client import NOT_CONFIGURED, KubernetesApi, KubernetesError, call_kubernetes, iso
from tools.kube_inputs import Namespace, name_field, optional_name
from tools.toolset import ToolContext, ToolResult, tool

MAX_PODS = 100
MAX_LOG_LINES = 500
MAX_LINE_CHARS = 500
LOG_BYTES = 512 * 1024
PODS_NARROW = "a label_selector such as app=checkout"
LOGS_NARROW = "fewer tail_lines, since_minutes, or `contains`"

JsonObject = dict[str, JsonValue]


class PodsInput(BaseModel):
    """Arguments of `kubernetes.pods`."""

    model_config = ConfigDict(extra="forbid")
    namespace: Namespace
    label_selector: str | None = Field(
        default=None,
        max_length=500,
        description="Only pods with these labels (Kubernetes label selector syntax).",
        examples=["app=checkout"],
    )


def _state(state: Any) -> str:
    if state is None:
        return "unknown"
    if state.running is not None:
        return f"running since {iso(state.running.startedAt)}"
    if state.waiting is not None:
        message = f": {state.waiting.message}" if state.waiting.message else ""
        return f"waiting ({state.waiting.reason}){message}"
    if state.terminated is not None:
        return f"terminated ({state.terminated.reason}, exit code {state.terminated.exitCode})"
    return "unknown"


def _termination(last_state: Any) -> JsonObject | None:
    terminated = last_state.terminated if last_state is not None else None
    if terminated is None:
        return None
    return {
        "reason": terminated.reason,
        "exit_code": terminated.exitCode,
        "finished_at": iso(terminated.finishedAt),
        "message": (terminated.message or None),
    }


def describe_pod(pod: Any) -> JsonObject:
    """A pod as the model reads it: phase, readiness, restarts, each container's state."""
    statuses = pod.status.containerStatuses or []
    containers: list[JsonValue] = [
        {
            "name": c.name,
            "image": c.image,
            "ready": bool(c.ready),
            "restarts": c.restartCount or 0,
            "state": _state(c.state),
            "last_termination": _termination(c.lastState),
        }
        for c in statuses
    ]
    not_ready: list[JsonValue] = [
        f"{c.type}: {c.reason or ''} {c.message or ''}".strip()
        for c in pod.status.conditions or []
        if c.status != "True" and c.type in ("Ready", "PodScheduled", "ContainersReady")
    ]
    owners = pod.metadata.ownerReferences or []
    return {
        "pod": pod.metadata.name,
        "phase": pod.status.phase,
        "ready": f"{sum(1 for c in statuses if c.ready)}/{len(pod.spec.containers)}",
        "restarts": sum(c.restartCount or 0 for c in statuses),
        "node": pod.spec.nodeName,
        "started": iso(pod.status.startTime),
        "owner": f"{owners[0].kind}/{owners[0].name}" if owners else None,
        "containers": containers,
        "problems": not_ready or None,
        "reason": pod.status.reason,
    }


def _trouble(pod: JsonObject) -> tuple[int, int]:
    ready, _, total = str(pod["ready"]).partition("/")
    restarts = pod["restarts"]
    return (0 if ready == total else 1, restarts if isinstance(restarts, int) else 0)


def _pods_of(args: PodsInput) -> str:
    """`shop/checkout` for `app=checkout`, else `shop (tier=web,env=prod)` or `shop`."""
    selector = args.label_selector or ""
    key, _, value = selector.partition("=")
    if key in ("app", "app.kubernetes.io/name", "name", "service") and value.isidentifier():
        return f"{args.namespace}/{value}"
    return args.namespace + (f" ({selector})" if selector else "")


def _condition(pod: JsonObject) -> str:
    """What a pod is doing in one word: a waiting reason (CrashLoopBackOff), else `not
    ready`, else its phase."""
    for container in objects(pod.get("containers")):
        state = text(container.get("state"))
        if state.startswith("waiting ("):
            return state[len("waiting (") :].split(")", 1)[0]
    ready, _, of = text(pod.get("ready")).partition("/")
    if ready != of:
        return "not ready"
    return text(pod.get("phase")) or "unknown"


def describe_pods(args: PodsInput, result: ToolResult) -> str:
    """`Listed 3 pods of shop/checkout: 2 CrashLoopBackOff, 1 Running; 12 restarts; last
    exit Error: 'panic: ...'`."""
    which = _pods_of(args)
    if result.status == "error":
        return failed(f"list the pods of {which}", result)
    if result.status == "no_data":
        return f"No pods of {which}"
    found = objects(result.data)
    states = Counter(_condition(p) for p in found)
    line = f"Listed {plural(total(result, len(found)), 'pod')} of {which}: " + ", ".join(
        f"{n} {state}" for state, n in states.most_common()
    )
    restarts = sum(integer(p.get("restarts")) for p in found)
    if restarts:
        line += f"; {plural(restarts, 'restart')}"
    ended = [c.get("last_termination") for p in found for c in objects(p.get("containers"))]
    last = next((e for e in ended if isinstance(e, dict)), None)
    if last is not None:
        line += f"; last exit {text(last.get('reason'))}"
        line += f": {quote(text(last.get('message')))}" if last.get("message") else ""
    return line


@tool("kubernetes.pods", namespace="namespace", narrow=PODS_NARROW, describe=describe_pods)
async def pods(ctx: ToolContext, args: PodsInput) -> ToolResult:
    """List the pods of a namespace (optionally by label selector) with their phase,
    readiness (ready/total containers), restart count, node, owner, and per container its
    state (running, waiting with the reason such as CrashLoopBackOff) and the last
    termination (reason such as OOMKilled or Error, exit code, when). Pods in trouble come
    first. Example: namespace="shop", label_selector="app=checkout".
    """
    if ctx.kubernetes is None:
        return ToolResult.fail(NOT_CONFIGURED)
    selector = args.label_selector or ""
    what = f"pods in namespace {args.namespace}" + (f" ({selector})" if selector else "")
    try:
        listed = await call_kubernetes(
            lambda: _list_pods(ctx.kubernetes, args.namespace, selector),
            what=what,
            timeout_seconds=ctx.timeout_seconds,
        )
    except KubernetesError as exc:
        return ToolResult.fail(str(exc))
    described = sorted((describe_pod(p) for p in listed.items), key=_trouble, reverse=True)
    if not described:
        return ToolResult.no_data(f"no {what}")
    note = None
    if len(described) > MAX_PODS:
        note = f"{len(described)} pods; showing the {MAX_PODS} in most trouble"
    return ToolResult.ok(list[JsonValue](described[:MAX_PODS]), note=note)


class PodLogsInput(BaseModel):
    """Arguments of `kubernetes.pod_logs`."""

    model_config = ConfigDict(extra="forbid")
    namespace: Namespace
    pod: str = name_field("The pod's name (see kubernetes.pods).", "checkout-7d9f8-abcde")
    container: str | None = optional_name(
        "The container; required when the pod has several.", "checkout"
    )
    tail_lines: int = Field(
        default=100, ge=1, le=MAX_LOG_LINES, description="The last N lines (at most 500)."
    )
    since_minutes: int | None = Field(
        default=None, ge=1, le=7 * 24 * 60, description="Only lines of the last N minutes."
    )
    previous: bool = Field(
        default=False,
        description="The previous (crashed or restarted) container's logs instead.",
    )
    contains: str | None = Field(
        default=None,
        min_length=1,
        description="Keep only lines containing this text (case-sensitive).",
        examples=["error"],
    )


async def _list_pods(kubernetes: KubernetesApi | None, namespace: str, selector: str) -> PodList:
    """The pods of `namespace` matching `selector`, a label selector as the model wrote it
    (`app=checkout`, `tier in (web,api)`): sent as it is, which lightkube's `list`, taking
    its selectors as key-value pairs, cannot do."""
    if kubernetes is None:
        raise KubernetesError(NOT_CONFIGURED)
    params = {"labelSelector": selector} if selector else None
    body = await kubernetes.get(f"/api/v1/namespaces/{namespace}/pods", params)
    return msgspec.json.decode(body, type=PodList)


async def _read_log(kubernetes: KubernetesApi, args: PodLogsInput) -> str:
    """The log text, read raw with at most `LOG_BYTES`; lightkube's `log` can neither
    limit the bytes nor read the previous container's log."""
    params: dict[str, str | int | bool] = {
        "tailLines": args.tail_lines,
        "previous": args.previous,
        "limitBytes": LOG_BYTES,
    }
    if args.container:
        params["container"] = args.container
    if args.since_minutes:
        params["sinceSeconds"] = args.since_minutes * 60
    path = f"/api/v1/namespaces/{args.namespace}/pods/{args.pod}/log"
    return (await kubernetes.get(path, params)).decode(errors="replace")


def describe_pod_logs(args: PodLogsInput, result: ToolResult) -> str:
    """`Read 50 log lines of checkout-abc: most frequent 'upstream timeout' (40)`; of a
    crashed container, the line it ended with."""
    which = ("the previous container of " if args.previous else "") + f"pod {args.pod}"
    if args.container:
        which += f" ({args.container})"
    kind = f"{quote(args.contains, 30)} " if args.contains else "log "
    if result.status == "error":
        return failed(f"read the {kind}lines of {which}", result)
    if result.status == "no_data":
        return f"No {kind}lines in {which}"
    read = texts(get(result.data, "lines"))
    head = f"Read {plural(len(read), kind + 'line')} of {which}"
    if not read:
        return head
    if args.previous:
        return f"{head}: it ended with {quote(log_gist(read[-1]))}"
    gist, count = frequent(read)
    return f"{head}: most frequent {quote(gist)} ({count})"


@tool(
    "kubernetes.pod_logs",
    namespace="namespace",
    narrow=LOGS_NARROW,
    keep_last=True,
    describe=describe_pod_logs,
)
async def pod_logs(ctx: ToolContext, args: PodLogsInput) -> ToolResult:
    """Read the last lines of a container's log (at most 500, each cut to 500 characters),
    optionally only the last N minutes, only lines containing a text, or the previous
    container's log after a crash (`previous=true`). For logs across many pods or over
    time, prefer logs.query. Example: namespace="shop", pod="checkout-7d9f8-abcde",
    tail_lines=50, contains="error".
    """
    if ctx.kubernetes is None:
        return ToolResult.fail(NOT_CONFIGURED)
    which = "previous logs" if args.previous else "logs"
    kubernetes = ctx.kubernetes
    try:
        text = await call_kubernetes(
            lambda: _read_log(kubernetes, args),
            what=f"pod {args.namespace}/{args.pod}"
            + (" (previous container)" if args.previous else ""),
            timeout_seconds=ctx.timeout_seconds,
        )
    except KubernetesError as exc:
        return ToolResult.fail(str(exc))
    lines = text.splitlines()[-args.tail_lines :]
    if args.contains is not None:
        lines = [line for line in lines if args.contains in line]
    if not lines:
        found = f" containing {args.contains!r}" if args.contains else ""
        return ToolResult.no_data(f"no log lines{found} in {which} of {args.pod}")
    kept: list[JsonValue] = [
        line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "…" for line in lines
    ]
    return ToolResult.ok(
        {"pod": args.pod, "container": args.container, "previous": args.previous, "lines": kept}
    )
