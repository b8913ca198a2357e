"""The Kubernetes API client and the reads shared by the Kubernetes tools and actions.

Calls go through `call_kubernetes`, which retries transient failures (connection errors,
429, 5xx) within the caller's timeout and turns every other failure into a
`KubernetesError` whose message a model or a human can act on. Secrets are never read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, AppsV1Api, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from tools.retry import (
    TransientHTTPError,
    call_with_retries,
    is_retryable_status,
    parse_retry_after,
)

T = TypeVar("T")

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE = "kubernetes.io/change-cause"
NOT_CONFIGURED = "the Kubernetes API is not configured (KUBERNETES_URL or KUBECONFIG)"


class KubernetesError(Exception):
    """A Kubernetes API call failed; the message says what and why."""


async def kubernetes_client(url: str | None, kubeconfig: Path | None) -> ApiClient:
    """An API client for `url` (no auth, e.g. the sandbox), a kubeconfig, or the pod's
    service account, in that order of preference. The caller closes it."""
    configuration = Configuration()
    if url:
        configuration.host = url.rstrip("/")
    elif kubeconfig is not None:
        await config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration
        )
    else:
        # kubernetes_asyncio leaves this one function unannotated
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return ApiClient(configuration)


def _api_message(exc: Any) -> str:
    """The `message` of the Kubernetes `Status` in an error answer, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return str(exc.reason)
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.reason)


async def call_kubernetes(
    call: Callable[[], Awaitable[T]], *, what: str, timeout_seconds: float
) -> T:
    """Await an API call about `what` (e.g. `deployment shop/checkout`), with retries.

    Raises `KubernetesError`: `"{what} not found"` on 404, the status and the API's
    message on other refusals, and a plain explanation when the API cannot be reached.
    """

    async def attempt() -> T:
        try:
            return await call()
        except ApiException as exc:
            if is_retryable_status(exc.status or 0):
                headers: Mapping[str, str] = exc.headers or {}
                retry_after = parse_retry_after(headers.get("Retry-After"))
                raise TransientHTTPError(exc.status, str(exc.reason), retry_after) from exc
            raise

    try:
        return await call_with_retries(attempt, timeout_seconds=timeout_seconds)
    except ApiException as exc:
        if exc.status == 404:
            raise KubernetesError(f"{what} not found") from exc
        raise KubernetesError(
            f"Kubernetes API answered {exc.status} {exc.reason} for {what}: {_api_message(exc)}"
        ) from exc
    except TransientHTTPError as exc:
        raise KubernetesError(f"Kubernetes API is failing ({what}): {exc}") from exc
    except aiohttp.ClientError as exc:
        raise KubernetesError(f"cannot reach the Kubernetes API ({what}): {exc}") from exc
    except TimeoutError as exc:
        raise KubernetesError(
            f"Kubernetes API did not answer within {timeout_seconds:g}s ({what})"
        ) from exc


def revision_of(obj: Any) -> int:
    """The `deployment.kubernetes.io/revision` of a Deployment or ReplicaSet, 0 if unset."""
    annotations = obj.metadata.annotations or {}
    try:
        return int(annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def earlier_revisions_of(replica_set: Any) -> list[int]:
    """Revisions a ReplicaSet held before a rollback gave it a new one
    (`deployment.kubernetes.io/revision-history`)."""
    history = (replica_set.metadata.annotations or {}).get(REVISION_HISTORY, "")
    return [int(r) for r in history.split(",") if r.strip().isdigit()]


def change_cause_of(obj: Any) -> str | None:
    """The `kubernetes.io/change-cause` annotation, if any."""
    return (obj.metadata.annotations or {}).get(CHANGE_CAUSE)


def images_of(template: Any) -> list[str]:
    """The images of a pod template's containers, in order."""
    return [str(c.image) for c in template.spec.containers]


def iso(value: datetime | None) -> str | None:
    """A Kubernetes timestamp as RFC 3339, None when unset."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def read_deployment(
    api_client: ApiClient | None, namespace: str, name: str, timeout_seconds: float
) -> Any:
    """The Deployment `namespace/name` (a `V1Deployment`)."""
    if api_client is None:
        # AppsV1Api(None) would build a default client aimed at nothing, and leak it.
        raise KubernetesError(NOT_CONFIGURED)
    apps = AppsV1Api(api_client)
    return await call_kubernetes(
        lambda: apps.read_namespaced_deployment(name, namespace),
        what=f"deployment {namespace}/{name}",
        timeout_seconds=timeout_seconds,
    )


async def replica_sets_of(
    api_client: ApiClient, deployment: Any, timeout_seconds: float
) -> list[Any]:
    """The ReplicaSets a deployment owns (its revisions), newest revision first."""
    meta = deployment.metadata
    match_labels = deployment.spec.selector.match_labels or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
    apps = AppsV1Api(api_client)
    listed = await call_kubernetes(
        lambda: apps.list_namespaced_replica_set(meta.namespace, label_selector=selector),
        what=f"replica sets of deployment {meta.namespace}/{meta.name}",
        timeout_seconds=timeout_seconds,
    )
    owned = [
        rs
        for rs in listed.items
        if any(
            ref.uid == meta.uid or (ref.kind == "Deployment" and ref.name == meta.name)
            for ref in rs.metadata.owner_references or []
        )
    ]
    return sorted(owned, key=revision_of, reverse=True)
