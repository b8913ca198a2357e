"""The Kubernetes API subset of the sandbox: Deployments and their ReplicaSets in `apps/v1`.

Objects have the real JSON shapes so lightkube's models decode them. A PATCH is
applied to the deployment's JSON (JSON patch; merge patch, with strategic merge treated as a
merge patch: lists are replaced, which is all a rollback needs), then the simulated
deployment controller rolls out the resulting pod template at once.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tools.sandbox.scenario import (
    HASH_LABEL,
    WORLD,
    Deployment,
    JsonDict,
    ReplicaSet,
    World,
    stable_uid,
)

PROGRESS_DEADLINE_SECONDS = 600
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
_MANAGED = {REVISION, CHANGE_CAUSE}
_PATCH_TYPES = {
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
}

routes = web.RouteTableDef()


def timestamp(epoch: float) -> str:
    """RFC 3339 in UTC, whole seconds, as Kubernetes writes times."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_error(code: int, reason: str, message: str) -> web.Response:
    """A Kubernetes `Status` failure answer."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def render_deployment(world: World, dep: Deployment) -> JsonDict:
    """The deployment as `GET .../deployments/{name}` returns it."""
    spec, rs = dep.spec, dep.current
    annotations = {**dep.annotations, REVISION: str(rs.revision)}
    if rs.change_cause:
        annotations[CHANGE_CAUSE] = rs.change_cause
    template = copy.deepcopy(rs.template)
    del template["metadata"]["labels"][HASH_LABEL]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "uid": dep.uid,
            "labels": dict(spec.labels),
            "annotations": annotations,
            "creationTimestamp": timestamp(dep.created),
            "generation": dep.generation,
            "resourceVersion": str(world.resource_version),
        },
        "spec": {
            "replicas": dep.replicas,
            "selector": {"matchLabels": dict(spec.labels)},
            "template": template,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
        },
        "status": _stuck_status(dep) if dep.stuck else _complete_status(dep),
    }


def _complete_status(dep: Deployment) -> JsonDict:
    return {
        "observedGeneration": dep.generation,
        "replicas": dep.replicas,
        "readyReplicas": dep.replicas,
        "updatedReplicas": dep.replicas,
        "availableReplicas": dep.replicas,
        "conditions": [
            _condition("Available", "MinimumReplicasAvailable", dep.created, dep.changed),
            _condition(
                "Progressing",
                "NewReplicaSetAvailable",
                dep.created,
                dep.changed,
                f'ReplicaSet "{dep.current.name}" has successfully progressed.',
            ),
        ],
    }


def _stuck_status(dep: Deployment) -> JsonDict:
    """One surge pod of the new ReplicaSet never became ready; the old pods still serve."""
    deadline = dep.changed + PROGRESS_DEADLINE_SECONDS
    progressing = _condition(
        "Progressing",
        "ProgressDeadlineExceeded",
        deadline,
        deadline,
        f'ReplicaSet "{dep.current.name}" has timed out progressing.',
    )
    progressing["status"] = "False"
    return {
        "observedGeneration": dep.generation,
        "replicas": dep.replicas + 1,
        "readyReplicas": dep.replicas,
        "updatedReplicas": 1,
        "availableReplicas": dep.replicas,
        "unavailableReplicas": 1,
        "conditions": [
            _condition("Available", "MinimumReplicasAvailable", dep.created, dep.changed),
            progressing,
        ],
    }


def _condition(kind: str, reason: str, since: float, updated: float, message: str = "") -> JsonDict:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message or "Deployment has minimum availability.",
        "lastTransitionTime": timestamp(since),
        "lastUpdateTime": timestamp(updated),
    }


def render_replica_set(world: World, dep: Deployment, rs: ReplicaSet) -> JsonDict:
    """One ReplicaSet of a deployment, owned by it."""
    replicas = dep.replicas if rs is dep.current else 0
    annotations = {
        REVISION: str(rs.revision),
        "deployment.kubernetes.io/desired-replicas": str(dep.replicas),
    }
    if rs.history:
        annotations["deployment.kubernetes.io/revision-history"] = ",".join(map(str, rs.history))
    if rs.change_cause:
        annotations[CHANGE_CAUSE] = rs.change_cause
    labels = rs.template["metadata"]["labels"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": rs.name,
            "namespace": dep.spec.namespace,
            "uid": stable_uid("replicaset", dep.spec.namespace, rs.name),
            "labels": dict(labels),
            "annotations": annotations,
            "creationTimestamp": timestamp(rs.created),
            "generation": 1,
            "resourceVersion": str(world.resource_version),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": dep.spec.name,
                    "uid": dep.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": copy.deepcopy(rs.template),
        },
        "status": {
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": 1,
        },
    }


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether `labels` satisfy an equality-based label selector (`a=b,c!=d,e`)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class PatchError(ValueError):
    """A patch that cannot be applied to the object."""


def apply_json_patch(doc: JsonDict, operations: Any) -> JsonDict:
    """RFC 6902 `add`, `replace` and `remove` on a copy of `doc`."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or op.get("op") not in {"add", "replace", "remove"}:
            raise PatchError(f"unsupported JSON patch operation: {op!r}")
        path = str(op.get("path", ""))
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]
        if not tokens:
            raise PatchError(f"cannot patch the whole object with path {path!r}")
        parent: Any = result
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent.get(token)
            if not isinstance(parent, dict | list):
                raise PatchError(f"path {path!r} does not lead into an object or a list")
        last = tokens[-1]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op["op"] == "add":
                parent.insert(index, op["value"])
            elif op["op"] == "replace":
                parent[index] = op["value"]
            else:
                del parent[index]
        elif op["op"] != "add" and last not in parent:
            raise PatchError(f"cannot {op['op']} missing key {path!r}")
        elif op["op"] == "remove":
            del parent[last]
        else:
            parent[last] = op["value"]
    return result


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386 merge patch: maps merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _find(request: web.Request) -> tuple[World, Deployment | None, str]:
    world = request.app[WORLD]
    key = f"{request.match_info['namespace']}/{request.match_info['name']}"
    return world, world.deployments.get(key), request.match_info["name"]


