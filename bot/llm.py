"""The Claude engine: one Messages API call per turn, turned into the loop's next `Turn`.

The model sees the read-only tools the run may use plus two tools that end the
investigation: `propose_remediation` and `conclude`. Prompt caching marks the system
prompt, the tool list and the newest message, so each turn re-reads the run from cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bot import fencing
from bot.compaction import OVERFLOW_NUDGE, Compactor, Fitted, Request, overflowed_twice
from bot.finishing import (
    CONCLUDE,
    PROPOSE,
    ConcludeInput,
    ProposeRemediationInput,
    findings_of,
)
from bot.messages import part_from_block, to_messages, usage_of
from bot.metrics import Metrics
from bot.models import (
    Check,
    Part,
    Proposal,
    Run,
    Step,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from bot.pricing import Prices
from bot.scoping import offered_tools, run_scope
from bot.steps import AwaitApproval, Continue, EngineReply, Finish, HandOver, RunTools, Turn
from bot.tiering import count_usage, describe_error, outcome
from bot.untrusted import redact_step
from policies.scope import Scope, ScopeRule
from tools.actions import Action
from tools.toolset import Tool, describe_validation_error

if TYPE_CHECKING:  # anthropic is imported only where a client is built (`bot.deps`)
    import anthropic
    from anthropic.types import TextBlockParam, ToolParam

SYSTEM_PROMPT = (
    """\
You are incident-bot, the on-call engineer's investigator. An alert fired; find out why.

- Use the read-only tools to look at metrics, alerts, deployments, pods, events and logs.
  Start from the alert's labels; check what changed recently.
- Ground every finding in a tool result: name the tool call (its id or tool name) and
  quote the values as that result shows them; findings that are not are marked unverified.
- Several independent tool calls may go in one turn; they run in parallel.
- Finish with exactly one call: `propose_remediation` when a listed action would fix the
  cause (a human approves it before anything changes), or `conclude` when no action is
  needed or none is safe. Never claim to have changed anything yourself.

