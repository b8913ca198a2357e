"""The README's Configuration table lists every setting the bot reads, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def setting_env_names() -> set[str]:
    """The environment variable of every `Settings` field: its alias, else its name with
    the model's `env_prefix`, upper-cased as pydantic-settings reads it."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias or field.alias
        names.add(str(alias) if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def table_rows(markdown: str, heading: str) -> list[str]:
    """The body rows of the first table in the section under `heading`."""
    section = f"\n{markdown}".split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return rows[2:]  # without the header and its --- line


def documented_variables(markdown: str) -> set[str]:
    """The backquoted names in the first column of the Configuration table."""
    rows = table_rows(markdown, "## Configuration (environment)")
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}


def test_every_setting_is_in_the_configuration_table() -> None:
    settings, documented = setting_env_names(), documented_variables(README.read_text())
    assert len(settings) > 50 and "REDIS_URL" in settings
    assert sorted(settings - documented) == [], "settings without a row"
    assert sorted(documented - settings) == [], "rows for variables the bot does not read"


def test_every_row_has_a_default_and_a_meaning() -> None:
    for row in table_rows(README.read_text(), "## Configuration (environment)"):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 3 and all(cells), row


def test_the_check_reads_names_from_the_first_column_only() -> None:
    markdown = (
        "## Configuration (environment)\n\n| variable | default | meaning |\n| --- | --- | --- |\n"
        "| `A_B` / `C` | 1 | see `NOT_A_ROW` |\n\n## Next\n\n| `D` | x | y |\n"
    )
    assert documented_variables(markdown) == {"A_B", "C"}


def test_every_module_is_in_the_architecture_module_map() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text().split("## Module map", 1)[1]
    sections = dict(re.findall(r"### `([\w/]+)/`\n(.*?)(?=\n### |\Z)", text, re.DOTALL))
    missing = [
        str(p.relative_to(ROOT))
        for package in ("bot", "tools", "policies")
        for p in sorted((ROOT / package).rglob("*.py"))
        if p.name != "__init__.py" or p.parent.name == "sandbox"
        if f"| `{p.name}` |" not in sections.get(str(p.parent.relative_to(ROOT)), "")
    ]
    assert len(sections) >= 8 and missing == []


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a document's headings."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(document: Path, root: Path) -> list[str]:
    """Relative links of a Markdown file whose file or `#anchor` does not exist."""
    broken = []
    text = document.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists() or not linked.is_relative_to(root.resolve()):
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text()):
            broken.append(target)
    return broken


def test_links_in_the_readme_and_docs_resolve() -> None:
    documents = [README, *sorted((ROOT / "docs").glob("*.md"))]
    assert len(documents) > 8
    broken = {str(d.relative_to(ROOT)): broken_links(d, ROOT) for d in documents}
    assert {d: b for d, b in broken.items() if b} == {}
    readme = README.read_text().split("## Documentation", 1)[1].split("\n## ", 1)[0]
    assert sorted(re.findall(r"\(docs/(\w[\w-]*\.md)\)", readme)) == sorted(
        p.name for p in documents[1:]
    )


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Top\n\n## The queue, workers\n")
    doc = tmp_path / "b.md"
    doc.write_text(
        "[ok](a.md) [ok](a.md#the-queue-workers) [web](https://x.example/y) [self](#top-b)\n"
        "[gone](c.md) [anchor](a.md#nope)\n# Top b\n"
    )
    assert broken_links(doc, tmp_path) == ["c.md", "a.md#nope"]
