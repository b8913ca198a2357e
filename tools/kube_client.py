"""The Kubernetes API client and the reads shared by the Kubernetes tools and actions.

Tools and actions reach the API through a `KubernetesApi`, which builds its client at the
first call that needs one: kubernetes_asyncio (tens of MB resident) is imported then, not
when the process starts. Calls go through `call_kubernetes`, which retries transient
failures (connection errors, 429, 5xx) within the caller's timeout and turns every other
failure into a `KubernetesError` whose message a model or a human can act on. Secrets are
never read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import yaml

from tools.retry import (
    TransientHTTPError,
    call_with_retries,
    is_retryable_status,
    parse_retry_after,
)

if TYPE_CHECKING:
    from kubernetes_asyncio.client import (
        ApiClient,
        AppsV1Api,
        Configuration,
        CoreV1Api,
        VersionApi,
    )

T = TypeVar("T")
log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE = "kubernetes.io/change-cause"
NOT_CONFIGURED = "the Kubernetes API is not configured (KUBERNETES_URL or KUBECONFIG)"
# How long a token read from a kubeconfig's `tokenFile` is used at most before the file is
# read again even though it looks unchanged: the in-cluster loader's TOKEN_REFRESH_PERIOD.
TOKEN_FILE_MAX_AGE_SECONDS = 60.0


class KubernetesError(Exception):
    """A Kubernetes API call failed; the message says what and why."""


class KubernetesApi:
    """The Kubernetes API at `url`, or as a kubeconfig or the pod's service account says
    (see `kubernetes_client`); its client is built at the first call that needs it.

    A configuration that cannot be loaded (a missing or broken kubeconfig, no service
    account token) fails that call with a `KubernetesError`; the next call tries again.
    """

    def __init__(self, url: str | None = None, kubeconfig: Path | None = None) -> None:
        self.url = url
        self.kubeconfig = kubeconfig
        self._client: ApiClient | None = None
        self._building = asyncio.Lock()

    async def client(self) -> ApiClient:
        """The API client, built once (concurrent first calls share one)."""
        async with self._building:
            if self._client is None:
                from kubernetes_asyncio.config import ConfigException

                try:
                    self._client = await kubernetes_client(self.url, self.kubeconfig)
                except (ConfigException, OSError, ValueError, yaml.YAMLError) as exc:
                    raise KubernetesError(f"cannot configure the Kubernetes API: {exc}") from exc
            return self._client

    async def apps(self) -> AppsV1Api:
        """The `apps/v1` API (deployments, replica sets)."""
        from kubernetes_asyncio.client import AppsV1Api

        return AppsV1Api(await self.client())

    async def core(self) -> CoreV1Api:
        """The core `v1` API (pods, events, nodes)."""
        from kubernetes_asyncio.client import CoreV1Api

        return CoreV1Api(await self.client())

    async def version(self) -> VersionApi:
        """The `/version` API."""
        from kubernetes_asyncio.client import VersionApi

        return VersionApi(await self.client())

    async def close(self) -> None:
        """Close the client, if one was built."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> KubernetesApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def kubernetes_client(url: str | None, kubeconfig: Path | None) -> ApiClient:
    """An API client for `url` (no auth, e.g. the sandbox), a kubeconfig, or the pod's
    service account, in that order of preference. The caller closes it."""
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client import ApiClient, Configuration

    configuration = Configuration()
    if url:
        configuration.host = url.rstrip("/")
    elif kubeconfig is not None:
        loader = await config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration
        )
        token_file = _token_file_of(loader)
        if token_file is not None:
            configuration.refresh_api_key_hook = TokenFile(token_file)
    else:
        # kubernetes_asyncio leaves this one function unannotated
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return ApiClient(configuration)


def _token_file_of(loader: Any) -> Path | None:
    """The `tokenFile` the loaded kubeconfig's user authenticates with, if that is how it
    authenticates (no inline `token`, auth provider or exec plugin, which come first)."""
    # The active context's user: kubernetes_asyncio's own `refresh_token` reads it so too.
    user = loader._user
    if user is None or loader.provider in {"gcp", "oidc"}:
        return None
    if user.safe_get("exec") is not None or user.safe_get("token") is not None:
        return None
    token_file = user.safe_get("tokenFile")
    if not isinstance(token_file, str) or not token_file:
        return None
    # Relative to the kubeconfig file that named it, as the loader resolves it.
    base = os.path.dirname(os.path.abspath(user.path)) if user.path else ""
    return Path(os.path.normpath(os.path.join(base, token_file)))


class TokenFile:
    """A `Configuration.refresh_api_key_hook` that keeps the bearer token in step with a
    kubeconfig's `tokenFile`.

    kubernetes_asyncio reads a kubeconfig's `tokenFile` once, when it loads the kubeconfig.
    A projected service-account token expires: the kubelet writes a new one into the file
    before that (at 80% of its lifetime), and a process that keeps the first one is refused
    once it expires. The client calls this hook before every request (as its in-cluster
    loader does for the pod's token); it reads the file again when the file changed (another
    inode - the kubelet swaps a new file in - size or modification time) or when the token
    it holds is `max_age_seconds` old. If the file cannot be read, or is empty, the last
    token stays in use and the next request tries again.
    """

    def __init__(self, path: Path, max_age_seconds: float = TOKEN_FILE_MAX_AGE_SECONDS) -> None:
        self.path = path
        self.max_age_seconds = max_age_seconds
        self._token: str | None = None
        self._stat: tuple[int, int, int, int] | None = None
        self._read_at = 0.0

    def __call__(self, configuration: Configuration) -> None:
        try:
            stat = os.stat(self.path)
            current = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            stale = time.monotonic() - self._read_at >= self.max_age_seconds
            if self._token is None or current != self._stat or stale:
                token = self.path.read_text().strip()
                if not token:
                    raise ValueError("the file is empty")
                self._token, self._stat, self._read_at = token, current, time.monotonic()
        except (OSError, ValueError) as exc:
            log.warning("cannot read the Kubernetes token file %s: %s", self.path, exc)
        if self._token is not None:
            configuration.api_key["BearerToken"] = f"Bearer {self._token}"


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
    from kubernetes_asyncio.client.exceptions import ApiException

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
    kubernetes: KubernetesApi | None, namespace: str, name: str, timeout_seconds: float
) -> Any:
    """The Deployment `namespace/name` (a `V1Deployment`)."""
    if kubernetes is None:
        raise KubernetesError(NOT_CONFIGURED)
    apps = await kubernetes.apps()
    return await call_kubernetes(
        lambda: apps.read_namespaced_deployment(name, namespace),
        what=f"deployment {namespace}/{name}",
        timeout_seconds=timeout_seconds,
    )


async def replica_sets_of(
    kubernetes: KubernetesApi, deployment: Any, timeout_seconds: float
) -> list[Any]:
    """The ReplicaSets a deployment owns (its revisions), newest revision first."""
    meta = deployment.metadata
    match_labels = deployment.spec.selector.match_labels or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
    apps = await kubernetes.apps()
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
