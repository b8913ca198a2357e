"""Context compaction: keep the model's request within a share of its context window.

Before each main-model call the request's input tokens are estimated: by the API's
`messages.count_tokens` when the characters alone cannot rule the limit out (and the
API answered lately), else as characters / 4. Past `INCIDENT_BOT_CONTEXT_WINDOW` *
`INCIDENT_BOT_COMPACT_AT`, the oldest tool results (never the alert, never the newest
`KEEP_RECENT` tool steps) are replaced by short summaries until the estimate is under
half that limit, so compaction is rare. A summary is the tool's own
(`ToolResultPart.summary`), else the fast model's (one request for the batch), else an
excerpt.

The compaction is a transcript step of its own (the transcript stays append-only and
keeps every full result): a user note telling the model what was compacted, carrying
the summaries in `Step.compacted`. `bot.messages.to_messages` shows those results as
their summaries in every later request, so the compacted prefix is the same each turn
(and after a resume), and the cache points (system prompt, tools, newest block) stay.
A reply that ran into the context window (`model_context_window_exceeded`) is retried
once, after compacting every eligible result.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot import fencing
from bot.messages import compacted_results, shown
from bot.metrics import Metrics
from bot.models import CompactedResult, Step, TextPart, ToolResultPart
from bot.steps import ModelCall
from bot.tiering import FastModel, describe_error
from tools.redaction import redact

if TYPE_CHECKING:  # anthropic is imported only where a client is built (`bot.deps`)
    import anthropic
    from anthropic.types import MessageParam, TextBlockParam, ToolParam

log = logging.getLogger(__name__)

KEEP_RECENT = 2  # the newest tool-result steps are never compacted
SUMMARY_CHARS = 300  # a summary as shown to the model, at most
CHARS_PER_TOKEN = 4  # the estimate without count_tokens
# Below this many characters per token of the limit, the request surely fits: no count.
_SURE_CHARS_PER_TOKEN = 2
_RELIEF = 0.5  # compact down to this share of the limit
_MIN_CHARS = 2 * SUMMARY_CHARS  # a shorter result is not worth compacting
_SENT_CHARS = 3000  # of one result, sent to the fast model
_BATCH_CHARS = 60_000  # of all results in one summary request
_COUNT_TIMEOUT_SECONDS = 10.0
OVERFLOW = "model_context_window_exceeded"
OVERFLOW_NUDGE = (
    "Your reply ran into the model's context window; earlier tool results will be "
    "summarised. Be brief: call one tool, or finish with propose_remediation or conclude."
)
SUMMARY_SYSTEM = (
    "You condense tool results of an incident investigation. For each result write one "
    "line of at most 200 characters that keeps what an investigator needs: values, "
    "names, errors, times. Answer only with lines `<id>: <summary>`, one per result.\n\n"
    + fencing.RULES
)

Audit = Callable[..., Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Request:
    """What one main-model request sends, apart from its output limit."""

    model: str
    system: list[TextBlockParam]
    tools: list[ToolParam]
    messages: list[MessageParam]

    def characters(self) -> int:
        """The size of the request's system prompt, tools and messages as JSON."""
        return len(json.dumps([self.system, self.tools, self.messages]))


Build = Callable[[Sequence[Step]], Request]


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """The request's input tokens, counted by the API or estimated from its characters."""

    tokens: int
    characters: int
    counted: bool


@dataclass(frozen=True, kw_only=True)
class Fitted:
    """The transcript to send, with the compaction step (if any) and its fast-model call."""

    transcript: Sequence[Step]
    steps: tuple[Step, ...] = ()
    calls: tuple[ModelCall, ...] = ()


class TokenCounting:
    """Whether `count_tokens` may be asked: after a failure, not for a while. One per
    process (`Deps`), so every run of the process remembers it."""

    def __init__(self, retry_after_seconds: float = 300.0) -> None:
        self.retry_after_seconds = retry_after_seconds
        self._until = 0.0

    def available(self) -> bool:
        """True unless counting failed within the last `retry_after_seconds`."""
        return time.monotonic() >= self._until

    def failed(self) -> None:
        """Counting failed: estimate from characters for a while."""
        self._until = time.monotonic() + self.retry_after_seconds


