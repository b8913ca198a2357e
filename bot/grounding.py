"""Grounded findings: each finding of the model names a tool call of its run, and every
number it quotes is one that call returned.

A finding's sources are the calls its `tool` field or its evidence names (by call id, or
by tool name: `prometheus_query` or `prometheus.query`). A quoted number is grounded when
one of those calls' results (or its arguments: the window, the query) holds a number of
equal value at the precision quoted (`0.12` for 0.1203), or, quoted as a percentage, a
ratio a hundred times smaller (`12.0 %` for 0.1203). Numbers that are part of a word or a
version (`5xx`, `v2.4.0`, `[5m]`) are not quotes. Pure functions of the transcript: the
model is asked once to ground what is not, and that question is a recorded step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.finishing import CONCLUDE, PROPOSE
from bot.models import Finding, Step, ToolCallPart, ToolResultPart
from tools.toolset import compact_json

# The answer to a finishing call whose findings are not grounded starts with this.
REJECTED = "not accepted: some findings are not grounded in this run's tool results"
# A number in a finding: not glued to a word or a version; `1,234`, `0.12`, `12.0 %`.
_QUOTED = re.compile(
    r"(?<![\w.])(?<!\w-)(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\w|\.\d)(\s*(?:%|percent\b))?"
)
# A number in a tool's result: anywhere, also inside timestamps and labels.
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PLAIN = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_SHOWN = 3  # numbers named per finding in a reason


@dataclass(frozen=True, kw_only=True)
class Quote:
    """A number as a finding quotes it."""

    text: str
    value: float
    decimals: int
    percent: bool

    def shown_in(self, values: set[float]) -> bool:
        """Whether a value among `values` reads as this quote at its precision."""
        tolerance = 0.5 * 10**-self.decimals + 1e-9 * abs(self.value)
        scales = (1.0, 100.0) if self.percent else (1.0,)
        return any(abs(v * s - self.value) <= tolerance for v in values for s in scales)


@dataclass(frozen=True, kw_only=True)
class Source:
    """One tool call of the run and what it returned."""

    call: ToolCallPart
    result: str


def quotes(text: str) -> list[Quote]:
    """The numbers `text` quotes."""
    found = []
    for match in _QUOTED.finditer(text):
        whole, fraction, percent = match.group(1), match.group(2) or "", match.group(3)
        found.append(
            Quote(
                text=match.group(0).strip(),
                value=float(whole.replace(",", "") + fraction),
                decimals=max(len(fraction) - 1, 0),
                percent=percent is not None,
            )
        )
    return found


def numbers_in(text: str) -> set[float]:
    """Every number in a tool's result or arguments, read generously."""
    values = {float(m.group(0).replace(",", "")) for m in _GROUPED.finditer(text)}
    values |= {float(m.group(0)) for m in _PLAIN.finditer(text)}
    return values


def sources(transcript: Sequence[Step]) -> list[Source]:
    """The model's tool calls in the run, each with its result (empty when it had none)."""
    results = {
        p.tool_use_id: p.content
        for step in transcript
        if step.role == "user"
        for p in step.content
        if isinstance(p, ToolResultPart)
    }
    return [
        Source(call=c, result=results.get(c.id, ""))
        for step in transcript
        if step.role == "assistant" and step.author == "model"
        for c in step.tool_calls()
        if c.name not in (PROPOSE, CONCLUDE)
    ]


def named(finding: Finding, run_sources: Sequence[Source]) -> list[Source]:
    """The calls a finding names: in its `tool` field or its evidence."""
    evidence = finding.evidence.replace(".", "_")
    tool = (finding.tool or "").strip().replace(".", "_")
    return [
        s
        for s in run_sources
        if tool in (s.call.id, s.call.name) or _mentions(evidence, s.call.id, s.call.name)
    ]


def why_ungrounded(finding: Finding, run_sources: Sequence[Source]) -> str:
    """Why the finding is not grounded in the calls it names; empty when it is."""
    cited = named(finding, run_sources)
    if not cited:
        return "its evidence names no tool call of this run"
    values: set[float] = set()
    for source in cited:
        values |= numbers_in(source.result) | numbers_in(compact_json(source.call.input))
    text = f"{finding.summary}\n{finding.evidence}"
    missing = [q.text for q in quotes(text) if not q.shown_in(values)]
    if not missing:
        return ""
    tools = ", ".join(sorted({s.call.name for s in cited}))
    shown = ", ".join(dict.fromkeys(missing[:_SHOWN]))
    return f"it quotes {shown}, which the result of {tools} does not show"


def ungrounded(findings: Sequence[Finding], transcript: Sequence[Step]) -> dict[int, str]:
    """The position of each finding that is not grounded, with why."""
    run_sources = sources(transcript)
    reasons = {i: why_ungrounded(f, run_sources) for i, f in enumerate(findings)}
    return {i: why for i, why in reasons.items() if why}


def asked(transcript: Sequence[Step]) -> bool:
    """Whether the model was already asked, in this run, to ground its findings."""
    finishing = {
        c.id for step in transcript for c in step.tool_calls() if c.name in (PROPOSE, CONCLUDE)
    }
    return any(
        isinstance(p, ToolResultPart)
        and p.tool_use_id in finishing
        and p.content.startswith(REJECTED)
        for step in transcript
        for p in step.content
    )


def rejection(
    step: Step, findings: Sequence[Finding], problems: dict[int, str], *, index: int
) -> Step:
    """The answer to the model's finishing step: which findings are not grounded and why;
    its other calls are not run."""
    lines = [
        f"- finding {i + 1} ({_cut(findings[i].summary)}): {why}" for i, why in problems.items()
    ]
    ask = (
        f"{REJECTED}:\n"
        + "\n".join(lines)
        + "\nGround each of them (name the tool call its evidence comes from, in `tool_call` "
        "or the evidence, and quote its values as that result shows them) or drop it, then "
        "finish again."
    )
    answers = [
        ToolResultPart(
            tool_use_id=c.id,
            content=ask if c.name in (PROPOSE, CONCLUDE) else "not run: ground the findings first",
            is_error=True,
        )
        for c in step.tool_calls()
    ]
    return Step(index=index, role="user", author="tools", content=list(answers))


def marked(findings: Sequence[Finding], problems: dict[int, str]) -> tuple[Finding, ...]:
    """The findings, those not grounded marked unverified with why."""
    return tuple(
        f.model_copy(update={"unverified": problems[i]}) if i in problems else f
        for i, f in enumerate(findings)
    )


def _mentions(text: str, *names: str) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text) for n in names if n)


def _cut(text: str, chars: int = 80) -> str:
    return repr(text if len(text) <= chars else text[: chars - 1] + "…")
