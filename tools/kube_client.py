"""The Kubernetes API client and the reads shared by the Kubernetes tools and actions.

Tools and actions reach the API through a `KubernetesApi`, which builds its lightkube
client as the process starts; a kubeconfig that cannot be loaded fails the first call that
needs it, not the process. Calls go through `call_kubernetes`, which retries transient
failures (connection errors, 429, 5xx) within the caller's timeout and turns every other
failure into a `KubernetesError` whose message a model or a human can act on. Secrets are
never read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Generator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx2
import msgspec
import yaml
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig, SingleConfig
from lightkube.config.kubeconfig import SERVICE_ACCOUNT
from lightkube.config.models import Cluster, User
from lightkube.resources.apps_v1 import Deployment, ReplicaSet

from tools.retry import (
    BackendUnavailable,
    TransientHTTPError,
    call_with_retries,
    is_retryable_status,
    parse_retry_after,
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
    (see `kubernetes_client`).

    Its client is built here, when the process starts (it costs a few MB that the first
    run would load anyway, and sends nothing until a call). A configuration that cannot be
    loaded (a missing or broken kubeconfig, no service account token) is logged, and fails
    the first call with a `KubernetesError` naming the reason; each later call tries again.
    """

    def __init__(self, url: str | None = None, kubeconfig: Path | None = None) -> None:
        self.url = url
        self.kubeconfig = kubeconfig
        self._client: AsyncClient | None = None
        self._building = asyncio.Lock()
        try:
            self._client = self._build()
        except KubernetesError as exc:
            log.warning("%s; the first Kubernetes call tries again", exc)

    def _build(self) -> AsyncClient:
        try:
            return kubernetes_client(self.url, self.kubeconfig)
        except (ConfigError, OSError, ValueError, yaml.YAMLError) as exc:
            raise KubernetesError(f"cannot configure the Kubernetes API: {exc}") from exc

    async def client(self) -> AsyncClient:
        """The lightkube client; built again if it could not be before (concurrent calls
        share one attempt)."""
        async with self._building:
            if self._client is None:
                self._client = self._build()
            return self._client

    async def get(self, path: str, params: Mapping[str, str | int | bool] | None = None) -> bytes:
        """The body of `GET path` (e.g. `/version`), for what lightkube has no method for;
        an error answer raises `httpx2.HTTPStatusError`, as lightkube's own calls do."""
        response = await http_client(await self.client()).get(path, params=params)
        response.raise_for_status()
        return response.content

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


def kubernetes_client(url: str | None, kubeconfig: Path | None) -> AsyncClient:
    """A lightkube client for `url` (no auth, e.g. the sandbox), a kubeconfig, or the pod's
    service account, in that order of preference. The caller closes it.

    Raises `ConfigError` (or `OSError`, `ValueError`, `yaml.YAMLError`) when the
    configuration cannot be loaded.
    """
    token_file: Path | None = None
    if url:
        config = KubeConfig.from_one(cluster=Cluster(server=url.rstrip("/")), user=User()).get()
    elif kubeconfig is not None:
        config, token_file = _token_file_auth(_load_kubeconfig(kubeconfig))
    else:
        config, token_file = in_cluster()
    if config is None:
        raise ConfigError("the kubeconfig selects no context")
    if config.user is None:
        # A context without a user sends no credentials; lightkube wants one, if empty.
        config = config._replace(user=User())
    # No per-request timeout: every call is bounded by its caller's (`call_kubernetes`).
    # No proxy or CA bundle from the environment: the configuration says where to connect.
    client = AsyncClient(config, timeout=httpx2.Timeout(None), trust_env=False)
    if token_file is not None:
        http_client(client).auth = TokenFile(token_file)
    return client


def http_client(client: AsyncClient) -> httpx2.AsyncClient:
    """The httpx2 client under a lightkube client: its base URL, TLS settings and auth.

    lightkube has no public handle on it; it is needed to send the bearer token of a
    `TokenFile` and for the requests lightkube has no method for (`/version`, a previous
    container's log)."""
    return client._client._client


def _load_kubeconfig(path: Path) -> SingleConfig | None:
    """The kubeconfig's current context; a file that is not a kubeconfig is a
    `ConfigError` naming what is wrong."""
    try:
        return KubeConfig.from_file(path).get()
    except (KeyError, TypeError, AttributeError, msgspec.ValidationError) as exc:
        raise ConfigError(
            f"{path} is not a valid kubeconfig ({type(exc).__name__}: {exc})"
        ) from exc


def _token_file_auth(config: SingleConfig | None) -> tuple[SingleConfig | None, Path | None]:
    """The config without its user's `tokenFile`, and that file when it is how the user
    authenticates: an inline `token`, an exec plugin or an auth provider come first, as
    kubectl has it (lightkube would put the file first and read it again only after a 401).
    A relative path is relative to the kubeconfig file that named it."""
    user = config.user if config is not None else None
    if config is None or user is None or not user.token_file:
        return config, None
    without = config._replace(user=msgspec.structs.replace(user, token_file=None))
    if user.token is not None or user.exec is not None or user.auth_provider is not None:
        return without, None
    return without, Path(os.path.normpath(config.abs_file(user.token_file)))


