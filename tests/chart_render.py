"""The Helm chart rendered by Helm's own engine (`helm-python-sdk`), each value set once
per process, and the names of the metrics the code registers (for the chart's queries)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import yaml
from prometheus_client.metrics_core import Metric

from bot.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "incident-bot"
VALUES_DIR = ROOT / "tests" / "fixtures" / "helm"
RELEASE = "bot"
NAMESPACE = "ops"
FULLNAME = "bot-incident-bot"

# The default values plus every value set in tests/fixtures/helm (file stem -> values).
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    **{p.stem: yaml.safe_load(p.read_text()) for p in sorted(VALUES_DIR.glob("*.yaml"))},
}


@cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


@cache
def _rendered(values_json: str) -> tuple[tuple[str, str], ...]:
    rendered = chart().render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE)
    return tuple(sorted(rendered.items()))


def rendered_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text (cached per value set)."""
    return dict(_rendered(json.dumps(values or {}, sort_keys=True)))


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rendered manifest of the chart, parsed (NOTES.txt left out); a fresh copy."""
    docs: list[dict[str, Any]] = []
    for path, text in rendered_files(values).items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def schema_refusal(values: dict[str, Any]) -> str:
    """The error of a render that the chart's values schema refuses (it must refuse)."""
    try:
        render(values)
    except helm_python.HelmError as refused:
        text = str(refused)
    else:
        raise AssertionError(f"the schema let these values through: {values}")
    assert "don't meet the specifications of the schema" in text
    return text


def notes(values: dict[str, Any] | None = None) -> str:
    return next(text for path, text in rendered_files(values).items() if path.endswith("NOTES.txt"))


_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def registered_series() -> set[str]:
    """Every series name the code's `Metrics` registry can expose (counters with `_total`,
    histograms with `_bucket`, `_sum`, `_count`, gauges as named)."""
    families: list[Metric] = list(Metrics().registry.collect())
    return {
        family.name + suffix for family in families for suffix in _SUFFIXES.get(family.type, ("",))
    }


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, keywords, labels)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", " ", text)  # matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # grouping label lists
    text = re.sub(r"\b\d[\d.]*(?:e[+-]?\d+)?(?:ms|[smhdwy])?\b", " ", text)  # numbers, offsets
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if not following.startswith("(") and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names
