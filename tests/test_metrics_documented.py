"""Every metric the bot registers is documented in the README's Metrics table."""

from __future__ import annotations

from pathlib import Path

from bot.metrics import Metrics

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_registered_metric_is_in_the_readme() -> None:
    names = {m.name for m in Metrics().registry.collect()}
    table = README.read_text().split("## Metrics", 1)[1]
    undocumented = sorted(n for n in names if f"`{n}`" not in table and f"`{n}_total`" not in table)
    assert names and undocumented == []
