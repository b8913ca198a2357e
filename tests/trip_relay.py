"""A TCP relay to a Redis server that counts round trips: the bytes a connection sends
after its last answer are one trip (tests and `bench/investigation.py` count them so)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class TripRelay:
    """Relays to the server at `target` (a redis:// URL); `url` is the relay's own, and
    `ports` are the local ports of its connections to the server (as the server names its
    clients, in MONITOR)."""

    target: str
    url: str = ""
    trips: int = 0
    ports: set[int] = field(default_factory=set)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        last: list[str],
        me: str,
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if me == "client" and last[0] != "client":
                    self.trips += 1
                last[0] = me
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        parts = urlsplit(self.target)
        server_r, server_w = await asyncio.open_connection(parts.hostname, parts.port)
        self.ports.add(server_w.get_extra_info("sockname")[1])
        last = ["server"]  # who sent the connection's last bytes
        await asyncio.gather(
            self._pump(client_r, server_w, last, "client"),
            self._pump(server_r, client_w, last, "server"),
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TripRelay]:
        """Listen on a free port until the block ends."""
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = urlsplit(self.target)._replace(netloc=f"127.0.0.1:{port}").geturl()
        async with server:
            yield self
