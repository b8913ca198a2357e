"""Kubernetes actions on a deployment's pods: a rolling restart, and scaling.

Both are idempotent by construction. A restart sets the pod template's
`kubectl.kubernetes.io/restartedAt` (as `kubectl rollout restart` does) together with
`incident-bot/restart-proposal`, the proposal it belongs to: a deployment whose template
already carries this proposal's key was restarted for it, and is left alone. Scaling sets
an absolute replica count, so doing it again changes nothing. Both set
`incident-bot/proposal` on the deployment in the same patch, the mark by which an interrupted
execution is later found to have taken effect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.actions.base import Action, ActionContext, ActionError, Effect
from tools.actions.kubernetes import (
    PROPOSAL_ANNOTATION,
    RESTART_PROPOSAL,
    RESTARTED_AT,
    deployment_target,
    patch_deployment,
    proposal_of,
)
from tools.kube_client import KubernetesError, images_of, read_deployment, revision_of
from tools.kubernetes import rollout_state


class RestartInput(BaseModel):
    """Arguments of `kubernetes.restart`."""

    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(min_length=1, description="The namespace.", examples=["shop"])
    deployment: str = Field(min_length=1, description="The deployment.", examples=["checkout"])


class ScaleInput(BaseModel):
    """Arguments of `kubernetes.scale`."""

    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(min_length=1, description="The namespace.", examples=["shop"])
    deployment: str = Field(min_length=1, description="The deployment.", examples=["checkout"])
    replicas: int = Field(
        ge=0, le=1000, description="The absolute number of replicas wanted.", examples=[6]
    )


async def _read(ctx: ActionContext, namespace: str, name: str) -> Any:
    try:
        return await read_deployment(ctx.kubernetes, namespace, name, ctx.timeout_seconds)
    except KubernetesError as exc:
        raise ActionError(str(exc)) from exc


async def _patch(ctx: ActionContext, namespace: str, name: str, body: dict[str, Any]) -> None:
    try:
        # The body is computed once: a retry sends the same values, which changes nothing.
        await patch_deployment(ctx, namespace, name, body, what=f"deployment {namespace}/{name}")
    except KubernetesError as exc:
        raise ActionError(str(exc)) from exc


def _pods_text(deployment: Any) -> str:
    return (
        f"{deployment.spec.replicas} pod(s) of revision {revision_of(deployment)} "
        f"({', '.join(images_of(deployment.spec.template))})"
    )


def _restarted_for(deployment: Any) -> tuple[str | None, str | None]:
    annotations = deployment.spec.template.metadata.annotations or {}
    return annotations.get(RESTART_PROPOSAL), annotations.get(RESTARTED_AT)


async def restart_dry_run(ctx: ActionContext, args: RestartInput) -> str:
    """`deployment shop/checkout: 3 pod(s) of revision 2 (…) -> 3 new pod(s), same template`."""
    deployment = await _read(ctx, args.namespace, args.deployment)
    key = f"{args.namespace}/{args.deployment}"
    return (
        f"deployment {key}: {_pods_text(deployment)} -> replaced one by one with "
        f"{deployment.spec.replicas} new pod(s) of the same template "
        f"(rolling restart: {RESTARTED_AT} set, keyed by the proposal)"
    )


async def restart_execute(ctx: ActionContext, args: RestartInput, proposal_id: str) -> str:
    """Restart the deployment's pods, unless this proposal restarted them already."""
    deployment = await _read(ctx, args.namespace, args.deployment)
    key = f"{args.namespace}/{args.deployment}"
    done_for, at = _restarted_for(deployment)
    if done_for == proposal_id:
        return f"deployment {key}: already restarted for {proposal_id} at {at}: nothing changed"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await _patch(
        ctx,
        args.namespace,
        args.deployment,
        {
            "metadata": {"annotations": {PROPOSAL_ANNOTATION: proposal_id}},
            "spec": {
                "template": {
                    "metadata": {"annotations": {RESTARTED_AT: now, RESTART_PROPOSAL: proposal_id}}
                }
            },
        },
    )
    return f"deployment {key}: rolling restart of {_pods_text(deployment)} at {now}"


