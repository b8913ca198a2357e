"""The terminal channel: a readable, step-by-step view of a run, and the approval prompt."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from bot.approvals import describe_target
from bot.charts import summary_line
from bot.models import Run, RunStatus, Step, TextPart, ToolCallPart, ToolResultPart
from bot.progress import mark, tool_line
from bot.remediation import dry_run
from bot.signals import lines_of
from tools.actions import Action, ActionContext
from tools.prometheus_http import PrometheusError

_WIDTH = 100
_ACTING = (RunStatus.EXECUTING, RunStatus.VERIFYING)


class TerminalView:
    """Prints what the run does as it is checkpointed: a `Listener` for the loop."""

    def __init__(
        self,
        actions: dict[str, Action],
        action_context: ActionContext,
        out: TextIO | None = None,
    ) -> None:
        self._actions = actions
        self._action_context = action_context
        self._out = out if out is not None else sys.stdout  # the stdout of now, not of import
        self._status: RunStatus | None = None
        self._engine_reason = ""
        self._tool_names: dict[str, str] = {}
        self._acted = False

    def say(self, text: str = "") -> None:
        """Print a line and flush (the view is read live, also through pipes)."""
        print(text, file=self._out, flush=True)

    async def on_checkpoint(self, run: Run, steps: Sequence[Step]) -> None:
        """Show new steps and any change of status."""
        for step in steps:
            self._show_step(step)
        if run.engine_reason and run.engine_reason != self._engine_reason:
            self._engine_reason = run.engine_reason
            self.say(f"  runbook planner takes over: {run.engine_reason}")
        if run.status != self._status:
            self._acted = self._acted or self._status in _ACTING
            self._status = run.status
            await self._show_status(run)

    def _show_step(self, step: Step) -> None:
        for part in step.content:
            if isinstance(part, TextPart) and step.author == "model" and part.text.strip():
                self.say(f"  agent: {_cut(part.text)}")
            elif isinstance(part, ToolCallPart):
                self._tool_names[part.id] = part.name
            elif isinstance(part, ToolResultPart):
                line = tool_line(part, self._tool_names.get(part.tool_use_id))
                self.say(f"  {mark(part)} {line}")

    async def _show_status(self, run: Run) -> None:
        self.say(f"[{run.status.value}]")
        if run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None:
            await self.show_proposal(run)
        if run.status.terminal and self._acted:
            await self._show_signal(run, "recovery")

    async def show_proposal(self, run: Run) -> None:
        """The findings, the proposed action with its dry run, and why."""
        assert run.proposal is not None  # noqa: S101 - only called with a proposal
        p = run.proposal
        self.say()
        self.say(f"Summary: {run.summary}")
        for finding in run.findings:
            self.say(f"  • {finding.summary}")
            if finding.unverified:
                self.say(f"      ⚠ unverified: {finding.unverified}")
            if finding.evidence:
                self.say(f"      evidence: {_cut(finding.evidence)}")
        self.say()
        for flag in run.flags:
            self.say(f"  WARNING: {flag.describe()}")
        self.say(f"Proposed action: {p.action} on {describe_target(p)}  (risk: {p.risk})")
        self.say(f"  described by the investigation as: {p.target}")
        self.say(f"  arguments: {json.dumps(p.arguments)}")
        self.say(f"  dry run:   {await dry_run(self._actions, self._action_context, p)}")
        self.say(f"  why:       {p.rationale}")
        self.say(f"  expected:  {p.expected_effect}")
        if p.verify is not None:
            self.say(f"  verify:    {p.verify.describe()}")
        if p.verify_note:
            self.say(f"  ⚠ {p.verify_note}")
        await self._show_signal(run, "signal")
        self.say()

    async def _show_signal(self, run: Run, label: str) -> None:
        """A sparkline of the run's signal; nothing without Prometheus or a series."""
        if self._action_context.prometheus_url is None:
            return
        try:
            lines = await lines_of(run, self._action_context)
        except PrometheusError as exc:
            self.say(f"  {label}: could not read it: {_cut(str(exc), 80)}")
            return
        if lines:
            self.say(f"  {label + ':':<10} {summary_line(lines[0])}")

    async def ask_approval(self, run: Run) -> bool:
        """Ask on the terminal; True to approve."""
        assert run.proposal is not None  # noqa: S101
        while True:
            answer = await asyncio.to_thread(
                input,
                f"Approve {run.proposal.action} on {describe_target(run.proposal)}? [y/n] ",
            )
            if answer.strip().lower() in ("y", "yes"):
                return True
            if answer.strip().lower() in ("n", "no"):
                return False

    def finished(self, run: Run, redis_location: str) -> None:
        """The closing lines: outcome, and where the run's state lives."""
        self.say()
        self.say(f"Run {run.id}: {run.status.value}")
        if run.outcome:
            self.say(f"  {run.outcome}")
        self.say(f"State: {redis_location}")
        self.say(f"  see it with: incident-bot runs show {run.id}")


def _cut(text: str, width: int = _WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
