"""The eval's reports: a text table per engine, and the stable JSON and Markdown forms.

Both are documented in `evals/README.md`; `REPORT_FORMAT` changes when a field does.
An engine's `rate` is the share of its attempts that are `ok`: passed, or (a recorded
transcript) scored the reason it was recorded for. `--min-pass` compares each rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.evals.suite import Result

REPORT_FORMAT = 1
_COLUMNS = (
    "scenario",
    "result",
    "reason",
    "outcome",
    "steps",
    "tools",
    "in",
    "out",
    "cache r/w",
    "$",
    "s",
)


def by_engine(results: Sequence[Result]) -> dict[str, list[Result]]:
    """Results grouped by engine name, engines in first-seen order."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        groups.setdefault(result.engine.name, []).append(result)
    return groups


def rate(results: Sequence[Result]) -> float:
    """The share of `ok` results (1.0 for none)."""
    return sum(r.ok for r in results) / len(results) if results else 1.0


def _verdict(result: Result) -> str:
    if result.expected is None:
        return "pass" if result.ok else "FAIL"
    wanted = "pass" if result.expected == "pass" else f"fail:{result.expected}"
    return f"ok ({wanted})" if result.ok else f"UNEXPECTED (wanted {wanted})"


def _cells(result: Result) -> list[str]:
    o = result.observation
    name = result.scenario + (f" #{result.attempt}" if result.attempt > 1 else "")
    return [
        name,
        _verdict(result),
        result.score.reason,
        o.outcome or o.status or "-",
        str(o.steps),
        str(o.tool_calls),
        str(o.input_tokens),
        str(o.output_tokens),
        f"{o.cache_read_tokens}/{o.cache_write_tokens}",
        f"{o.dollars:.4f}",
        f"{o.seconds:.1f}",
    ]


def _headline(engine: str, results: Sequence[Result]) -> str:
    ok = sum(r.ok for r in results)
    what = "as recorded" if results and results[0].expected is not None else "passed"
    return f"{engine}: {ok}/{len(results)} {what} ({rate(results):.0%})"


def text_report(results: Sequence[Result]) -> str:
    """A table per engine, with the reason's detail under each failing row."""
    lines: list[str] = []
    for engine, group in by_engine(results).items():
        rows = [list(_COLUMNS), *(_cells(r) for r in group)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        lines.append(_headline(engine, group))
        for index, row in enumerate(rows):
            cells = (c.ljust(w) for c, w in zip(row, widths, strict=True))
            lines.append(("  " + "  ".join(cells)).rstrip())
            result = group[index - 1] if index else None
            if result is not None and result.score.detail and not result.score.passed:
                lines.append(f"      {result.score.detail}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def json_report(results: Sequence[Result], *, min_pass: float | None) -> dict[str, Any]:
    """The stable JSON report (see evals/README.md)."""
    engines = []
    for engine, group in by_engine(results).items():
        first = group[0].engine
        engines.append(
            {
                "engine": engine,
                "kind": first.kind,
                "model": first.model or None,
                "transcript": first.transcript or None,
                "attempts": len(group),
                "passed": sum(r.score.passed for r in group),
                "ok": sum(r.ok for r in group),
                "rate": round(rate(group), 4),
                "results": [_result_json(r) for r in group],
            }
        )
    return {
        "format": REPORT_FORMAT,
        "min_pass": min_pass,
        "below_min_pass": below_min_pass(results, min_pass),
        "engines": engines,
    }


def _result_json(result: Result) -> dict[str, Any]:
    o = result.observation
    return {
        "scenario": result.scenario,
        "attempt": result.attempt,
        "reason": result.score.reason,
        "detail": result.score.detail,
        "passed": result.score.passed,
        "expected": result.expected,
        "ok": result.ok,
        "problems": [{"reason": p.reason, "detail": p.detail} for p in result.score.problems],
        "status": o.status,
        "outcome": o.outcome,
        "proposal": o.proposal.model_dump(mode="json") if o.proposal else None,
        "runbook": o.runbook,
        "flagged": o.flagged,
        "approved_by_policy": o.approved_by_policy,
        "steps": o.steps,
        "tool_calls": o.tool_calls,
        "input_tokens": o.input_tokens,
        "output_tokens": o.output_tokens,
        "cache_read_tokens": o.cache_read_tokens,
        "cache_write_tokens": o.cache_write_tokens,
        "tokens": o.tokens,
        "dollars": round(o.dollars, 6),
        "seconds": o.seconds,
        "error": o.error or None,
    }


def markdown_report(results: Sequence[Result]) -> str:
    """One Markdown table per engine (the same columns as the text table, and the detail)."""
    out: list[str] = []
    for engine, group in by_engine(results).items():
        out.append(f"### {_headline(engine, group)}")
        out.append("")
        out.append("| " + " | ".join([*_COLUMNS, "detail"]) + " |")
        out.append("|" + " --- |" * (len(_COLUMNS) + 1))
        for result in group:
            cells = [*_cells(result), "" if result.score.passed else result.score.detail]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def below_min_pass(results: Sequence[Result], min_pass: float | None) -> list[str]:
    """The engines whose rate is below `min_pass` (none when it is unset)."""
    if min_pass is None:
        return []
    return [e for e, group in by_engine(results).items() if rate(group) < min_pass]
