"""The runbook planner: a deterministic investigation from `policies/runbooks/*.yaml`.

A runbook matches alert labels (regular expressions, whole match), runs read-only tool
calls with arguments templated from the labels (and from earlier results; a value inside
a query string is escaped for it, see `bot.templating`), derives
findings from conditions on the results, and proposes an action when the findings it
names all hold; otherwise it concludes. It is used when no model is configured, and to
finish a run the model cannot (down after retries, over budget, refused).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from bot.errors import ConfigError
from bot.models import (
    Alert,
    Check,
    Finding,
    Proposal,
    Run,
    Step,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    utcnow,
)
from bot.steps import AwaitApproval, EngineReply, Finish, RunTools
from bot.templating import MissingValue, TemplateError, lookup, references, render
from tools.toolset import Tool

CALL_PREFIX = "rb_"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolStep(_Spec):
    """One read-only tool call; `args` may use templates."""

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    tool: str
    args: dict[str, JsonValue] = Field(default_factory=dict)


class Condition(_Spec):
    """A test on one value: `value` is a template path such as `steps.x.data.0.value`."""

    value: str
    op: Literal[">", "<", ">=", "<=", "==", "!=", "exists", "age_under_minutes"]
    threshold: float | str | None = None

    def holds(self, context: dict[str, Any], now: datetime) -> bool:
        """Whether the condition is true at `now`; a missing value makes it false."""
        try:
            value = lookup(context, self.value)
        except MissingValue:
            return False
        if self.op == "exists":
            return value is not None
        if self.op == "age_under_minutes":
            at = datetime.fromisoformat(str(value))
            return now - at < timedelta(minutes=float(self.threshold or 0))
        if self.op in ("==", "!="):
            return (str(value) == str(self.threshold)) == (self.op == "==")
        number, limit = float(value), float(self.threshold or 0)
        return {">": number > limit, "<": number < limit, ">=": number >= limit}.get(
            self.op, number <= limit
        )


class FindingSpec(_Spec):
    """A finding stated when all its conditions hold."""

    id: str
    when: list[Condition]
    summary: str
    evidence: str = ""


class CheckSpec(_Spec):
    """A templated verification check."""

    query: str
    op: Literal["<", "<=", ">", ">=", "==", "absent"] = "absent"
    threshold: float = 0.0


class ProposalSpec(_Spec):
    """The action to propose when every named finding holds."""

    when: list[str]
    action: str
    arguments: dict[str, JsonValue]
    target: str
    rationale: str
    risk: Literal["low", "medium", "high"]
    expected_effect: str
    verify: CheckSpec | None = None


class Runbook(_Spec):
    """One runbook file."""

    name: str
    description: str = ""
    match: dict[str, str]
    steps: list[ToolStep]
    findings: list[FindingSpec] = Field(default_factory=list)
    proposal: ProposalSpec | None = None
    conclusion: str = "No remediation applies; the findings are for the on-call engineer."

    def matches(self, alert: Alert) -> bool:
        """Whether every label pattern fully matches the alert's label."""
        return all(
            re.fullmatch(pattern, alert.labels.get(label, "")) is not None
            for label, pattern in self.match.items()
        )


def load_runbooks(directory: Path | None = None) -> tuple[Runbook, ...]:
    """The runbooks of `directory`, else the shipped ones; sorted by file name."""
    if directory is None:
        shipped = resources.files("policies") / "runbooks"
        files = sorted(
            (f.name, f.read_text()) for f in shipped.iterdir() if f.name.endswith(".yaml")
        )
    else:
        files = sorted((p.name, p.read_text()) for p in directory.glob("*.yaml"))
    books = []
    for name, text in files:
        try:
            books.append(Runbook.model_validate(yaml.safe_load(text)))
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"runbook {name}: {exc}") from exc
    return tuple(books)


