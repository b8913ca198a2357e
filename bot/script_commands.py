"""A registered Lua script's call as a pipeline command, sent by its SHA.

A pipeline cannot load a script its server lost (a restart, `SCRIPT FLUSH`): the server
answers NOSCRIPT without running it. A `ScriptCommand` is an ordinary `EVALSHA` command
that also knows its script, so whoever sent it in a pipeline runs it again on its own
(`rerun_lost`), as redis-py's `Script` does: it loads the script and runs it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError


class ScriptCommand(tuple[Any, ...]):
    """`EVALSHA sha numkeys *keys *args`, with the script to run again if it was lost."""

    script: AsyncScript
    keys: tuple[Any, ...]
    args: tuple[Any, ...]

    def __new__(
        cls, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> ScriptCommand:
        command = super().__new__(cls, ("EVALSHA", script.sha, len(keys), *keys, *args))
        command.script, command.keys, command.args = script, tuple(keys), tuple(args)
        return command


async def rerun_lost(commands: Sequence[tuple[Any, ...]], answers: list[Any]) -> list[Any]:
    """The answers, with each `ScriptCommand` the server did not know (NOSCRIPT: it did
    not run) run again on its own; an error doing so is its answer."""
    for i, (command, answer) in enumerate(zip(commands, answers, strict=True)):
        if isinstance(answer, NoScriptError) and isinstance(command, ScriptCommand):
            try:
                answers[i] = await command.script(keys=list(command.keys), args=list(command.args))
            except RedisError as exc:
                answers[i] = exc
    return answers
