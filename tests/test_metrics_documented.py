"""docs/metrics.md is THE metric list: every metric the bot registers has a row there, every
row is a metric the bot registers, and every metric named in README.md or docs/ exists."""

from __future__ import annotations

import re
from pathlib import Path

from bot.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
METRICS_DOC = ROOT / "docs" / "metrics.md"
_NAME = re.compile(r"\bincident_bot_[a-z0-9_]+\*|\bincident_bot_[a-z0-9_]*[a-z0-9]")
# What Prometheus exposes besides a family's own name.
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count")}


def exposed_names() -> dict[str, str]:
    """Each name a scrape shows for the registry (`_total` of counters, a histogram's
    series) -> the name a table row uses (counters with `_total`, others as registered)."""
    names: dict[str, str] = {}
    for family in Metrics().registry.collect():
        row = family.name + "_total" if family.type == "counter" else family.name
        names[family.name] = names[row] = row
        for suffix in _SUFFIXES.get(family.type, ()):
            names.setdefault(family.name + suffix, row)
    return names


def table_metrics(markdown: str) -> list[str]:
    """The metric named in the first column of each table row."""
    return re.findall(r"^\| `(incident_bot_[a-z0-9_]+)` \|", markdown, re.MULTILINE)


def unknown_names(text: str, known: dict[str, str]) -> list[str]:
    """Metric names in the text that nothing registers (`incident_bot_x_*` must prefix one)."""
    unknown = []
    for match in _NAME.finditer(text):
        name = match.group(0)
        if name.endswith("*"):
            if not any(k.startswith(name[:-1]) for k in known):
                unknown.append(name)
        elif name not in known:
            unknown.append(name)
    return unknown


def test_every_registered_metric_has_a_row_in_docs_metrics() -> None:
    rows = set(table_metrics(METRICS_DOC.read_text()))
    wanted = set(exposed_names().values())
    assert len(wanted) > 30
    assert sorted(wanted - rows) == [], "registered metrics without a row in docs/metrics.md"


def test_every_row_is_a_registered_metric_and_appears_once() -> None:
    rows = table_metrics(METRICS_DOC.read_text())
    assert sorted(set(rows) - set(exposed_names().values())) == [], "stale rows"
    assert len(rows) == len(set(rows)), "a metric has two rows"


def test_every_metric_named_in_the_readme_and_docs_exists() -> None:
    known = exposed_names()
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stale = {
        str(d.relative_to(ROOT)): unknown_names(d.read_text(), known)
        for d in documents
        if unknown_names(d.read_text(), known)
    }
    assert stale == {}


def test_the_checks_see_stale_names_and_prefixes() -> None:
    known = exposed_names()
    text = "`incident_bot_runs_total` and `incident_bot_model_*` and `incident_bot_nope_*`"
    assert unknown_names(text, known) == ["incident_bot_runs_total", "incident_bot_nope_*"]
    assert unknown_names("incident_bot_queue_depth, incident_bot_runs_started_total", known) == []
    assert table_metrics("| `incident_bot_a_total` | `x` | y |\n| not | a | row |") == [
        "incident_bot_a_total"
    ]