class Compactor:
    """Fits a transcript into the configured share of the context window."""

    def __init__(
        self,
        *,
        window: int,
        share: float,
        client: anthropic.AsyncAnthropic | None,
        counting: TokenCounting,
        fast: FastModel | None,
        metrics: Metrics,
    ) -> None:
        self.limit = int(window * share)
        self.target = int(self.limit * _RELIEF)
        self._counter = (
            None
            if client is None
            else client.with_options(max_retries=0, timeout=_COUNT_TIMEOUT_SECONDS)
        )
        self._counting = counting
        self._fast = fast
        self._metrics = metrics

    async def fit(self, run_id: str, transcript: Sequence[Step], build: Build) -> Fitted:
        """The transcript as it is, or with a compaction step appended when the request
        it builds is past the limit (or the model's last reply overflowed)."""
        if not transcript or transcript[-1].role != "user":
            return Fitted(transcript=transcript)  # a paused turn is sent back as it is
        forced = overflowed(transcript)
        estimate = await self.estimate(build(transcript), run_id)
        if not forced and estimate.tokens <= self.limit:
            return Fitted(transcript=transcript)
        chosen, left = choose(candidates(transcript), estimate, 0 if forced else self.target)
        if not chosen:
            return Fitted(transcript=transcript)
        entries, calls = await self._summaries(run_id, chosen, tool_names(transcript))
        step = compaction_step(len(transcript), entries)
        reason = "overflow" if forced else "share"
        self._metrics.compactions.labels(reason).inc()
        log.info(
            "compacted %d tool results",
            len(entries),
            extra={
                "run_id": run_id,
                "reason": reason,
                "tokens_before": estimate.tokens,
                "tokens_after": left,
                "counted": estimate.counted,
            },
        )
        return Fitted(transcript=[*transcript, step], steps=(step,), calls=calls)

    async def estimate(self, request: Request, run_id: str) -> Estimate:
        """The request's input tokens: counted by the API when that can matter."""
        chars = request.characters()
        rough = Estimate(tokens=chars // CHARS_PER_TOKEN, characters=chars, counted=False)
        surely_fits = chars <= self.limit * _SURE_CHARS_PER_TOKEN
        if self._counter is None or surely_fits or not self._counting.available():
            return rough
        import anthropic  # loaded already with the client (`bot.deps`)

        try:
            counted = await self._counter.messages.count_tokens(
                model=request.model,
                system=request.system,
                tools=request.tools,
                messages=request.messages,
            )
        except anthropic.APIError as exc:
            self._counting.failed()
            log.warning(
                "count_tokens failed; estimating from characters for %gs: %s",
                self._counting.retry_after_seconds,
                describe_error(exc),
                extra={"run_id": run_id},
            )
            return rough
        return Estimate(tokens=counted.input_tokens, characters=chars, counted=True)

    async def _summaries(
        self, run_id: str, parts: Sequence[ToolResultPart], names: Mapping[str, str]
    ) -> tuple[list[CompactedResult], tuple[ModelCall, ...]]:
        """A summary of each part: the tool's, else the fast model's, else an excerpt."""
        unsummarised = [p for p in parts if not p.summary.strip()]
        worded: dict[str, str] = {}
        calls: tuple[ModelCall, ...] = ()
        if unsummarised and self._fast is not None:
            answer = await self._fast.ask(
                system=SUMMARY_SYSTEM,
                text=summary_request(unsummarised, names),
                purpose="compaction",
                run_id=run_id,
            )
            if answer is not None:
                text, call = answer
                worded = parse_summaries(text, {p.tool_use_id for p in unsummarised})
                calls = (call,)
        by_model = self._fast.model if self._fast is not None else "excerpt"
        return [compacted(p, worded, by_model) for p in parts], calls


def candidates(transcript: Sequence[Step], keep: int = KEEP_RECENT) -> list[ToolResultPart]:
    """The tool results that may be compacted, oldest first: not yet compacted, not in
    the newest `keep` tool steps, and long enough to be worth it."""
    done = compacted_results(transcript)
    tool_steps = [s for s in transcript if s.author == "tools"]
    older = tool_steps[: max(len(tool_steps) - keep, 0)]
    return [
        p
        for step in older
        for p in step.content
        if isinstance(p, ToolResultPart)
        and p.tool_use_id not in done
        and len(p.content) > _MIN_CHARS
    ]


def choose(
    parts: Sequence[ToolResultPart], estimate: Estimate, target: int
) -> tuple[list[ToolResultPart], int]:
    """The oldest parts whose compaction brings the estimate to `target` (all of them
    when it cannot), and the tokens left after it."""
    per_char = estimate.tokens / max(estimate.characters, 1)
    tokens = float(estimate.tokens)
    chosen: list[ToolResultPart] = []
    for part in parts:
        if tokens <= target:
            break
        chosen.append(part)
        tokens -= max(len(part.content) - SUMMARY_CHARS, 0) * per_char
    return chosen, round(tokens)


def summary_request(parts: Sequence[ToolResultPart], names: Mapping[str, str]) -> str:
    """The fast model's request: each result fenced, cut to a bounded batch."""
    sections: list[str] = []
    size = 0
    for part in parts:
        name = names.get(part.tool_use_id, "unknown")
        section = f"Result {part.tool_use_id} ({name}):\n" + fencing.fence(
            f"tool:{name}", part.content[:_SENT_CHARS]
        )
        size += len(section)
        if size > _BATCH_CHARS:
            break  # the rest are shown as excerpts
        sections.append(section)
    return "Summarise each result.\n\n" + "\n\n".join(sections)


def parse_summaries(text: str, ids: set[str]) -> dict[str, str]:
    """The `<id>: <summary>` lines of the fast model's answer for the ids asked about,
    with secrets redacted (the model's text is untrusted)."""
    found: dict[str, str] = {}
    for line in redact(text).text.splitlines():
        key, sep, summary = line.partition(":")
        key = key.strip(" -*`")
        if sep and key in ids and summary.strip():
            found.setdefault(key, summary.strip())
    return found


def compacted(part: ToolResultPart, worded: Mapping[str, str], by_model: str) -> CompactedResult:
    """The compacted form of one result."""
    if part.summary.strip():
        summary, by = part.summary, "tool"
    elif part.tool_use_id in worded:
        summary, by = worded[part.tool_use_id], by_model
    else:
        summary, by = part.content, "excerpt"
    return CompactedResult(
        tool_use_id=part.tool_use_id,
        characters=len(part.content),
        summary=_cut(" ".join(summary.split()), SUMMARY_CHARS),
        by=by,
    )


def compaction_step(index: int, entries: Sequence[CompactedResult]) -> Step:
    """The user note that tells the model what was compacted, carrying the summaries."""
    ids = ", ".join(e.tool_use_id for e in entries)
    note = (
        f"Context note: to stay within the context window, the results of {len(entries)} "
        f"earlier tool calls ({ids}) are now shown as short summaries marked "
        "[compacted: …]. Their full text is kept in the run's record; call the tool "
        "again if you need the details."
    )
    return Step(
        index=index,
        role="user",
        author="system",
        content=[TextPart(text=note)],
        compacted=list(entries),
    )


def tool_names(transcript: Sequence[Step]) -> dict[str, str]:
    """The tool each tool_use id called."""
    return {c.id: c.name for step in transcript for c in step.tool_calls()}


def overflowed(transcript: Sequence[Step]) -> bool:
    """Whether the model's newest reply ran into the context window."""
    last = next((s for s in reversed(transcript) if s.role == "assistant"), None)
    return last is not None and last.stop_reason == OVERFLOW


def overflowed_twice(transcript: Sequence[Step]) -> bool:
    """Whether the model ran into the context window again after the compacted retry."""
    return sum(s.stop_reason == OVERFLOW for s in transcript) >= 2


async def audit_compactions(audit: Audit, run_id: str, steps: Sequence[Step]) -> None:
    """An audit event `compacted` for each compaction step: the results, their size
    before and after, and who summarised them."""
    for step in steps:
        if not step.compacted:
            continue
        await audit(
            run_id,
            "compacted",
            tool_use_ids=[e.tool_use_id for e in step.compacted],
            characters_before=sum(e.characters for e in step.compacted),
            characters_after=sum(len(shown(e)) for e in step.compacted),
            by={e.tool_use_id: e.by for e in step.compacted},
        )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
