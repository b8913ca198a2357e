"""The transcript as Messages API messages, and Messages API replies as transcript parts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from bot.fencing import fence
from bot.models import (
    CompactedResult,
    OpaquePart,
    Part,
    Step,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)

if TYPE_CHECKING:  # anthropic is imported only where a client is built (`bot.deps`)
    from anthropic.types import Message, MessageParam


def to_messages(transcript: Sequence[Step]) -> list[MessageParam]:
    """The transcript as Messages API messages; the newest block marks the cache point.

    Tool results and alert text are fenced as untrusted data naming their source. Empty
    replies and empty text blocks are left out (the API refuses them); steps of the same
    role next to each other become one message.
    """
    tool_names = {c.id: c.name for step in transcript for c in step.tool_calls()}
    compacted = compacted_results(transcript)
    messages: list[MessageParam] = []
    for step in transcript:
        blocks: list[Any] = [
            _block(_fenced(p, step, tool_names, compacted)) for p in step.content if not _empty(p)
        ]
        if not blocks:
            continue
        if messages and messages[-1]["role"] == step.role:
            prior = messages[-1]["content"]
            assert isinstance(prior, list)  # noqa: S101 - we only build lists
            prior.extend(blocks)
        else:
            messages.append(cast("MessageParam", {"role": step.role, "content": blocks}))
    if messages:
        _mark_cache_point(messages[-1]["content"])
    return messages


def _fenced(
    part: Part,
    step: Step,
    tool_names: dict[str, str],
    compacted: Mapping[str, CompactedResult],
) -> Part:
    """The part as the model reads it: text the bot did not write inside an envelope
    (a compacted tool result as its summary)."""
    if isinstance(part, ToolResultPart):
        source = f"tool:{tool_names.get(part.tool_use_id, 'unknown')}"
        entry = compacted.get(part.tool_use_id)
        content = part.content if entry is None else shown(entry)
        return part.model_copy(update={"content": fence(source, content)})
    if isinstance(part, TextPart) and step.author == "alert":
        return part.model_copy(update={"text": fence("alert", part.text)})
    if isinstance(part, TextPart) and part.source:
        return part.model_copy(update={"text": fence(part.source, part.text)})
    return part


def compacted_results(transcript: Sequence[Step]) -> dict[str, CompactedResult]:
    """Every compacted tool result of the transcript (`bot/compaction.py`), by tool_use id."""
    return {e.tool_use_id: e for step in transcript for e in step.compacted}


def shown(entry: CompactedResult) -> str:
    """A compacted tool result as the model reads it."""
    return (
        f"[compacted: {entry.characters} characters; full result kept in the run's record] "
        f"{entry.summary}"
    )


def _empty(part: Part) -> bool:
    return isinstance(part, TextPart) and not part.text.strip()


def _mark_cache_point(blocks: object) -> None:
    """Put the cache point on the newest block that may carry one (not a thinking block)."""
    if not isinstance(blocks, list):
        return
    for i in range(len(blocks) - 1, -1, -1):
        block = blocks[i]
        if isinstance(block, dict) and block.get("type") not in ("thinking", "redacted_thinking"):
            blocks[i] = {**block, "cache_control": {"type": "ephemeral"}}
            return


def _block(part: Part) -> dict[str, Any]:
    match part:
        case TextPart():
            return {"type": "text", "text": part.text}
        case ToolCallPart():
            return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.input}
        case ToolResultPart():
            return {
                "type": "tool_result",
                "tool_use_id": part.tool_use_id,
                "content": part.content,
                "is_error": part.is_error,
            }
        case OpaquePart():
            return dict(part.block)


def part_from_block(block: Any) -> Part:
    """A Messages API content block as a transcript part (unknown kinds kept verbatim)."""
    if block.type == "text":
        return TextPart(text=block.text)
    if block.type == "tool_use":
        return ToolCallPart(id=block.id, name=block.name, input=dict(block.input))
    return OpaquePart(block=block.model_dump(mode="json", exclude_none=True))


def usage_of(message: Message) -> Usage:
    """The token usage of one Messages API reply."""
    u = message.usage
    return Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_input_tokens or 0,
        cache_write_tokens=u.cache_creation_input_tokens or 0,
    )
