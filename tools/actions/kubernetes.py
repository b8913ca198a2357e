"""Kubernetes actions: roll a deployment back to a named revision.

The rollback does what `kubectl rollout undo --to-revision=N` does: it replaces the
deployment's pod template with the template of revision N's ReplicaSet (without its
`pod-template-hash` label); the deployment controller then reuses that ReplicaSet under a
new revision number. Rolling back to a template that already runs changes nothing, so the
action is idempotent by construction. "Already runs" compares the whole pod template (images,
environment, probes, resources...), less the `pod-template-hash` label and the restart
annotations, which a restart changes without changing what runs.

The patch that replaces the template also sets `incident-bot/proposal` on the deployment:
that annotation is how an interrupted execution is later found to have taken effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.types import PatchType
from pydantic import BaseModel, ConfigDict, Field

from policies.target import Target
from tools.actions.base import Action, ActionContext, ActionError, Effect
from tools.kube_client import (
    NOT_CONFIGURED,
    KubernetesApi,
    KubernetesError,
    call_kubernetes,
    earlier_revisions_of,
    images_of,
    read_deployment,
    replica_sets_of,
    revision_of,
)
from tools.kubernetes import rollout_state

PROPOSAL_ANNOTATION = "incident-bot/proposal"
# A restart sets these on the pod template (see `deployments`): new pods, same workload.
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESTART_PROPOSAL = "incident-bot/restart-proposal"
_HASH_LABEL = "pod-template-hash"


class RollbackInput(BaseModel):
    """Arguments of `kubernetes.rollback`."""

    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(min_length=1, description="The namespace.", examples=["shop"])
    deployment: str = Field(
        min_length=1, description="The deployment's name.", examples=["checkout"]
    )
    to_revision: int = Field(
        ge=1, description="The revision to roll back to (see rollout history).", examples=[1]
    )


class _DeploymentArgs(Protocol):
    namespace: str
    deployment: str


def deployment_target(args: _DeploymentArgs) -> Target:
    """A deployment action's target: the deployment, in its namespace."""
    return Target(kind="deployment", namespace=args.namespace, name=args.deployment)


def writer(ctx: ActionContext) -> KubernetesApi:
    """The Kubernetes API with the actions' (write) credentials; `ActionError` if unset."""
    if ctx.kubernetes is None:
        raise ActionError(NOT_CONFIGURED)
    return ctx.kubernetes


async def writer_client(ctx: ActionContext) -> AsyncClient:
    """The lightkube client with the actions' credentials; `ActionError` if it has none."""
    try:
        return await writer(ctx).client()
    except KubernetesError as exc:
        raise ActionError(str(exc)) from exc


async def patch_deployment(
    ctx: ActionContext,
    namespace: str,
    name: str,
    patch: dict[str, Any] | list[dict[str, Any]],
    *,
    what: str,
) -> None:
    """PATCH the deployment with the actions' credentials: a list is a JSON patch, a map a
    strategic merge patch (the content types kubectl sends). Raises `KubernetesError`."""
    client = await writer_client(ctx)
    patch_type = PatchType.JSON if isinstance(patch, list) else PatchType.STRATEGIC
    await call_kubernetes(
        lambda: client.patch(Deployment, name, patch, namespace=namespace, patch_type=patch_type),
        what=what,
        timeout_seconds=ctx.timeout_seconds,
    )


def _revision_text(revision: int, images: list[str]) -> str:
    return f"revision {revision} ({', '.join(images)})"


@dataclass(frozen=True, kw_only=True)
class _Plan:
    """A rollback worked out from the deployment and its ReplicaSets as they are now."""

    key: str
    deployment: Any
    target: Any
    to_revision: int
    # Both pod templates as `comparable_template` makes them.
    current_template: Any
    target_template: Any

    @property
    def before(self) -> str:
        return _revision_text(
            revision_of(self.deployment), images_of(self.deployment.spec.template)
        )

    @property
    def after(self) -> str:
        return _revision_text(self.to_revision, images_of(self.target.spec.template))

    @property
    def done(self) -> bool:
        """Whether the deployment already runs the target revision's pod template."""
        return bool(self.current_template == self.target_template)


def comparable_template(template: Any) -> Any:
    """A pod template as plain JSON for comparing what runs: without the
    `pod-template-hash` label, the restart annotations, and empty or unset fields."""
    data = template.to_dict()
    metadata = data.get("metadata") or {}
    (metadata.get("labels") or {}).pop(_HASH_LABEL, None)
    annotations = metadata.get("annotations") or {}
    for key in (RESTARTED_AT, RESTART_PROPOSAL):
        annotations.pop(key, None)
    return _pruned(data)


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


