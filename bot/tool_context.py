"""The read-only tools' context built from settings: backend URLs, auth and TLS, timeout."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from bot.settings import Settings
from tools.http_backend import HttpAuth
from tools.kube_client import KubernetesApi
from tools.toolset import ToolContext


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _auth(
    token: SecretStr | None,
    username: str | None,
    password: SecretStr | None,
    ca_file: Path | None,
    headers: dict[str, str] | None = None,
) -> HttpAuth:
    return HttpAuth.build(
        bearer_token=_secret(token),
        username=username,
        password=_secret(password),
        ca_file=ca_file,
        extra_headers=headers,
    )


def build_tool_context(
    settings: Settings, http: aiohttp.ClientSession, kubernetes: KubernetesApi | None
) -> ToolContext:
    """The context every tool call gets; `kubernetes` holds the read-only credentials."""
    s = settings
    return ToolContext(
        http=http,
        prometheus_url=s.prometheus_url,
        prometheus_auth=_auth(
            s.prometheus_bearer_token,
            s.prometheus_username,
            s.prometheus_password,
            s.prometheus_ca_file,
        ),
        alertmanager_url=s.alertmanager_url,
        alertmanager_auth=_auth(
            s.alertmanager_bearer_token,
            s.alertmanager_username,
            s.alertmanager_password,
            s.alertmanager_ca_file,
        ),
        loki_url=s.loki_url,
        loki_auth=_auth(
            s.loki_bearer_token,
            s.loki_username,
            s.loki_password,
            s.loki_ca_file,
            {"X-Scope-OrgID": s.loki_tenant} if s.loki_tenant else None,
        ),
        kubernetes=kubernetes,
        timeout_seconds=s.tool_timeout_seconds,
    )


@asynccontextmanager
async def open_tool_context(settings: Settings) -> AsyncIterator[ToolContext]:
    """A tool context with its own HTTP session and Kubernetes client, for the operators'
    CLI (no Redis, no model); everything is closed on exit."""
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        kubernetes = None
        if (
            settings.kubernetes_url is not None
            or settings.kubeconfig is not None
            or "KUBERNETES_SERVICE_HOST" in os.environ
        ):
            kubernetes = KubernetesApi(settings.kubernetes_url, settings.kubeconfig)
            stack.push_async_callback(kubernetes.close)
        yield build_tool_context(settings, http, kubernetes)