def _not_found(name: str) -> web.Response:
    return status_error(404, "NotFound", f'deployments.apps "{name}" not found')


@routes.get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
async def get_deployment(request: web.Request) -> web.Response:
    """Read one deployment."""
    world, dep, name = _find(request)
    if dep is None:
        return _not_found(name)
    return web.json_response(render_deployment(world, dep))


@routes.get("/apis/apps/v1/namespaces/{namespace}/replicasets")
async def list_replica_sets(request: web.Request) -> web.Response:
    """List the ReplicaSets of a namespace, filtered by `labelSelector`."""
    world = request.app[WORLD]
    namespace = request.match_info["namespace"]
    selector = request.query.get("labelSelector", "")
    items = [
        render_replica_set(world, dep, rs)
        for dep in world.deployments.values()
        if dep.spec.namespace == namespace
        for rs in dep.replica_sets
        if selector_matches(selector, rs.template["metadata"]["labels"])
    ]
    return web.json_response(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSetList",
            "metadata": {"resourceVersion": str(world.resource_version)},
            "items": items,
        }
    )


@routes.patch("/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
async def patch_deployment(request: web.Request) -> web.Response:
    """Patch a deployment; a changed pod template is rolled out at once."""
    world, dep, name = _find(request)
    if dep is None:
        return _not_found(name)
    if request.content_type not in _PATCH_TYPES:
        return status_error(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(sorted(_PATCH_TYPES))}",
        )
    try:
        patch = json.loads(await request.read())
    except ValueError as exc:
        return status_error(400, "BadRequest", f"invalid JSON in the patch: {exc}")
    current = render_deployment(world, dep)
    try:
        if request.content_type == "application/json-patch+json":
            patched = apply_json_patch(current, patch)
        else:
            patched = apply_merge_patch(current, patch)
        _apply(world, dep, patched)
    except (LookupError, TypeError, ValueError) as exc:  # a patch that breaks the object
        return status_error(422, "Invalid", f'Deployment.apps "{name}" is invalid: {exc}')
    dep.patches += 1
    return web.json_response(render_deployment(world, dep))


def _apply(world: World, dep: Deployment, patched: JsonDict) -> None:
    """Take the patched document's replicas, template and client annotations."""
    spec = patched["spec"]
    replicas = spec["replicas"]
    containers = spec["template"]["spec"]["containers"]
    if not isinstance(replicas, int) or replicas < 0:
        raise PatchError("spec.replicas: must be a non-negative integer")
    if not containers or not all(isinstance(c.get("image"), str) for c in containers):
        raise PatchError("spec.template.spec.containers: each container needs an image")
    annotations = dict(patched["metadata"].get("annotations") or {})
    dep.annotations = {k: str(v) for k, v in annotations.items() if k not in _MANAGED}
    change_cause = str(annotations.get(CHANGE_CAUSE, ""))
    if replicas != dep.replicas:
        dep.replicas = replicas
        dep.generation += 1
    world.roll_out(dep, spec["template"], change_cause)
    world.resource_version += 1
