"""A kubeconfig's `tokenFile` is read again when it changes: the actions' projected
service-account token expires and the kubelet rotates it in place, so the client must
send the file's current token, not the one it found at start-up.

Faked only at the wire: a local HTTP server plays the Kubernetes API and records each
request's Authorization header."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.servers import free_port
from tools.kube_client import KubernetesApi, in_cluster, read_deployment


@dataclass
class FakeApi:
    url: str
    authorizations: list[str | None] = field(default_factory=list)


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    """GET /apis/apps/v1/namespaces/x/deployments/y answers a minimal Deployment."""
    fake = FakeApi(url="")

    async def deployment(request: web.Request) -> web.Response:
        fake.authorizations.append(request.headers.get("Authorization"))
        body: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "y", "namespace": "x", "uid": "u-1"},
            "spec": {"selector": {"matchLabels": {"app": "y"}}, "template": {}},
        }
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/apis/apps/v1/namespaces/x/deployments/y", deployment)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def write_kubeconfig(path: Path, server: str, user: dict[str, str]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "actions", "user": user}],
                "contexts": [{"name": "a", "context": {"cluster": "c", "user": "actions"}}],
                "current-context": "a",
            }
        )
    )
    return path


class ProjectedVolume:
    """A directory laid out as the kubelet writes a projected volume: `token` links to
    `..data/token`, `..data` to a timestamped directory; an update writes a new directory
    and swaps `..data` atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        root.mkdir()
        (root / "token").symlink_to("..data/token")

    def write(self, token: str) -> None:
        self.generation += 1
        directory = self.root / f"..2026_01_01_00_00_{self.generation:02d}"
        directory.mkdir()
        (directory / "token").write_text(token)
        (self.root / "..data_tmp").symlink_to(directory.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")


async def get_twice(kubeconfig: Path, between: Any) -> None:
    async with KubernetesApi(None, kubeconfig) as client:
        await read_deployment(client, "x", "y", timeout_seconds=5)
        between()
        await read_deployment(client, "x", "y", timeout_seconds=5)


async def test_a_token_the_kubelet_rotates_is_sent_on_the_next_request(
    api: FakeApi, tmp_path: Path
) -> None:
    volume = ProjectedVolume(tmp_path / "actions")
    volume.write("first-token")
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", api.url, {"tokenFile": str(volume.root / "token")}
    )
    await get_twice(kubeconfig, lambda: volume.write("second-token"))
    assert api.authorizations == ["Bearer first-token", "Bearer second-token"]


async def test_a_token_file_rewritten_in_place_is_read_again(api: FakeApi, tmp_path: Path) -> None:
    # A relative tokenFile is relative to the kubeconfig's directory, as the loader has it.
    (tmp_path / "token").write_text("old\n")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url, {"tokenFile": "token"})
    await get_twice(kubeconfig, lambda: (tmp_path / "token").write_text("renewed-token\n"))
    assert api.authorizations == ["Bearer old", "Bearer renewed-token"]


async def test_an_unreadable_token_file_keeps_the_last_token(
    api: FakeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text("kept-token")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url, {"tokenFile": str(token)})
    async with KubernetesApi(None, kubeconfig) as client:
        await read_deployment(client, "x", "y", timeout_seconds=5)
        token.unlink()
        await read_deployment(client, "x", "y", timeout_seconds=5)
        token.write_text("")
        await read_deployment(client, "x", "y", timeout_seconds=5)
        token.write_text("back-token")
        await read_deployment(client, "x", "y", timeout_seconds=5)
    assert api.authorizations == [
        "Bearer kept-token",
        "Bearer kept-token",
        "Bearer kept-token",
        "Bearer back-token",
    ]
    assert f"cannot read the Kubernetes token file {token}" in caplog.text


async def test_an_inline_token_wins_over_the_token_file_as_in_the_loader(
    api: FakeApi, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("from-file")
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", api.url, {"token": "inline", "tokenFile": str(token)}
    )
    await get_twice(kubeconfig, lambda: token.write_text("changed-file"))
    assert api.authorizations == ["Bearer inline", "Bearer inline"]


def test_in_a_pod_the_token_is_sent_from_the_service_account_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a pod the token is the kubelet's too: sent from the file, not kept from start-up.
    account = ProjectedVolume(tmp_path / "serviceaccount")
    account.write("pod-token")
    (account.root / "namespace").write_text("bots")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    config, token_file = in_cluster(account.root)
    assert config is not None and config.user is not None
    assert config.cluster.server == "https://10.0.0.1:443"
    assert config.cluster.certificate_auth == str(account.root / "ca.crt")
    assert config.namespace == "bots"
    assert (config.user.token, config.user.token_file) == (None, None)
    assert token_file == account.root / "token"
