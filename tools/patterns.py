"""Regular expressions the model supplies, bounded in length and in matching time.

A tool that filters with a model-written pattern compiles it here. The `regex` package is
used instead of `re` because its matching loop checks a timeout and stops with
`TimeoutError`: the standard `re` engine can neither be interrupted nor made to release
the GIL, so a runaway match such as `(a|aa)+$` against a long string would hold the event
loop (even from `asyncio.to_thread`, whose timeout only stops waiting, not the work).
One budget covers every match of a tool call, so a pattern that is slow on many items is
stopped as surely as one that is slow on one.
"""

from __future__ import annotations

import time

import regex

MAX_PATTERN_CHARS = 256
# All matches of one pattern (one tool call) together; the loop is held at most this long.
MATCH_BUDGET_SECONDS = 0.25


class PatternError(ValueError):
    """A pattern that is too long, invalid, or too slow; the message says what to change."""


class BoundedPattern:
    """A compiled pattern whose matches share one time budget (time spent matching only)."""

    def __init__(self, source: str, compiled: regex.Pattern[str], budget_seconds: float) -> None:
        self.source = source
        self._compiled = compiled
        self._budget = budget_seconds
        self._left = budget_seconds

    def fullmatch(self, text: str) -> bool:
        """Whether the pattern matches all of `text`; `PatternError` once over the budget."""
        started = time.monotonic()
        try:
            if self._left <= 0:
                raise TimeoutError
            return self._compiled.fullmatch(text, timeout=self._left) is not None
        except TimeoutError:
            raise PatternError(
                f"the regular expression {self.source!r} took more than {self._budget:g}s "
                "to match; simplify it (no nested or overlapping repetition such as "
                "(a|aa)+) or filter by exact labels instead"
            ) from None
        finally:
            self._left -= time.monotonic() - started


def compile_pattern(
    pattern: str, *, what: str, budget_seconds: float = MATCH_BUDGET_SECONDS
) -> BoundedPattern:
    """Compile a model-supplied pattern; `what` names the argument in error messages."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(
            f"{what}: the regular expression has {len(pattern)} characters, more than the "
            f"{MAX_PATTERN_CHARS} allowed; use a shorter one"
        )
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise PatternError(
            f"{what}: {pattern!r} is not a valid regular expression: {exc}"
        ) from None
    return BoundedPattern(pattern, compiled, budget_seconds)