async def restart_observe(ctx: ActionContext, args: RestartInput) -> str:
    """The deployment's revision, readiness, rollout state and last restart."""
    deployment = await _read(ctx, args.namespace, args.deployment)
    done_for, at = _restarted_for(deployment)
    restarted = f"; last restarted at {at} for {done_for}" if done_for else "; not restarted"
    return _observed(args.namespace, args.deployment, deployment) + restarted


async def restart_observe_effect(
    ctx: ActionContext, args: RestartInput, proposal_id: str
) -> Effect:
    """`applied` when the pod template carries this proposal's restart key."""
    try:
        deployment = await _read(ctx, args.namespace, args.deployment)
    except ActionError:
        return "unknown"
    done_for, _ = _restarted_for(deployment)
    return "applied" if done_for == proposal_id else "not_applied"


async def scale_dry_run(ctx: ActionContext, args: ScaleInput) -> str:
    """`deployment shop/checkout: 3 replicas -> 6 replicas`."""
    deployment = await _read(ctx, args.namespace, args.deployment)
    key = f"{args.namespace}/{args.deployment}"
    if deployment.spec.replicas == args.replicas:
        return f"deployment {key}: already {args.replicas} replicas: nothing to change"
    return f"deployment {key}: {deployment.spec.replicas} replicas -> {args.replicas} replicas"


async def scale_execute(ctx: ActionContext, args: ScaleInput, proposal_id: str) -> str:
    """Set the replica count; a deployment already at it is left alone."""
    deployment = await _read(ctx, args.namespace, args.deployment)
    key = f"{args.namespace}/{args.deployment}"
    before = deployment.spec.replicas
    if before == args.replicas:
        return f"deployment {key}: already {args.replicas} replicas: nothing changed"
    await _patch(
        ctx,
        args.namespace,
        args.deployment,
        {
            "metadata": {"annotations": {PROPOSAL_ANNOTATION: proposal_id}},
            "spec": {"replicas": args.replicas},
        },
    )
    return f"deployment {key}: scaled from {before} to {args.replicas} replicas"


async def scale_observe(ctx: ActionContext, args: ScaleInput) -> str:
    """The deployment's replicas and readiness."""
    deployment = await _read(ctx, args.namespace, args.deployment)
    return _observed(args.namespace, args.deployment, deployment)


async def scale_observe_effect(ctx: ActionContext, args: ScaleInput, proposal_id: str) -> Effect:
    """`applied` when the deployment carries this proposal's annotation (set by the same
    patch as the count)."""
    try:
        deployment = await _read(ctx, args.namespace, args.deployment)
    except ActionError:
        return "unknown"
    return "applied" if proposal_of(deployment) == proposal_id else "not_applied"


def _observed(namespace: str, name: str, deployment: Any) -> str:
    status = deployment.status
    return (
        f"deployment {namespace}/{name}: revision {revision_of(deployment)}, "
        f"{status.readyReplicas or 0}/{deployment.spec.replicas} ready, "
        f"rollout {rollout_state(deployment)}"
    )


RESTART = Action(
    name="kubernetes.restart",
    description=(
        "Restart a deployment's pods one by one (like `kubectl rollout restart`): same "
        "template and images, fresh processes. For leaks, stuck connections, stale caches."
    ),
    input_model=RestartInput,
    dry_run=restart_dry_run,
    execute=restart_execute,
    observe=restart_observe,
    observe_effect=restart_observe_effect,
    target=deployment_target,
    # Keyed by the proposal: a template that carries its key is not restarted again.
    idempotent_by_proposal=True,
)

SCALE = Action(
    name="kubernetes.scale",
    description=(
        "Set a deployment's replica count to an absolute number (bounded by policy). "
        "For saturation: too few pods for the load."
    ),
    input_model=ScaleInput,
    dry_run=scale_dry_run,
    execute=scale_execute,
    observe=scale_observe,
    observe_effect=scale_observe_effect,
    target=deployment_target,
    # An absolute count: setting it again changes nothing.
    idempotent_by_proposal=True,
)
