"""What crosses the wire or is stored: alerts, runs, transcript steps, proposals, decisions.

Every stored model carries `schema_version`; frozen fixtures of each version live in
`tests/fixtures/checkpoints/` and must keep loading.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

SCHEMA_VERSION = 1  # the version every model below writes

JsonObject = dict[str, JsonValue]


def _empty(value: object) -> bool:
    """Fields added within a schema version are left out while empty, so documents
    written before them load and save unchanged."""
    return not value


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A short random id such as `run-3f9c1a2b7d0e`: 48 random bits, as twelve hex digits."""
    return f"{prefix}-{secrets.token_hex(6)}"


class Stored(BaseModel):
    """Base of stored models: versioned, strict about unknown fields."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = 1


class Alert(Stored):
    """One alert from any source, normalised."""

    source: Literal["alertmanager", "grafana", "pagerduty", "generic", "slack", "cli"]
    fingerprint: str
    group_key: str
    status: Literal["firing", "resolved"] = "firing"
    title: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str | None = None
    links: list[str] = Field(default_factory=list)
    # The labels that define the alert group (Alertmanager's `groupLabels`).
    group_labels: dict[str, str] = Field(default_factory=dict, exclude_if=_empty)

    @property
    def severity(self) -> str:
        """The alert's `severity` label, `unknown` when it has none."""
        return self.labels.get("severity", "unknown")


class RunStatus(StrEnum):
    """The states of a run (see docs/run-states.md)."""

    QUEUED = "queued"
    INVESTIGATING = "investigating"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    RESOLVED = "resolved"
    CONCLUDED = "concluded"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"

    @property
    def terminal(self) -> bool:
        """True when nothing more will happen to a run in this state."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        RunStatus.RESOLVED,
        RunStatus.CONCLUDED,
        RunStatus.REJECTED,
        RunStatus.EXPIRED,
        RunStatus.CANCELLED,
        RunStatus.FAILED,
        RunStatus.NEEDS_ATTENTION,
    }
)
# The ends that leave the incident to a person (they page the route's escalation target).
ESCALATED_STATES = frozenset({RunStatus.NEEDS_ATTENTION, RunStatus.FAILED, RunStatus.EXPIRED})


class Usage(Stored):
    """Tokens spent by a run's model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total(self) -> int:
        """All tokens, for comparing with the budget."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def plus(self, other: Usage) -> Usage:
        """The sum of two usages."""
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


class ModelUsage(Stored):
    """What one model spent on one run."""

    calls: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost_dollars: float = 0.0


class TextPart(BaseModel):
    """Plain text in a message."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"] = "text"
    text: str
    # Where text the bot did not write comes from (`memory`: a past run's record); the
    # model reads it fenced under that name. Empty: the bot's or the model's own text.
    source: str = Field(default="", exclude_if=_empty)


