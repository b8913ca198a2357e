"""Model tiering: the fast model for side work, and what each model spent.

The investigation asks the main model (`INCIDENT_BOT_MODEL`); short side work (summaries
of compacted tool results, the run's headline) goes to `INCIDENT_BOT_FAST_MODEL`. Every
call is counted per model: in the run (`Run.model_usage`; `usage` and `cost_dollars`
stay the totals), in the daily spend, in the audit (`model_call` names its model) and in
the `incident_bot_model_*` metrics. A fast-model failure never stops a run: it is
logged and counted, and the work it was for is done without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.messages import usage_of
from bot.metrics import Metrics
from bot.models import ModelUsage, Run, Usage
from bot.pricing import Prices
from bot.spend import DailySpend
from bot.steps import ModelCall

if TYPE_CHECKING:  # anthropic is imported only where a client is built (`bot.deps`)
    import anthropic
    from anthropic.types import TextBlockParam

log = logging.getLogger(__name__)

# `Checkpointer.audit`: (run id, event, **data).
Audit = Callable[..., Awaitable[None]]


class FastModel:
    """Asks the fast model for one short text answer."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        *,
        model: str,
        metrics: Metrics,
        prices: Prices,
    ) -> None:
        self._client = client
        self._model = model
        self._metrics = metrics
        self._prices = prices

    @property
    def model(self) -> str:
        """The fast model's name."""
        return self._model

    async def ask(
        self, *, system: str, text: str, purpose: str, run_id: str, max_tokens: int = 1024
    ) -> tuple[str, ModelCall] | None:
        """The model's text answer and the call's account; None (logged) when it failed."""
        import anthropic  # loaded already with the client (`bot.deps`)

        started = time.perf_counter()
        blocks: list[TextBlockParam] = [{"type": "text", "text": system}]
        try:
            message = await self._client.messages.create(
                model=self._model,
                max_tokens=max_tokens,
                system=blocks,
                messages=[{"role": "user", "content": text}],
            )
        except anthropic.APIError as exc:
            self._metrics.model_requests.labels(self._model, outcome(exc)).inc()
            log.warning(
                "the fast model failed (%s): %s",
                purpose,
                describe_error(exc),
                extra={"run_id": run_id, "model": self._model, "purpose": purpose},
            )
            return None
        finally:
            seconds = time.perf_counter() - started
            self._metrics.model_request_duration.labels(self._model).observe(seconds)
        self._metrics.model_requests.labels(self._model, "ok").inc()
        usage = usage_of(message)
        dollars = self._prices.cost(self._model, usage)
        count_usage(self._metrics, self._model, usage, dollars)
        answer = "".join(b.text for b in message.content if b.type == "text")
        call = ModelCall(
            model=self._model,
            purpose=purpose,
            usage=usage,
            dollars=dollars,
            seconds=round(seconds, 3),
        )
        return answer, call


def charge(run: Run, model: str, usage: Usage, dollars: float, *, investigation: bool) -> Run:
    """The run with one call of `model` added to its totals and its per-model account;
    `investigation` calls also count as the run's model calls (the step budget's)."""
    spent = run.model_usage.get(model, ModelUsage())
    account = ModelUsage(
        calls=spent.calls + 1,
        usage=spent.usage.plus(usage),
        cost_dollars=spent.cost_dollars + dollars,
    )
    return run.model_copy(
        update={
            "model_calls": run.model_calls + (1 if investigation else 0),
            "usage": run.usage.plus(usage),
            "cost_dollars": run.cost_dollars + dollars,
            "model_usage": {**run.model_usage, model: account},
        }
    )


async def record_call(audit: Audit, spend: DailySpend, run_id: str, call: ModelCall) -> None:
    """Count a side call in today's spend and audit it as a `model_call` of its model."""
    await spend.add(call.usage, call.dollars)
    await audit_call(audit, run_id, call)


async def audit_call(audit: Audit, run_id: str, call: ModelCall) -> None:
    """Audit a side call as a `model_call` of its model (its spend counted elsewhere)."""
    await audit(
        run_id,
        "model_call",
        model=call.model,
        purpose=call.purpose,
        seconds=call.seconds,
        usage=call.usage.model_dump(),
    )


def count_usage(metrics: Metrics, model: str, usage: Usage, dollars: float) -> None:
    """Add one call's tokens and dollars to the `incident_bot_model_*` counters."""
    tokens = metrics.model_tokens
    tokens.labels(model, "input").inc(usage.input_tokens)
    tokens.labels(model, "output").inc(usage.output_tokens)
    tokens.labels(model, "cache_read").inc(usage.cache_read_tokens)
    tokens.labels(model, "cache_write").inc(usage.cache_write_tokens)
    metrics.model_cost.labels(model).inc(dollars)


def outcome(exc: anthropic.APIError) -> str:
    """The `outcome` label of a failed Messages API request."""
    import anthropic  # loaded already: `exc` is one of its errors

    if isinstance(exc, anthropic.APIStatusError):
        return "overloaded" if exc.status_code == 529 else f"http_{exc.status_code // 100}xx"
    if isinstance(exc, anthropic.APITimeoutError):
        return "timeout"
    return "connection_error"


def describe_error(exc: anthropic.APIError) -> str:
    """A failed Messages API request, for a person."""
    import anthropic  # loaded already: `exc` is one of its errors

    if isinstance(exc, anthropic.APIStatusError):
        retried = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        return f"HTTP {exc.status_code}{' after retries' if retried else ''}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