"""
    + fencing.RULES
    + "\n"
)


class ClaudeEngine:
    """Asks Claude for the next turn of an investigation.

    Without a client it only reads recorded steps (`resume`), as `runs replay` does:
    `next_turn` then hands over, and nothing can reach the API.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic | None,
        *,
        model: str,
        max_tokens: int,
        tools: Sequence[Tool],
        actions: Sequence[Action],
        metrics: Metrics,
        scopes: Sequence[ScopeRule] = (),
        prices: Prices | None = None,
        compactor: Compactor | None = None,
    ) -> None:
        self._client = client
        self._prices = prices or Prices()
        self._compactor = compactor
        self._model = model
        self._max_tokens = max_tokens
        self._tools = tuple(tools)
        self._actions = {a.name: a for a in actions}
        self._metrics = metrics
        self._scopes = tuple(scopes)
        # The tool list of each scope, built once: the same scope gets the same (cached) list.
        self._tool_params: dict[tuple[str, ...], list[ToolParam]] = {}

    def _tools_for(self, scope: Scope) -> list[ToolParam]:
        """The tool list a run with this scope is offered: out-of-scope tools are left out."""
        offered = offered_tools(scope, self._tools)
        key = tuple(t.api_name for t in offered)
        if key not in self._tool_params:
            self._tool_params[key] = _tool_params(offered, tuple(self._actions.values()))
        return self._tool_params[key]

    @property
    def model(self) -> str:
        """The model this engine asks."""
        return self._model

    async def next_turn(self, run: Run, transcript: Sequence[Step]) -> EngineReply:
        """Call the model once (compacting the transcript first when it outgrew its share
        of the context window) and turn its answer into the next turn."""
        if self._client is None:
            return EngineReply(turn=HandOver(reason="no model client: recorded steps only"))
        import anthropic  # loaded already with the client (`bot.deps`)

        if overflowed_twice(transcript):
            reason = "the transcript outgrew the model's context window, even compacted"
            return EngineReply(turn=HandOver(reason=reason))
        scope = run_scope(self._scopes, run)
        fitted = await self._fit(run, scope, transcript)
        transcript = fitted.transcript
        request = self._request(scope, transcript)
        started = time.perf_counter()
        try:
            message = await self._client.messages.create(
                model=request.model,
                max_tokens=self._max_tokens,
                system=request.system,
                tools=request.tools,
                messages=request.messages,
            )
        except anthropic.APIError as exc:
            self._metrics.model_requests.labels(self._model, outcome(exc)).inc()
            return EngineReply(
                turn=HandOver(reason=f"model unavailable: {describe_error(exc)}"),
                steps=fitted.steps,
                side_calls=fitted.calls,
            )
        finally:
            self._metrics.model_request_duration.labels(self._model).observe(
                time.perf_counter() - started
            )
        self._metrics.model_requests.labels(self._model, "ok").inc()
        usage = usage_of(message)
        self._count_tokens(usage)
        # The model's own text is untrusted too: no secret it repeats is stored or posted.
        step, redactions = redact_step(
            Step(
                index=len(transcript),
                role="assistant",
                author="model",
                content=[part_from_block(block) for block in message.content],
                stop_reason=message.stop_reason,
                usage=usage,
            )
        )
        resumed = self.resume(step)
        return EngineReply(
            turn=resumed.turn,
            steps=(*fitted.steps, step, *resumed.steps),
            usage=usage,
            redactions=redactions,
            side_calls=fitted.calls,
        )

    async def _fit(self, run: Run, scope: Scope, transcript: Sequence[Step]) -> Fitted:
        if self._compactor is None:
            return Fitted(transcript=transcript)
        return await self._compactor.fit(run.id, transcript, lambda t: self._request(scope, t))

    def _request(self, scope: Scope, transcript: Sequence[Step]) -> Request:
        """The request for this transcript: the cached system prompt and tools first."""
        system: list[TextBlockParam] = [
            {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": f"This run may read: {scope.describe()}."},
        ]
        return Request(
            model=self._model,
            system=system,
            tools=self._tools_for(scope),
            messages=to_messages(transcript),
        )

    def resume(self, step: Step) -> EngineReply:
        """What a recorded model step asks for (also used when a run resumes after a crash)."""
        turn, extra = self._interpret(step)
        return EngineReply(turn=turn, steps=extra)

    def _interpret(self, step: Step) -> tuple[Turn, tuple[Step, ...]]:
        calls = step.tool_calls()
        match step.stop_reason:
            case "tool_use":
                return self._tool_turn(calls, step)
            case "pause_turn":
                # A long server-side turn paused: send it back as it is to continue.
                return Continue(), ()
            case "max_tokens":
                return Continue(), (
                    _nudge(
                        step,
                        calls,
                        "Your reply was cut off at the output token limit. Be brief: call "
                        "one tool, or finish with propose_remediation or conclude.",
                    ),
                )
            case "refusal":
                return HandOver(reason="the model declined to continue (stop_reason refusal)"), ()
            case "model_context_window_exceeded":
                # Compacted before the next call (`bot.compaction`), which is tried once.
                return Continue(), (_nudge(step, calls, OVERFLOW_NUDGE),)
            case _:
                return Continue(), (
                    _nudge(
                        step,
                        calls,
                        "Finish the investigation by calling propose_remediation or conclude.",
                    ),
                )

    def _tool_turn(self, calls: list[ToolCallPart], step: Step) -> tuple[Turn, tuple[Step, ...]]:
        errors: list[ToolResultPart] = []
        for call in calls:
            if call.name not in (PROPOSE, CONCLUDE):
                continue
            try:
                return self._finishing_turn(call), ()
            except (ValidationError, ValueError) as exc:
                errors.append(
                    ToolResultPart(tool_use_id=call.id, content=_problem(call, exc), is_error=True)
                )
        if errors:
            # Other calls of the same turn still need a result each: answer them too.
            answered = {e.tool_use_id for e in errors}
            skipped = [
                ToolResultPart(
                    tool_use_id=c.id,
                    content="not run: fix the finishing call first",
                    is_error=True,
                )
                for c in calls
                if c.id not in answered
            ]
            return Continue(), (
                Step(
                    index=step.index + 1, role="user", author="tools", content=[*errors, *skipped]
                ),
            )
        return RunTools(calls=tuple(calls)), ()

    def _finishing_turn(self, call: ToolCallPart) -> Turn:
        if call.name == CONCLUDE:
            done = ConcludeInput.model_validate(call.input)
            return Finish(
                summary=done.summary,
                findings=findings_of(done.findings),
                needs_attention=done.needs_attention,
            )
        proposed = ProposeRemediationInput.model_validate(call.input)
        action = self._actions.get(proposed.action)
        if action is None:
            raise ValueError(
                f"unknown action {proposed.action!r}; available: {', '.join(self._actions)}"
            )
        action.input_model.model_validate(proposed.arguments)
        verify = None if proposed.verify is None else Check(**proposed.verify.model_dump())
        return AwaitApproval(
            proposal=Proposal(
                action=proposed.action,
                arguments=proposed.arguments,
                target=proposed.target,
                rationale=proposed.rationale,
                risk=proposed.risk,
                expected_effect=proposed.expected_effect,
                verify=verify,
            ),
            summary=proposed.summary,
            findings=findings_of(proposed.findings),
        )

    def _count_tokens(self, usage: Usage) -> None:
        count_usage(self._metrics, self._model, usage, self._prices.cost(self._model, usage))


def _tool_params(tools: Sequence[Tool], actions: Sequence[Action]) -> list[ToolParam]:
    params: list[ToolParam] = [
        {"name": t.api_name, "description": t.description, "input_schema": t.input_schema()}
        for t in tools
    ]
    catalogue = "\n".join(
        f"- {a.name}: {a.description} Arguments: "
        f"{json.dumps(a.input_model.model_json_schema().get('properties', {}))}"
        for a in actions
    )
    params.append(
        {
            "name": PROPOSE,
            "description": (
                "Propose one remediation for a human to approve; this ends the "
                f"investigation. Available actions:\n{catalogue}"
            ),
            "input_schema": ProposeRemediationInput.model_json_schema(),
        }
    )
    params.append(
        {
            "name": CONCLUDE,
            "description": ConcludeInput.__doc__ or "",
            "input_schema": ConcludeInput.model_json_schema(),
            "cache_control": {"type": "ephemeral"},
        }
    )
    return params


def _nudge(step: Step, calls: list[ToolCallPart], text: str) -> Step:
    """A user message that answers any pending tool calls and tells the model what to do."""
    unanswered: list[Part] = [
        ToolResultPart(tool_use_id=c.id, content="not run: the reply was cut off", is_error=True)
        for c in calls
    ]
    return Step(
        index=step.index + 1,
        role="user",
        author="system",
        content=[*unanswered, TextPart(text=text)],
    )


def _problem(call: ToolCallPart, exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"invalid arguments for {call.name}: {describe_validation_error(exc)}"
    return f"invalid arguments for {call.name}: {exc}"
