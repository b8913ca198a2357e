"""Read-only Kubernetes tools: deployments and their rollout history here; pods and logs in
`tools.kubernetes_pods`, events and nodes in `tools.kubernetes_cluster`. No tool reads
Secrets: none calls a Secret endpoint, and names are validated so none can be made to.

They call the API through `ctx.kubernetes`, a `KubernetesApi` (a lightkube client) holding
read-only credentials; client creation and the shared reads live in `tools.kube_client`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue

from tools.describing import ago, failed, get, integer, listed, objects, plural, text, texts
from tools.kube_client import (
    NOT_CONFIGURED,
    KubernetesError,
    change_cause_of,
    earlier_revisions_of,
    images_of,
    iso,
    read_deployment,
    replica_sets_of,
    revision_of,
)
from tools.kube_inputs import Namespace, name_field
from tools.kubernetes_cluster import events, nodes, probe_kubernetes
from tools.kubernetes_pods import pod_logs, pods
from tools.toolset import ToolContext, ToolResult, Toolset, tool

JsonObject = dict[str, JsonValue]


def rollout_state(deployment: Any) -> str:
    """How the latest rollout stands, in the words of `kubectl rollout status`."""
    spec, status = deployment.spec, deployment.status
    desired = spec.replicas if spec.replicas is not None else 1
    updated = status.updatedReplicas or 0
    available = status.availableReplicas or 0
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return "failed: progress deadline exceeded"
    if spec.paused:
        return "paused"
    if (status.observedGeneration or 0) < (deployment.metadata.generation or 0):
        return "waiting for the controller to observe the new spec"
    if updated < desired:
        return f"in progress: {updated} of {desired} replicas updated"
    if (status.replicas or 0) > updated:
        return f"in progress: {(status.replicas or 0) - updated} old replicas terminating"
    if available < updated:
        return f"in progress: {available} of {updated} updated replicas available"
    return "complete"


def describe_deployment(deployment: Any) -> JsonObject:
    """A deployment as the model reads it."""
    meta, spec, status = deployment.metadata, deployment.spec, deployment.status
    return {
        "deployment": f"{meta.namespace}/{meta.name}",
        "revision": revision_of(deployment),
        "change_cause": change_cause_of(deployment),
        "containers": [{"name": c.name, "image": c.image} for c in spec.template.spec.containers],
        "replicas": {
            "desired": spec.replicas,
            "ready": status.readyReplicas or 0,
            "updated": status.updatedReplicas or 0,
            "available": status.availableReplicas or 0,
            "unavailable": status.unavailableReplicas or 0,
        },
        "rollout": rollout_state(deployment),
        "generation": meta.generation,
        "observed_generation": status.observedGeneration,
        "conditions": [
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "last_update": iso(c.lastUpdateTime),
            }
            for c in status.conditions or []
        ],
        "selector": dict(spec.selector.matchLabels or {}),
        "created": iso(meta.creationTimestamp),
    }


class GetDeploymentInput(BaseModel):
    """Arguments of `kubernetes.get_deployment`."""

    model_config = ConfigDict(extra="forbid")
    namespace: Namespace
    name: str = name_field("The deployment's name.", "checkout")


def short_image(image: str) -> str:
    """An image without its registry and path: `checkout:v2.4.0`."""
    return image.rsplit("/", 1)[-1]


def describe_get_deployment(args: GetDeploymentInput, result: ToolResult) -> str:
    """`Read deployment shop/checkout: revision 2 (checkout:v2.4.0), 3/3 ready, rollout
    complete`."""
    which = f"deployment {args.namespace}/{args.name}"
    if result.status != "ok":
        return failed(f"read {which}", result)
    data = result.data
    images = listed([short_image(text(c.get("image"))) for c in objects(get(data, "containers"))])
    ready = f"{integer(get(data, 'replicas', 'ready'))}/{integer(get(data, 'replicas', 'desired'))}"
    return (
        f"Read {which}: revision {text(get(data, 'revision'))} ({images}), {ready} ready, "
        f"rollout {text(get(data, 'rollout'))}"
    )


@tool("kubernetes.get_deployment", namespace="namespace", describe=describe_get_deployment)
async def get_deployment(ctx: ToolContext, args: GetDeploymentInput) -> ToolResult:
    """Show a Kubernetes deployment: its current revision and images, replica counts
    (desired, ready, updated, available), whether the latest rollout is complete, its
    conditions, and generation vs observed_generation (equal once the controller has seen
    the latest change). Example: namespace="shop", name="checkout".
    """
    if ctx.kubernetes is None:
        return ToolResult.fail(NOT_CONFIGURED)
    try:
        deployment = await read_deployment(
            ctx.kubernetes, args.namespace, args.name, ctx.timeout_seconds
        )
    except KubernetesError as exc:
        return ToolResult.fail(str(exc))
    return ToolResult.ok(describe_deployment(deployment))


class RolloutHistoryInput(BaseModel):
    """Arguments of `kubernetes.rollout_history`."""

    model_config = ConfigDict(extra="forbid")
    namespace: Namespace
    deployment: str = name_field("The deployment's name.", "checkout")


def describe_rollout_history(args: RolloutHistoryInput, result: ToolResult) -> str:
    """`Read 2 revisions of shop/checkout: latest 2 (checkout:v2.4.0) 4 min ago`, and which
    one runs when it is not the latest."""
    which = f"{args.namespace}/{args.deployment}"
    if result.status == "error":
        return failed(f"read the rollout history of {which}", result)
    if result.status == "no_data":
        return f"No revisions of {which}: it owns no ReplicaSets"
    revisions = objects(result.data)
    if not revisions:
        return f"Read the rollout history of {which}: no revisions"
    latest = max(revisions, key=lambda r: integer(r.get("revision")))
    images = listed([short_image(i) for i in texts(latest.get("images"))])
    line = (
        f"Read {plural(len(revisions), 'revision')} of {which}: latest "
        f"{text(latest.get('revision'))} ({images}) {ago(latest.get('created'))}".rstrip()
    )
    running = next((r for r in revisions if r.get("current") is True), latest)
    if running is not latest:
        line += f"; running {text(running.get('revision'))}"
    return line


@tool("kubernetes.rollout_history", namespace="namespace", describe=describe_rollout_history)
async def rollout_history(ctx: ToolContext, args: RolloutHistoryInput) -> ToolResult:
    """List the revisions of a Kubernetes deployment, newest first, like
    `kubectl rollout history`: revision number, images, change cause, when the revision's
    ReplicaSet was created, and its replicas; `current` marks the revision running now, and
    `earlier_revisions` the numbers a revision had before a rollback renumbered it.
    Use it to tie a problem's start to a deploy and to pick the revision to roll back to.
    Example: namespace="shop", deployment="checkout".
    """
    if ctx.kubernetes is None:
        return ToolResult.fail(NOT_CONFIGURED)
    try:
        deployment = await read_deployment(
            ctx.kubernetes, args.namespace, args.deployment, ctx.timeout_seconds
        )
        replica_sets = await replica_sets_of(ctx.kubernetes, deployment, ctx.timeout_seconds)
    except KubernetesError as exc:
        return ToolResult.fail(str(exc))
    current = revision_of(deployment)
    revisions: list[JsonValue] = [
        {
            "revision": revision_of(rs),
            "earlier_revisions": [*earlier_revisions_of(rs)],
            "current": revision_of(rs) == current,
            "images": [*images_of(rs.spec.template)],
            "change_cause": change_cause_of(rs),
            "created": iso(rs.metadata.creationTimestamp),
            "replicas": rs.spec.replicas or 0,
            "ready": rs.status.readyReplicas or 0,
            "replica_set": rs.metadata.name,
        }
        for rs in replica_sets
    ]
    if not revisions:
        return ToolResult.no_data(
            f"deployment {args.namespace}/{args.deployment} owns no ReplicaSets"
        )
    return ToolResult.ok(revisions)


KUBERNETES = Toolset(
    name="kubernetes",
    tools=(get_deployment, rollout_history, pods, pod_logs, events, nodes),
    probe=probe_kubernetes,
)
