"""Commands of concurrent callers sent to one Redis server together, one pipeline a trip.

A caller hands over its commands and waits for their answers. While a pipeline is on
its way, the commands that arrive meanwhile wait, and go together in the next one: a
storm of webhooks costs a few round trips in all instead of a few each, and a lone
caller waits for nothing. Each caller's commands stay in its order, one after the
other (a single server runs a pipeline in order); other callers' may come between them.

Only for a single server: a Redis Cluster's pipelines take no scripts and run each
node's part at once, so there each caller keeps its own round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis

# One command: its name and arguments, as `execute_command` takes them.
Command = tuple[Any, ...]


class Batches:
    """Sends the commands of concurrent callers in shared pipelines."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._waiting: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The answers to `commands`, run in order; a command's error is its answer (the
        caller raises it or copes), a connection's error is raised."""
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((commands, answer))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return await answer

    async def _send(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._send_batch(batch)
        finally:
            self._sender = None

    async def _send_batch(
        self, batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]
    ) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for commands, _ in batch:
                    for command in commands:
                        pipe.execute_command(*command)
                answers = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # not ours to handle: each caller of the batch raises it
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except asyncio.CancelledError:  # shutting down: so are the callers
            for _, answer in batch:
                answer.cancel()
            raise
        start = 0
        for commands, answer in batch:
            if not answer.done():  # its caller may have given up (cancelled)
                answer.set_result(answers[start : start + len(commands)])
            start += len(commands)
