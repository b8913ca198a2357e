"""What a stdio MCP server writes to its stderr, as log events of this module's logger.

`server_stderr` gives the SDK's `stdio_client` the write end of a fresh pipe and reads the
other end on the event loop while the session lives. The server's stderr is untrusted text:
each line is redacted, cut to `LINE_CHARS` (a cut line also loses its last word, which may
be the head of a secret split by the cut), and at most `LINES_PER_SECOND` lines of a server
are logged; the others are counted in one summary event. On exit the lines a stopped server
left in the pipe are read (within `_DRAIN_SECONDS`) and both ends are closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import TextIO

from tools.redaction import redact_text

log = logging.getLogger(__name__)

LINE_CHARS = 2_000
LINES_PER_SECOND = 50
# Bytes of a line kept for redaction: more than LINE_CHARS, so a secret that ends past the
# cut is still seen whole and replaced.
_LINE_BYTES = 4 * LINE_CHARS
_DRAIN_SECONDS = 2.0
_LAST_WORD = re.compile(r"\S+\Z")


class StderrLines(asyncio.Protocol):
    """The read end of a server's stderr pipe: splits it into lines and logs them."""

    def __init__(self, server: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self.ended = asyncio.Event()
        self._clock = clock
        self._partial = bytearray()
        self._cut = False
        self._second = float("-inf")
        self._seen = 0
        self._dropped = 0

    def data_received(self, data: bytes) -> None:
        *ended, rest = data.split(b"\n")
        for piece in ended:
            self._add(piece)
            self._emit()
        self._add(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._partial:
            self._emit()
        self._report_dropped()
        self.ended.set()

    def _add(self, piece: bytes) -> None:
        room = _LINE_BYTES - len(self._partial)
        self._partial += piece[:room]
        self._cut = self._cut or len(piece) > room

    def _emit(self) -> None:
        raw, cut = bytes(self._partial), self._cut
        self._partial, self._cut = bytearray(), False
        if not raw.strip() or not self._admitted():
            return
        text = redact_text(raw.decode(errors="replace").rstrip("\r"))
        if cut or len(text) > LINE_CHARS:
            text = _LAST_WORD.sub("", text[:LINE_CHARS]) + " [cut]"
        extra = {"mcp_server": self.server, "mcp_stderr": text}
        log.warning("MCP server %s stderr: %s", self.server, text, extra=extra)

    def _admitted(self) -> bool:
        now = self._clock()
        if now - self._second >= 1:
            self._report_dropped()
            self._second, self._seen = now, 0
        self._seen += 1
        if self._seen <= LINES_PER_SECOND:
            return True
        self._dropped += 1
        return False

    def _report_dropped(self) -> None:
        if self._dropped:
            extra = {"mcp_server": self.server, "mcp_stderr_dropped": self._dropped}
            log.warning(
                "MCP server %s stderr: %d lines dropped (over %d a second)",
                self.server,
                self._dropped,
                LINES_PER_SECOND,
                extra=extra,
            )
            self._dropped = 0


@asynccontextmanager
async def server_stderr(server: str) -> AsyncIterator[TextIO]:
    """A file for a server's stderr whose lines are logged until the context exits."""
    read_fd, write_fd = os.pipe()
    writer = os.fdopen(write_fd, "w", encoding="utf-8")
    reader = os.fdopen(read_fd, "rb", buffering=0)
    lines = StderrLines(server)
    try:
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: lines, reader)
    except BaseException:
        reader.close()
        writer.close()
        raise
    try:
        yield writer
    finally:
        writer.close()  # the pipe ends when the server's copy is closed too
        try:
            with suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_SECONDS):
                    await lines.ended.wait()
        finally:
            transport.close()
