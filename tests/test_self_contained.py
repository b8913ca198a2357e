"""The repository stands alone: no test, bench, script, doc, build file or source names a path
outside it: a parent-directory step that leaves the repository, an absolute path to the
machine's checkouts, the `shared` directory beside the repository, or a Python file's
own path walked above the root."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("tests", "bench", "scripts", "docs", "helm", ".ci", "evals", "bot", "tools", "policies")
SCANNED_FILES = ("README.md", "Makefile", "Dockerfile", ".dockerignore", "pyproject.toml")
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

# Written in two halves so that this file does not name them itself.
_OUTSIDE = "|".join(
    (
        r"(?<![\w.~-])/wo" + r"rk(?:/|\b)",  # the machine's own checkouts
        r"(?<![\w.~-])/tm" + r"p/h(?:/|\b)",  # helpers' briefs
        r"\bshar" + r"ed/(?:DESIGN|STYLE|fixtures)",  # the directory beside the repository
        r"\.\./shar" + r"ed\b",
    )
)
OUTSIDE = re.compile(_OUTSIDE)
DOTDOT = re.compile(r"(?<![\w.])((?:\.\./)+[^\s'\"`)\]>,;:*]*)")
FILE_PARENTS = re.compile(
    r"__file__\)(?:\.resolve\(\))?((?:\.parent(?!s))*)(?:\.parents\[(\d+)\])?"
)


@dataclass(frozen=True)
class Escape:
    """A line that names something outside the repository."""

    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def scanned_files(root: Path) -> list[Path]:
    """The text files the check reads: the scanned directories and top-level files."""
    files = [root / name for name in SCANNED_FILES if (root / name).is_file()]
    for directory in SCANNED:
        files += sorted(
            p
            for p in (root / directory).rglob("*")
            if p.is_file() and not SKIPPED_PARTS & set(p.parts)
        )
    return files


def _leaves(root: Path, directory: Path, relative: str) -> bool:
    """Whether `relative`, resolved from `directory`, lands outside `root`."""
    target = (directory / relative).resolve()
    return not target.is_relative_to(root.resolve())


def _above_root(root: Path, path: Path, parents: str, index: str | None) -> bool:
    """Whether `Path(__file__)` followed by these `.parent`s / `.parents[i]` leaves root."""
    depth = len(path.parent.relative_to(root).parts)  # how far the file's directory is down
    steps = parents.count(".parent") - 1  # the first `.parent` is the file's own directory
    if index is not None:
        steps += int(index) + 1
    return steps > depth


def escapes(root: Path) -> list[Escape]:
    """Every line under `root`'s scanned files that names a path outside `root`."""
    found: list[Escape] = []
    for path in scanned_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary: no paths a reader follows
        name = str(path.relative_to(root))
        for number, line in enumerate(text.splitlines(), 1):
            whats = [m.group(0) for m in OUTSIDE.finditer(line)]
            whats += [
                m.group(1) for m in DOTDOT.finditer(line) if _leaves(root, path.parent, m.group(1))
            ]
            if path.suffix == ".py":
                whats += [
                    m.group(0)
                    for m in FILE_PARENTS.finditer(line)
                    if _above_root(root, path, m.group(1), m.group(2))
                ]
            found += [Escape(name, number, what) for what in whats]
    return found


def test_nothing_names_a_path_outside_the_repository() -> None:
    assert len(scanned_files(ROOT)) > 100  # the scan reads the repository, not nothing
    assert [str(e) for e in escapes(ROOT)] == []


def test_planted_escapes_are_found_with_their_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "tests" / "unit").mkdir(parents=True)
    (root / "docs").mkdir()
    # Built from pieces so that this file does not name any of them itself.
    up, slash_work, shared, here = "../", "/wo" + "rk", "shar" + "ed", "Path(__fi" + "le__)"
    (root / "tests" / "unit" / "test_a.py").write_text(
        "from pathlib import Path\n"
        f'FIXTURE = "{up * 3}{shared}/x.json"\n'  # tests/unit -> tests -> repo -> outside
        f'INSIDE = "{up * 2}bot/models.py"\n'  # lands in the repository: fine
        f"HERE = {here}.resolve().parent.parent.parent\n"  # the root: fine
        f"ABOVE = {here}.resolve().parent.parent.parent.parent\n"
        f"ALSO_ABOVE = {here}.parents[3]\n"
        f"ROOT_TOO = {here}.parents[2]\n"
        'OK = "/home/runner/work/checkout"\n'
    )
    (root / "docs" / "a.md").write_text(
        f"See [design]({up * 2}{shared}/DESIGN.md).\n"
        f"Architecture: {shared}/DESIGN.md; the brief in {slash_work}/main/README.md.\n"
        f"Nothing here: [metrics](metrics.md), {up}README.md.\n"
    )
    (root / "README.md").write_text(f"fixtures in {shared}/fixtures/alertmanager\n")
    (root / "Makefile").write_bytes(b"\xff\xfe binary is skipped " + up.encode() * 2 + b"x\n")
    assert [str(e) for e in escapes(root)] == [
        f"README.md:1: {shared}/fixtures",
        f"tests/unit/test_a.py:2: {up}{shared}",
        f"tests/unit/test_a.py:2: {up * 3}{shared}/x.json",
        "tests/unit/test_a.py:5: " + here[5:] + ".resolve().parent.parent.parent.parent",
        "tests/unit/test_a.py:6: " + here[5:] + ".parents[3]",
        f"docs/a.md:1: {up}{shared}",
        f"docs/a.md:1: {up * 2}{shared}/DESIGN.md",
        f"docs/a.md:2: {shared}/DESIGN",
        f"docs/a.md:2: {slash_work}/",
    ]