class RunbookPlanner:
    """Plays the matching runbook against a run; same interface as the Claude engine."""

    def __init__(
        self,
        runbooks: Sequence[Runbook],
        tools: dict[str, Tool],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`clock`: the time conditions are judged at (a replay passes the record's)."""
        self._runbooks = tuple(runbooks)
        self._clock = clock
        self._tools = {t.name: t for t in tools.values()}
        for book in self._runbooks:
            for step in book.steps:
                if step.tool not in self._tools:
                    raise ConfigError(
                        f"runbook {book.name}: step {step.id} uses unknown tool {step.tool!r}"
                    )

    def resume(self, step: Step) -> EngineReply:
        """What a recorded planner step asks for: its tool calls, run again after a crash."""
        return EngineReply(turn=RunTools(calls=tuple(step.tool_calls())))

    def select(self, alert: Alert) -> Runbook | None:
        """The first runbook that matches the alert."""
        return next((b for b in self._runbooks if b.matches(alert)), None)

    async def next_turn(self, run: Run, transcript: Sequence[Step]) -> EngineReply:
        """The next batch of runbook tool calls, or the proposal or conclusion."""
        book = self.select(run.alert)
        if book is None:
            return EngineReply(
                turn=Finish(
                    summary=f"No runbook matches alert {run.alert.title!r}; "
                    "a human must investigate.",
                    needs_attention=True,
                )
            )
        context = _context(run.alert, transcript)
        done: dict[str, Any] = context["steps"]
        pending = [s for s in book.steps if s.id not in done]
        if pending:
            calls = self._ready_calls(book, pending, context)
            step = Step(
                index=len(transcript),
                role="assistant",
                author="planner",
                content=[TextPart(text=f"runbook {book.name}"), *calls],
            )
            return EngineReply(turn=RunTools(calls=calls), steps=(step,))
        now = self._clock()
        findings = {f.id: f for f in book.findings if all(c.holds(context, now) for c in f.when)}
        stated = tuple(_finding(f, context) for f in findings.values())
        spec = book.proposal
        if spec is not None and all(name in findings for name in spec.when):
            try:
                proposal = _proposal(spec, context)
            except TemplateError as exc:
                return EngineReply(
                    turn=Finish(
                        summary=f"runbook {book.name}: cannot fill the proposal ({exc})",
                        findings=stated,
                        needs_attention=True,
                    )
                )
            return EngineReply(
                turn=AwaitApproval(
                    proposal=proposal, summary=_summary(book, stated), findings=stated
                )
            )
        return EngineReply(turn=Finish(summary=_text(book.conclusion, context), findings=stated))

    def _ready_calls(
        self, book: Runbook, pending: list[ToolStep], context: dict[str, Any]
    ) -> tuple[ToolCallPart, ...]:
        waiting = {s.id for s in pending}
        ready = [
            s
            for s in pending
            if not any(
                ref.split(".")[1] in waiting
                for ref in references(s.args)
                if ref.startswith("steps.")
            )
        ]
        if not ready:
            raise ConfigError(f"runbook {book.name}: steps refer to each other in a cycle")
        calls = []
        for step in ready:
            try:
                args = render(step.args, context, escape=True)
            except TemplateError as exc:
                # The call still runs, and fails visibly: a label is missing on the alert,
                # or its value cannot be put in the query safely.
                args = {"missing": str(exc)}
            assert isinstance(args, dict)  # noqa: S101 - render keeps a dict a dict
            calls.append(
                ToolCallPart(
                    id=CALL_PREFIX + step.id, name=self._tools[step.tool].api_name, input=args
                )
            )
        return tuple(calls)


def _context(alert: Alert, transcript: Sequence[Step]) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    for step in transcript:
        for part in step.content:
            if isinstance(part, ToolResultPart) and part.tool_use_id.startswith(CALL_PREFIX):
                try:
                    steps[part.tool_use_id.removeprefix(CALL_PREFIX)] = json.loads(part.content)
                except json.JSONDecodeError:
                    steps[part.tool_use_id.removeprefix(CALL_PREFIX)] = {
                        "status": "error",
                        "error": part.content,
                    }
    return {"labels": alert.labels, "annotations": alert.annotations, "steps": steps}


def _text(template: str, context: dict[str, Any]) -> str:
    try:
        return str(render(template, context))
    except MissingValue as exc:
        return f"{template} (missing: {exc})"


def _finding(spec: FindingSpec, context: dict[str, Any]) -> Finding:
    return Finding(summary=_text(spec.summary, context), evidence=_text(spec.evidence, context))


def _summary(book: Runbook, findings: tuple[Finding, ...]) -> str:
    return f"Runbook {book.name}: " + " ".join(f.summary for f in findings)


def _proposal(spec: ProposalSpec, context: dict[str, Any]) -> Proposal:
    arguments = render(spec.arguments, context)
    assert isinstance(arguments, dict)  # noqa: S101 - render keeps a dict a dict
    verify = None
    if spec.verify is not None:
        verify = Check(
            query=str(render(spec.verify.query, context, escape=True)),
            op=spec.verify.op,
            threshold=spec.verify.threshold,
        )
    return Proposal(
        action=spec.action,
        arguments=arguments,
        target=str(render(spec.target, context)),
        rationale=str(render(spec.rationale, context)),
        risk=spec.risk,
        expected_effect=str(render(spec.expected_effect, context)),
        verify=verify,
    )
