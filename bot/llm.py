"""The Claude engine: one Messages API call per turn, turned into the loop's next `Turn`.

The model sees the read-only tools the run may use plus two tools that end the
investigation: `propose_remediation` and `conclude`. Prompt caching marks the system
prompt, the tool list and the newest message, so each turn re-reads the run from cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import anthropic
from anthropic.types import ToolParam
from pydantic import ValidationError

from bot import fencing
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
from bot.scoping import offered_tools, run_scope
from bot.steps import AwaitApproval, Continue, EngineReply, Finish, HandOver, RunTools, Turn
from bot.untrusted import redact_step
from policies.scope import Scope, ScopeRule
from tools.actions import Action
from tools.toolset import Tool, describe_validation_error

SYSTEM_PROMPT = (
    """\
You are incident-bot, the on-call engineer's investigator. An alert fired; find out why.

- Use the read-only tools to look at metrics, alerts, deployments, pods, events and logs.
  Start from the alert's labels; check what changed recently.
- Ground every finding in a tool result: name the query or object and the values.
- Several independent tool calls may go in one turn; they run in parallel.
- Finish with exactly one call: `propose_remediation` when a listed action would fix the
  cause (a human approves it before anything changes), or `conclude` when no action is
  needed or none is safe. Never claim to have changed anything yourself.

"""
    + fencing.RULES
    + "\n"
)

# Dollars per million tokens: input, output, cache write, cache read.
_PRICES: dict[str, tuple[float, float, float, float]] = {
    "opus": (15.0, 75.0, 18.75, 1.50),
    "sonnet": (3.0, 15.0, 3.75, 0.30),
    "haiku": (1.0, 5.0, 1.25, 0.10),
}


def cost_dollars(model: str, usage: Usage) -> float:
    """Estimated price of `usage` on `model` (a Sonnet price for unknown models)."""
    family = next((f for f in _PRICES if f in model), "sonnet")
    p_in, p_out, p_write, p_read = _PRICES[family]
    return (
        usage.input_tokens * p_in
        + usage.output_tokens * p_out
        + usage.cache_write_tokens * p_write
        + usage.cache_read_tokens * p_read
    ) / 1_000_000


class ClaudeEngine:
    """Asks Claude for the next turn of an investigation."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        *,
        model: str,
        max_tokens: int,
        tools: Sequence[Tool],
        actions: Sequence[Action],
        metrics: Metrics,
        scopes: Sequence[ScopeRule] = (),
    ) -> None:
        self._client = client
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
        """Call the model once and turn its answer into the next turn."""
        started = time.perf_counter()
        scope = run_scope(self._scopes, run)
        try:
            message = await self._client.messages.create(
                model=self._model,
                max_tokens=self._max_tokens,
                system=[
                    {
                        "type": "text",
                        "text": SYSTEM_PROMPT,
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": f"This run may read: {scope.describe()}."},
                ],
                tools=self._tools_for(scope),
                messages=to_messages(transcript),
            )
        except anthropic.APIError as exc:
            self._metrics.model_requests.labels(self._model, _outcome(exc)).inc()
            return EngineReply(turn=HandOver(reason=f"model unavailable: {_describe(exc)}"))
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
            turn=resumed.turn, steps=(step, *resumed.steps), usage=usage, redactions=redactions
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
                return HandOver(reason="the transcript outgrew the model's context window"), ()
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
        tokens = self._metrics.model_tokens
        tokens.labels(self._model, "input").inc(usage.input_tokens)
        tokens.labels(self._model, "output").inc(usage.output_tokens)
        tokens.labels(self._model, "cache_read").inc(usage.cache_read_tokens)
        tokens.labels(self._model, "cache_write").inc(usage.cache_write_tokens)
        self._metrics.model_cost.labels(self._model).inc(cost_dollars(self._model, usage))


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


def _outcome(exc: anthropic.APIError) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        return "overloaded" if exc.status_code == 529 else f"http_{exc.status_code // 100}xx"
    if isinstance(exc, anthropic.APITimeoutError):
        return "timeout"
    return "connection_error"


def _describe(exc: anthropic.APIError) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        retried = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        return f"HTTP {exc.status_code}{' after retries' if retried else ''}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
