"""Tool calls as people read them in the progress views (Slack, the terminal): one line
each, the tool's own account of the call (`ToolResultPart.summary`), never JSON.

A step recorded before tools described their calls has no summary: its line is the
default one, from the tool's name and the status its recorded content carries.
"""

from __future__ import annotations

from pydantic import ValidationError

from bot.models import ToolResultPart
from tools.toolset import ToolResult, describe_default, one_line


def tool_line(part: ToolResultPart, tool_name: str | None) -> str:
    """The line for one finished tool call (without its ✓/✗ mark)."""
    if part.summary:
        return one_line(part.summary)
    try:
        result = ToolResult.model_validate_json(part.content)
    except ValidationError:  # plain text: a loop's own answer, or a cut result
        result = ToolResult.fail(part.content) if part.is_error else ToolResult.ok(None)
    return describe_default(tool_name or "a tool", result)


def mark(part: ToolResultPart) -> str:
    """`✓` for a call that worked (data or none), `✗` for one that failed."""
    return "✗" if part.is_error else "✓"