class ToolCallPart(BaseModel):
    """A request to run one tool (the Messages API's `tool_use` block)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: JsonObject


class ToolResultPart(BaseModel):
    """The answer to one tool call (the Messages API's `tool_result` block)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: str
    is_error: bool = False
    # The tool's own one-line account of the call for people ("Checked the 5xx ratio of
    # shop/checkout: 12.0 %"); never sent to the model.
    summary: str = Field(default="", exclude_if=_empty)


class OpaquePart(BaseModel):
    """A block we keep verbatim to send back (thinking, server tool use)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["opaque"] = "opaque"
    block: JsonObject


Part = Annotated[TextPart | ToolCallPart | ToolResultPart | OpaquePart, Field(discriminator="type")]


class CompactedResult(BaseModel):
    """A tool result that later requests show as a short summary (`bot/compaction.py`);
    its full text stays in the transcript."""

    model_config = ConfigDict(extra="forbid")
    tool_use_id: str
    characters: int  # of the full result
    summary: str
    by: str  # who summarised: `tool`, `excerpt`, or the fast model's name


class Step(Stored):
    """One transcript message: appended to `run:{id}:transcript`, never changed."""

    index: int
    role: Literal["user", "assistant"]
    author: Literal["alert", "model", "planner", "tools", "system", "briefing"]
    content: list[Part]
    at: datetime = Field(default_factory=utcnow)
    stop_reason: str | None = None
    usage: Usage | None = None
    # A compaction step: the earlier results later requests show summarised.
    compacted: list[CompactedResult] = Field(default_factory=list, exclude_if=_empty)

    def tool_calls(self) -> list[ToolCallPart]:
        """The tool calls this step asks for."""
        return [p for p in self.content if isinstance(p, ToolCallPart)]


class Check(Stored):
    """A PromQL check: the signal is healthy when the query's value compares true."""

    query: str
    op: Literal["<", "<=", ">", ">=", "==", "absent"] = "absent"
    threshold: float = 0.0

    def passes(self, value: float | None) -> bool:
        """Whether a query's value (None: no series) counts as healthy."""
        if self.op == "absent":
            return value is None
        if value is None:
            return False
        match self.op:
            case "<":
                return value < self.threshold
            case "<=":
                return value <= self.threshold
            case ">":
                return value > self.threshold
            case ">=":
                return value >= self.threshold
            case _:
                return value == self.threshold

    def describe(self) -> str:
        """The check as a reader sees it."""
        if self.op == "absent":
            return f"`{self.query}` returns no series"
        return f"`{self.query}` {self.op} {self.threshold:g}"


class Finding(Stored):
    """Something the investigation established, with the evidence behind it."""

    summary: str
    evidence: str = ""
    tool: str | None = None
    # Why the finding could not be grounded in a tool result of its run (empty: grounded,
    # or not checked).
    unverified: str = Field(default="", exclude_if=_empty)


class Proposal(Stored):
    """A remediation the investigation asks a human to approve."""

    id: str = Field(default_factory=lambda: new_id("prop"))
    action: str
    arguments: JsonObject
    target: str
    rationale: str
    risk: Literal["low", "medium", "high"]
    expected_effect: str
    verify: Check | None = None
    proposed_at: datetime = Field(default_factory=utcnow)
    # Why the bot replaced the proposed verification check (e.g. it was already healthy).
    verify_note: str = Field(default="", exclude_if=_empty)


class Decision(Stored):
    """A human's answer to a proposal."""

    run_id: str
    proposal_id: str
    user: str
    verdict: Literal["approve", "reject"]
    reason: str = ""
    via: Literal["terminal", "cli", "slack", "policy"] = "cli"
    # The Slack user groups (IDs or handles) the user belonged to when deciding; the
    # policy's approver groups are checked against them.
    groups: list[str] = Field(default_factory=list)
    at: datetime = Field(default_factory=utcnow)


class ActionRecord(Stored):
    """The idempotency record of one proposal's action: written before and after the call."""

    run_id: str
    proposal_id: str
    action: str
    arguments: JsonObject
    state: Literal["started", "succeeded", "failed"]
    owner: str
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    detail: str = ""


class Flag(Stored):
    """Untrusted text that addressed the model or the bot (a possible prompt injection)."""

    source: str  # `tool:kubernetes_pod_logs`, `alert`, `slack_thread`
    kind: str
    excerpt: str
    at: datetime = Field(default_factory=utcnow)

    def describe(self) -> str:
        """`a tool result (kubernetes_pod_logs) contained instructions: "…"`."""
        origin, _, name = self.source.partition(":")
        where = {"tool": "a tool result", "alert": "the alert", "slack_thread": "the thread"}
        what = where.get(origin, origin) + (f" ({name})" if name else "")
        return f"{what} contained instructions ({self.kind}): {self.excerpt}"


class Run(Stored):
    """The checkpointed state of one investigation (the `run:{id}` hash's document).

    The transcript is kept apart, in a list appended once per step.
    """

    id: str = Field(default_factory=lambda: new_id("run"))
    status: RunStatus = RunStatus.QUEUED
    version: int = 0
    trigger: Literal["alert", "cli", "slack", "demo"] = "alert"
    alert: Alert
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    deadline: datetime
    steps: int = 0
    model_calls: int = 0
    engine: Literal["model", "runbook"] = "model"
    engine_reason: str = ""
    usage: Usage = Field(default_factory=Usage)
    cost_dollars: float = 0.0
    findings: list[Finding] = Field(default_factory=list)
    proposal: Proposal | None = None
    decisions: list[Decision] = Field(default_factory=list)
    summary: str = ""
    outcome: str = ""
    channels: dict[str, str] = Field(default_factory=dict)
    # Untrusted text that addressed the model or the bot: never auto-approved.
    flags: list[Flag] = Field(default_factory=list, exclude_if=_empty)
    # Calls, tokens and dollars per model (the investigation's and the fast model's).
    model_usage: dict[str, ModelUsage] = Field(default_factory=dict, exclude_if=_empty)
    # One line for people, worded by the fast model from the run's summary and findings.
    headline: str = Field(default="", exclude_if=_empty)
    # Tool calls the investigation ran (each call of each batch).
    tool_calls: int = Field(default=0, exclude_if=_empty)

    @property
    def api_calls(self) -> int:
        """Messages API calls of every model (`model_calls` counts the investigation's)."""
        return sum(u.calls for u in self.model_usage.values()) or self.model_calls


class IncidentRecord(Stored):
    """What a finished run leaves for later runs of its alert or service (`bot/memory.py`):
    compact, redacted, expiring with the retention."""

    run_id: str
    group_key: str
    title: str
    alertname: str = ""
    namespace: str = ""
    service: str = ""
    status: RunStatus
    headline: str = ""
    summary: str = ""
    # The run's findings (their summaries): what it took to be the cause.
    findings: list[str] = Field(default_factory=list)
    action: str = ""
    target: str = ""
    outcome: str = ""
    approved_by: list[str] = Field(default_factory=list)
    started_at: datetime
    ended_at: datetime
    # Where the run's Slack thread is ("" when it was never posted).
    channel: str = ""
    thread_ts: str = ""