async def _plan(ctx: ActionContext, args: RollbackInput) -> _Plan:
    key = f"{args.namespace}/{args.deployment}"
    kubernetes = writer(ctx)
    try:
        deployment = await read_deployment(
            kubernetes, args.namespace, args.deployment, ctx.timeout_seconds
        )
        replica_sets = await replica_sets_of(kubernetes, deployment, ctx.timeout_seconds)
    except KubernetesError as exc:
        raise ActionError(str(exc)) from exc
    for rs in replica_sets:
        # After a rollback the reused ReplicaSet keeps its old number in its history.
        if args.to_revision == revision_of(rs) or args.to_revision in earlier_revisions_of(rs):
            return _Plan(
                key=key,
                deployment=deployment,
                target=rs,
                to_revision=args.to_revision,
                current_template=comparable_template(deployment.spec.template),
                target_template=comparable_template(rs.spec.template),
            )
    known = ", ".join(str(revision_of(rs)) for rs in replica_sets) or "none"
    raise ActionError(
        f"deployment {key} has no revision {args.to_revision} (its revisions: {known})"
    )


def _annotation_op(deployment: Any, proposal_id: str) -> dict[str, Any]:
    """A JSON patch operation recording the proposal on the deployment."""
    if deployment.metadata.annotations:
        path = "/metadata/annotations/" + PROPOSAL_ANNOTATION.replace("/", "~1")
        return {"op": "add", "path": path, "value": proposal_id}
    return {
        "op": "add",
        "path": "/metadata/annotations",
        "value": {PROPOSAL_ANNOTATION: proposal_id},
    }


async def dry_run(ctx: ActionContext, args: RollbackInput) -> str:
    """`deployment shop/checkout: revision 2 (…:v2.4.0) -> revision 1 (…:v2.3.1)`."""
    plan = await _plan(ctx, args)
    if plan.done:
        return f"deployment {plan.key}: {plan.before} already runs the pod template of {plan.after}"
    return f"deployment {plan.key}: {plan.before} -> {plan.after}"


async def execute(ctx: ActionContext, args: RollbackInput, proposal_id: str) -> str:
    """Put revision `to_revision`'s pod template back, unless it already runs."""
    plan = await _plan(ctx, args)
    if plan.done:
        return (
            f"deployment {plan.key}: {plan.before} already runs the pod template of "
            f"{plan.after}: nothing changed"
        )
    template = plan.target.spec.template.to_dict()
    template.setdefault("metadata", {}).setdefault("labels", {}).pop("pod-template-hash", None)
    patch = [
        {"op": "replace", "path": "/spec/template", "value": template},
        _annotation_op(plan.deployment, proposal_id),
    ]
    try:
        # Replacing the template with the same value twice is a no-op, so retrying is safe.
        await patch_deployment(
            ctx, args.namespace, args.deployment, patch, what=f"deployment {plan.key}"
        )
    except KubernetesError as exc:
        raise ActionError(f"rollback of deployment {plan.key} failed: {exc}") from exc
    return (
        f"deployment {plan.key}: replaced the pod template of {plan.before} with that of "
        f"{plan.after}; annotated {PROPOSAL_ANNOTATION}={proposal_id}"
    )


async def observe(ctx: ActionContext, args: RollbackInput) -> str:
    """The deployment's revision, images, replicas and rollout state in one line."""
    try:
        deployment = await read_deployment(
            ctx.kubernetes, args.namespace, args.deployment, ctx.timeout_seconds
        )
    except KubernetesError as exc:
        raise ActionError(str(exc)) from exc
    status = deployment.status
    return (
        f"deployment {args.namespace}/{args.deployment}: "
        f"{_revision_text(revision_of(deployment), images_of(deployment.spec.template))}, "
        f"{status.readyReplicas or 0}/{deployment.spec.replicas} ready, "
        f"{status.updatedReplicas or 0} updated, {status.availableReplicas or 0} available; "
        f"rollout {rollout_state(deployment)}"
    )


async def observe_effect(ctx: ActionContext, args: RollbackInput, proposal_id: str) -> Effect:
    """`applied` when the deployment carries this proposal's annotation (set by the same
    patch as the template), `not_applied` otherwise, `unknown` when it cannot be read."""
    try:
        deployment = await read_deployment(
            ctx.kubernetes, args.namespace, args.deployment, ctx.timeout_seconds
        )
    except KubernetesError:
        return "unknown"
    return "applied" if proposal_of(deployment) == proposal_id else "not_applied"


def proposal_of(deployment: Any) -> str | None:
    """The proposal whose action last patched the deployment (its annotation)."""
    return (deployment.metadata.annotations or {}).get(PROPOSAL_ANNOTATION)


ROLLBACK = Action(
    name="kubernetes.rollback",
    description=(
        "Roll a deployment back to an earlier revision (like `kubectl rollout undo "
        "--to-revision`): its pod template becomes that revision's template again."
    ),
    input_model=RollbackInput,
    dry_run=dry_run,
    execute=execute,
    observe=observe,
    observe_effect=observe_effect,
    target=deployment_target,
    # Rolling back to a named revision's template twice changes nothing the second time.
    idempotent_by_proposal=True,
)