def in_cluster(account: Path = Path(SERVICE_ACCOUNT)) -> tuple[SingleConfig | None, Path]:
    """The pod's service account (its token, CA and namespace in `account`, by default
    where Kubernetes mounts them) and the API server the `KUBERNETES_SERVICE_*` variables
    name: the config without credentials, and the token file, which `kubernetes_client`
    sends as a `TokenFile`, read again as the kubelet rotates it."""
    for variable in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        if not os.environ.get(variable):
            raise ConfigError(f"not in a pod: {variable} is not set")
    config = KubeConfig.from_service_account(account).get()
    if config is None:
        raise ConfigError("the service account selects no context")
    return config._replace(user=User()), account / "token"


class TokenFile(httpx2.Auth):
    """An httpx2 auth that keeps the bearer token in step with a `tokenFile` (a
    kubeconfig's, or the pod's service-account token).

    A projected service-account token expires: the kubelet writes a new one into the file
    before that (at 80% of its lifetime), and a process that keeps the first one is refused
    once it expires. Before every request this reads the file again when the file changed
    (another inode - the kubelet swaps a new file in - size or modification time) or when
    the token it holds is `max_age_seconds` old. If the file cannot be read, or is empty,
    the last token stays in use and the next request tries again.
    """

    def __init__(self, path: Path, max_age_seconds: float = TOKEN_FILE_MAX_AGE_SECONDS) -> None:
        self.path = path
        self.max_age_seconds = max_age_seconds
        self._token: str | None = None
        self._stat: tuple[int, int, int, int] | None = None
        self._read_at = 0.0

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response]:
        token = self.token()
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def token(self) -> str | None:
        """The file's token, read again if it changed or is old; None until a first read
        succeeds."""
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
        return self._token


def _api_message(exc: httpx2.HTTPStatusError) -> str:
    """The `message` of the Kubernetes `Status` in an error answer, else the HTTP reason."""
    if isinstance(exc, ApiError) and exc.status.message:
        return exc.status.message
    try:
        body = exc.response.json()
    except (ValueError, httpx2.ResponseNotRead):
        return exc.response.reason_phrase
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or exc.response.reason_phrase)


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
        except httpx2.HTTPStatusError as exc:
            status = exc.response.status_code
            if is_retryable_status(status):
                retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
                raise TransientHTTPError(status, exc.response.reason_phrase, retry_after) from exc
            raise
        except httpx2.TransportError as exc:
            raise BackendUnavailable(str(exc) or type(exc).__name__) from exc

    try:
        return await call_with_retries(attempt, timeout_seconds=timeout_seconds)
    except httpx2.HTTPStatusError as exc:
        response = exc.response
        if response.status_code == 404:
            raise KubernetesError(f"{what} not found") from exc
        raise KubernetesError(
            f"Kubernetes API answered {response.status_code} {response.reason_phrase} "
            f"for {what}: {_api_message(exc)}"
        ) from exc
    except TransientHTTPError as exc:
        raise KubernetesError(f"Kubernetes API is failing ({what}): {exc}") from exc
    except BackendUnavailable as exc:
        raise KubernetesError(f"cannot reach the Kubernetes API ({what}): {exc}") from exc
    except TimeoutError as exc:
        raise KubernetesError(
            f"Kubernetes API did not answer within {timeout_seconds:g}s ({what})"
        ) from exc


async def collected(items: AsyncIterable[T]) -> list[T]:
    """Every object a lightkube `list` yields (it pages through `continue` tokens)."""
    return [item async for item in items]


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
    """The Deployment `namespace/name` (a lightkube `Deployment`)."""
    if kubernetes is None:
        raise KubernetesError(NOT_CONFIGURED)
    client = await kubernetes.client()
    return await call_kubernetes(
        lambda: client.get(Deployment, name, namespace=namespace),
        what=f"deployment {namespace}/{name}",
        timeout_seconds=timeout_seconds,
    )


async def replica_sets_of(
    kubernetes: KubernetesApi, deployment: Any, timeout_seconds: float
) -> list[Any]:
    """The ReplicaSets a deployment owns (its revisions), newest revision first."""
    meta = deployment.metadata
    match_labels: dict[str, str] = deployment.spec.selector.matchLabels or {}
    client = await kubernetes.client()
    listed: list[Any] = await call_kubernetes(
        lambda: collected(
            client.list(
                ReplicaSet, namespace=meta.namespace, labels=dict(sorted(match_labels.items()))
            )
        ),
        what=f"replica sets of deployment {meta.namespace}/{meta.name}",
        timeout_seconds=timeout_seconds,
    )
    owned = [
        rs
        for rs in listed
        if any(
            ref.uid == meta.uid or (ref.kind == "Deployment" and ref.name == meta.name)
            for ref in rs.metadata.ownerReferences or []
        )
    ]
    return sorted(owned, key=revision_of, reverse=True)
