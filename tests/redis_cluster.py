"""A real Redis Cluster for tests: three masters from `redis-server` on loopback free ports.

A test module uses the fixtures with `pytest_plugins = ("tests.redis_cluster",)`:
`cluster` (one per session) and `cluster_url` (the seed's URL, every node emptied).
The slots are split by hand (`CLUSTER ADDSLOTSRANGE`, then `CLUSTER MEET`), which is
faster than `redis-cli --cluster create`; the cluster is up once every node says
`cluster_state:ok` and knows all three masters.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis

from tests.servers import free_port, wait_for_port

MASTERS = 3
SLOTS = 16384


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its nodes' ports; `url` names one of them as the seed."""

    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        """A `REDIS_URL` naming the first node (the client finds the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def flush(self) -> None:
        """Empty every node."""
        for port in self.ports:
            with Redis(host="127.0.0.1", port=port) as node:
                node.flushall()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A three-master cluster for the session."""
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def cluster_url(cluster: Cluster) -> str:
    """The cluster's seed URL, with every node empty for this test."""
    cluster.flush()
    return cluster.url


@contextmanager
def redis_cluster(directory: Path, *, timeout: float = 20.0) -> Iterator[Cluster]:
    """Start the cluster in `directory`; stop every node on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the Redis Cluster tests need redis-server on PATH")
    ports = tuple(free_port() for _ in range(MASTERS))
    # The bus port defaults to port + 10000, which may be taken or past 65535.
    buses = tuple(free_port() for _ in range(MASTERS))
    processes = [
        _start(binary, directory / str(port), port, bus)
        for port, bus in zip(ports, buses, strict=True)
    ]
    try:
        for port in ports:
            wait_for_port(port)
        _form(ports, buses, timeout)
        yield Cluster(ports)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def _start(binary: str, directory: Path, port: int, bus: int) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True)
    return subprocess.Popen(
        [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-port", str(bus),
            "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-node-timeout", "2000",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _form(ports: tuple[int, ...], buses: tuple[int, ...], timeout: float) -> None:
    share = SLOTS // len(ports)
    nodes = [Redis(host="127.0.0.1", port=port, decode_responses=True) for port in ports]
    try:
        for i, node in enumerate(nodes):
            last = SLOTS - 1 if i == len(nodes) - 1 else (i + 1) * share - 1
            node.cluster("ADDSLOTSRANGE", i * share, last)
        for port, bus in zip(ports[1:], buses[1:], strict=True):
            nodes[0].cluster("MEET", "127.0.0.1", port, bus)
        deadline = time.monotonic() + timeout
        while not all(_ready(node, len(ports)) for node in nodes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster on {ports} was not ok after {timeout}s")
            time.sleep(0.05)
    finally:
        for node in nodes:
            node.close()


def _ready(node: Redis, masters: int) -> bool:
    fields: dict[str, str] = node.cluster("INFO")
    return fields.get("cluster_state") == "ok" and fields.get("cluster_known_nodes") == str(masters)
