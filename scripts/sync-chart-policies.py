#!/usr/bin/env python3
"""Copy the shipped policy and runbooks into the Helm chart's values.yaml.

A chart cannot read files outside itself, so `policy.files` and `policy.runbooks` in
`helm/incident-bot/values.yaml` hold copies of `policies/default.yaml` and
`policies/runbooks/*.yaml`; `tests/test_helm_chart.py` fails when they drift. Run this
after changing either: `python scripts/sync-chart-policies.py`.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VALUES = ROOT / "helm" / "incident-bot" / "values.yaml"
FILES_KEY = "  files:"
RUNBOOKS_KEY = "  runbooks:"
INDENT = "      "


def block(name: str, text: str) -> list[str]:
    """One `name: |` entry with `text` as its literal block."""
    lines = [f"    {name}: |"]
    lines += [INDENT + line if line else "" for line in text.rstrip("\n").split("\n")]
    return lines


def entries_end(lines: list[str], start: int) -> int:
    """The index after the entries that follow the key at `start` (indented 4 or more)."""
    end = start + 1
    while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
        end += 1
    while not lines[end - 1].strip():  # blank lines after the block belong to what follows
        end -= 1
    return end


def replace_section(lines: list[str], key: str, entries: list[str]) -> list[str]:
    start = lines.index(key)
    end = entries_end(lines, start)
    return [*lines[: start + 1], *entries, *lines[end:]]


def main() -> None:
    lines = VALUES.read_text(encoding="utf-8").split("\n")
    policies = ROOT / "policies"
    default = block("default.yaml", (policies / "default.yaml").read_text(encoding="utf-8"))
    runbooks = [
        line
        for path in sorted((policies / "runbooks").glob("*.yaml"))
        for line in block(path.name, path.read_text(encoding="utf-8"))
    ]
    lines = replace_section(lines, FILES_KEY, default)
    lines = replace_section(lines, RUNBOOKS_KEY, runbooks)
    VALUES.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
