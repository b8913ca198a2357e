"""The two tools that end an investigation: `propose_remediation` and `conclude`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from bot.models import Finding

PROPOSE = "propose_remediation"
CONCLUDE = "conclude"


class FindingInput(BaseModel):
    """One finding, with the evidence behind it."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(description="What you established, in one sentence.")
    evidence: str = Field(
        default="",
        description="The tool call and the values its result shows, quoted as it shows them.",
    )
    tool_call: str = Field(
        default="",
        description="The id (toolu_…) or the name of the tool call whose result shows it.",
    )


class VerifyInput(BaseModel):
    """How to tell, after the action, that the service recovered."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(description="A PromQL instant query for the signal that fired.")
    op: Literal["<", "<=", ">", ">=", "==", "absent"] = Field(
        description="Healthy when `value op threshold`; `absent`: when the query is empty."
    )
    threshold: float = 0.0


class ProposeRemediationInput(BaseModel):
    """Propose one remediation for a human to approve. Ends the investigation."""

    model_config = ConfigDict(extra="forbid")
    action: str = Field(description="The action's name, e.g. kubernetes.rollback.")
    arguments: dict[str, JsonValue] = Field(description="The action's arguments.")
    target: str = Field(description="What changes, e.g. 'deployment shop/checkout'.")
    rationale: str = Field(description="Why this action, from the evidence.")
    risk: Literal["low", "medium", "high"]
    expected_effect: str = Field(description="What should happen to the signal, and when.")
    summary: str = Field(description="The investigation's conclusion in two sentences.")
    findings: list[FindingInput] = Field(default_factory=list)
    verify: VerifyInput | None = Field(
        default=None, description="How to check recovery; default: the alert clears."
    )


class ConcludeInput(BaseModel):
    """End the investigation without an action (none needed, or none safe)."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(description="The conclusion, for the on-call engineer.")
    findings: list[FindingInput] = Field(default_factory=list)
    needs_attention: bool = Field(default=False, description="True when a human should look now.")


def findings_of(items: list[FindingInput]) -> tuple[Finding, ...]:
    """The model's findings as stored `Finding`s."""
    return tuple(
        Finding(summary=f.summary, evidence=f.evidence, tool=f.tool_call or None) for f in items
    )
