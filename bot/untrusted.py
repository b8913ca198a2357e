"""Where untrusted text enters the bot: redact its secrets, flag text that addresses the model.

Alerts (labels, annotations, Slack thread text carried in them), tool results and
errors, and the model's own replies pass through here before they are stored, shown,
logged or sent anywhere. Secrets become `[REDACTED:<kind>]`; the kinds are counted in
`incident_bot_redactions_total{kind,where}` and in the audit event of the step, never
the values. Text that addresses the model or the bot becomes a `Flag` on the run.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from bot import injection
from bot.metrics import Metrics
from bot.models import Alert, Flag, Part, Step, TextPart, ToolCallPart
from tools.digest_cache import DigestCache
from tools.redaction import merge_counts, redact, redact_fields, redact_named, redact_value
from tools.toolset import ToolResult

Counts = dict[str, int]
THREAD_LINE_SHOWN = 120


@dataclass(frozen=True, kw_only=True)
class RedactedAlert:
    """An alert that has been through `redact_alert`, with the redactions made there.

    Built by `redacted`: code that stores an alert takes this type (or redacts a plain
    `Alert` itself), so an alert is redacted once however many layers it passes, and
    the counts of that one redaction are not lost on the way.
    """

    alert: Alert
    redactions: Mapping[str, int]


def redacted(alert: Alert) -> RedactedAlert:
    """The alert with its secrets replaced, and what was replaced (uncounted)."""
    cleaned, counts = redact_alert(alert)
    return RedactedAlert(alert=cleaned, redactions=counts)


def redact_alert(alert: Alert) -> tuple[Alert, Counts]:
    """The alert with secrets replaced in every text field (labels and annotations too),
    as `redact_value` replaces them in the alert's JSON document.

    The group key is redacted on its own (a short string: remembered by `redact`), and
    the other fields together, remembered by their digest: a new group's first alert
    differs from other groups' in its key, and a storm repeats all of it."""
    key, in_key = redact_named(alert.group_key, "group_key")
    cleaned, in_rest = _redacted_rest(json.dumps({n: getattr(alert, n) for n in _REDACTED}))
    if not in_key and cleaned is None:
        return alert, {}
    update = {**({"group_key": key} if in_key else {}), **(json.loads(cleaned) if cleaned else {})}
    return alert.model_copy(update=update), merge_counts(in_key, dict(in_rest))


# Fields the bot parsed into a literal or a time: they cannot hold a sender's text.
NOT_TEXT = frozenset({"schema_version", "source", "status", "starts_at", "ends_at"})
# The fields redacted beside the group key.
_REDACTED = tuple(n for n in Alert.model_fields if n not in NOT_TEXT | {"group_key"})


def _redact_document(document: str) -> tuple[str | None, tuple[tuple[str, int], ...]]:
    """Some fields of an alert's document, redacted (None: nothing was)."""
    cleaned, counts = redact_fields(json.loads(document))
    return (json.dumps(cleaned) if counts else None), tuple(sorted(counts.items()))


# Remembered by digest, as alerts repeat them (never the raw document).
_redacted_rest = DigestCache(_redact_document, maxsize=4096)


def redact_result(result: ToolResult) -> tuple[ToolResult, Counts]:
    """A tool's result or error with secrets replaced."""
    data, in_data = redact_value(result.data)
    error = redact(result.error) if result.error is not None else None
    note = redact(result.note) if result.note is not None else None
    counts = merge_counts(in_data, *(r.counts for r in (error, note) if r is not None))
    if not counts:
        return result, {}
    update = {
        "data": data,
        "error": error.text if error else None,
        "note": note.text if note else None,
    }
    return result.model_copy(update=update), counts


def redact_step(step: Step) -> tuple[Step, Counts]:
    """A model reply with secrets replaced in its text and in its tool calls' arguments."""
    parts: list[Part] = []
    counts: list[Mapping[str, int]] = []
    for part in step.content:
        if isinstance(part, TextPart):
            found = redact(part.text)
            counts.append(found.counts)
            parts.append(part.model_copy(update={"text": found.text}) if found.counts else part)
        elif isinstance(part, ToolCallPart):
            cleaned, in_input = redact_value(part.input)
            counts.append(in_input)
            parts.append(part.model_copy(update={"input": cleaned}) if in_input else part)
        else:
            parts.append(part)
    merged = merge_counts(*counts)
    return (step.model_copy(update={"content": parts}) if merged else step), merged


def flags_in(source: str, text: str) -> list[Flag]:
    """A flag for each kind of instruction aimed at the model or the bot in `text`."""
    return [Flag(source=source, kind=h.kind, excerpt=h.excerpt) for h in injection.scan(text)]


def alert_flags(alert: Alert) -> list[tuple[str, Flag]]:
    """Flags for the alert's own text (title, labels, annotations; a Slack thread carried
    in them), each with the field it was found in."""
    found: list[tuple[str, Flag]] = []
    fields = {"title": alert.title, **alert.labels, **alert.annotations}
    for key, value in fields.items():
        if key == "thread" and alert.source == "slack":
            # One message a line: each message that addresses the bot is flagged.
            for line in value.splitlines():
                found += [(line[:THREAD_LINE_SHOWN], f) for f in flags_in("slack_thread", line)]
        else:
            found += [(key, flag) for flag in flags_in("alert", value)]
    return found


# `store.audit` or `Checkpointer.audit`: (run id, event, **data).
Audit = Callable[..., Awaitable[None]]


async def record_flags(
    audit: Audit, metrics: Metrics, run_id: str, found: Sequence[tuple[str, Flag]]
) -> None:
    """Audit each flag (`injection_flagged`) with where it was found (a tool call's input,
    an alert field), and count it in `incident_bot_injection_flags_total{where}`."""
    for where, flag in found:
        metrics.injection_flags.labels(flag.source.partition(":")[0]).inc()
        await audit(
            run_id,
            "injection_flagged",
            source=flag.source,
            kind=flag.kind,
            text=flag.excerpt,
            where=where,
        )


def count(metrics: Metrics, where: str, counts: Mapping[str, int]) -> None:
    """Add redactions to `incident_bot_redactions_total`."""
    for kind, n in counts.items():
        metrics.redactions.labels(kind, where).inc(n)


def merge_flags(existing: Sequence[Flag], new: Sequence[Flag]) -> list[Flag]:
    """The flags of both, one per source and kind (the first one seen)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for flag in [*existing, *new]:
        if (flag.source, flag.kind) not in seen:
            seen.add((flag.source, flag.kind))
            kept.append(flag)
    return kept
