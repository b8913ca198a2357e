"""What one turn of the investigation asks for next: a small tagged union the loop matches on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.models import Finding, Proposal, Step, ToolCallPart, Usage


@dataclass(frozen=True, kw_only=True)
class RunTools:
    """Run these read-only tool calls and record their results."""

    calls: tuple[ToolCallPart, ...]


@dataclass(frozen=True, kw_only=True)
class AwaitApproval:
    """The investigation proposes a remediation; a human must decide."""

    proposal: Proposal
    summary: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True, kw_only=True)
class Finish:
    """The investigation ends without an action (`concluded`), or cannot go on."""

    summary: str
    findings: tuple[Finding, ...] = ()
    needs_attention: bool = False


@dataclass(frozen=True, kw_only=True)
class Continue:
    """The engine recorded a step of its own (a nudge, a continuation); ask it again."""


@dataclass(frozen=True, kw_only=True)
class HandOver:
    """The model cannot go on (down, over budget, refused); the runbook planner takes over."""

    reason: str


Turn = RunTools | AwaitApproval | Finish | Continue | HandOver


@dataclass(frozen=True, kw_only=True)
class ModelCall:
    """A call to another model made for a turn or a run (the fast model's summaries)."""

    model: str
    purpose: str  # `compaction`, `headline`
    usage: Usage
    dollars: float
    seconds: float


@dataclass(frozen=True, kw_only=True)
class EngineReply:
    """An engine's turn, and the steps (and usage) to checkpoint before acting on it."""

    turn: Turn
    steps: tuple[Step, ...] = ()
    usage: Usage | None = None
    # Secrets replaced in the engine's own reply, by kind.
    redactions: Mapping[str, int] = field(default_factory=dict)
    # Calls to other models this turn needed (compaction summaries), counted apart.
    side_calls: tuple[ModelCall, ...] = ()
