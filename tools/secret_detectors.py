"""How secrets are found: detector types behind `tools.redaction`.

Each detector yields `Hit` spans (where a secret value sits, and its kind):

- `PluginDetector` runs one detect-secrets format plugin through its public
  `analyze_string`, which reports secret *values*; each is a hit where it occurs.
- `RegexDetector` is one of our patterns. Its `v`/`dq`/`eq`/`sq` group is the value; every
  quantifier is bounded, so a scan stays linear in the text.
- `PemDetector` finds whole PEM private-key blocks, one line or many, escaped or not.

A `Catalog` runs a detector only when one of its `hints` (lowercase literals) occurs in
the text, which keeps the common case (no secret anywhere) to a few substring searches.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from detect_secrets.plugins.base import RegexBasedDetector

# A hit's rank decides the kind when hits overlap: a vendor format says more than a
# structure (JWT, PEM, URL password), which says more than a keyword next to it.
VENDOR, STRUCTURE, KEYWORD = 3, 2, 1

# Shorter values reported by a plugin are left to our own spanned patterns: searching
# the whole text for, say, a 5-letter URL password would hit innocent words.
_MIN_LOCATED = 8
_VALUE_GROUPS = ("v", "dq", "eq", "sq")


@dataclass(frozen=True, slots=True)
class Hit:
    """A secret value at `text[start:end]`."""

    start: int
    end: int
    kind: str
    rank: int


class Detector(Protocol):
    """Finds secret spans in `text`. `folded` is `fold(text)`: same length, same positions.

    Runs only on texts of at least `min_length` characters that contain one of `hints`
    (lowercase) once folded; a detector without hints runs on every text.
    """

    @property
    def hints(self) -> tuple[str, ...]: ...

    @property
    def min_length(self) -> int: ...

    def find(self, text: str, folded: str) -> Iterator[Hit]: ...


def fold(text: str) -> str:
    """`text` lowercased, one character for one (so spans carry over to `text`)."""
    folded = text.lower()
    if len(folded) == len(text):  # no character grew, so each maps to exactly one
        return folded
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


@dataclass(frozen=True, kw_only=True)
class RegexDetector:
    """One pattern; `kind` is a slug, or a function of the lowercased `key` group.

    With `folded`, the pattern is written in lowercase and scans the folded text: much
    faster than `re.IGNORECASE`. `accept` always sees the value as written.
    """

    kind: str | Callable[[str], str]
    rank: int
    pattern: re.Pattern[str]
    hints: tuple[str, ...]
    folded: bool = False
    accept: Callable[[str], bool] | None = None
    min_length: int = 0

    def find(self, text: str, folded: str) -> Iterator[Hit]:
        groups = [name for name in _VALUE_GROUPS if name in self.pattern.groupindex]
        for match in self.pattern.finditer(folded if self.folded else text):
            name = next((g for g in groups if match.group(g) is not None), None)
            start, end = match.span(name) if name else match.span()
            if self.accept is not None and not self.accept(text[start:end]):
                continue
            kind = self.kind if isinstance(self.kind, str) else self.kind(match["key"].lower())
            yield Hit(start, end, kind, self.rank)


@dataclass(frozen=True, kw_only=True)
class PluginDetector:
    """A detect-secrets plugin: each value it reports is a hit where it occurs.

    Only plugins whose patterns are bounded belong here: detect-secrets' JWT, npm and
    OpenAI patterns rescan the rest of a run at every start (200 KB of `eyJ` took 11 s),
    so those formats have bounded patterns of ours instead."""

    plugin: RegexBasedDetector
    kind: Callable[[str], str]
    hints: tuple[str, ...]
    rank: int = VENDOR
    strip_prefix: str = ""
    tail: re.Pattern[str] | None = None  # extends a hit over the rest of the token
    accept: Callable[[str], bool] | None = None
    min_length: int = 0

    def find(self, text: str, folded: str) -> Iterator[Hit]:
        # A plugin reports values in text order, pattern after pattern: each is searched
        # for from the previous one, so locating them all stays one pass per pattern.
        cursor = 0
        for reported in self.plugin.analyze_string(text):
            if self.accept is not None and not self.accept(reported):
                continue
            value = reported.removeprefix(self.strip_prefix).strip(_DELIMITERS)
            if len(value) < _MIN_LOCATED:
                continue
            start = text.find(value, cursor)
            if start == -1:  # the plugin's next pattern started over
                start = text.find(value)
            if start == -1:
                continue
            end = start + len(value)
            if self.tail is not None:
                end = _match_end(self.tail, text, end)
            cursor = end
            yield Hit(start, end, self.kind(value), self.rank)


_DELIMITERS = " \t\r\n\"'`\\,;:()[]{}<>"  # trimmed off a reported value's ends

# A line break: real, JSON-escaped, or escaped again (JSON inside a JSON string).
NEWLINE = r"(?:\r?\n|(?:\\{1,7}r)?\\{1,7}n)"


class PemDetector:
    """PEM private-key blocks: BEGIN marker, body, END marker (or the body's end when the
    text was cut short). Lines may be real newlines or JSON-escaped `\\n`."""

    hints = ("private key",)
    min_length = 0
    _begin = re.compile(r"-{4,5} ?BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)? ?-{4,5}")
    _end = re.compile(
        rf"(?:{NEWLINE}|[ \t]){{0,8}}"
        r"-{4,5} ?END (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)? ?-{4,5}"
    )
    # Lines of base64, armor headers (`Proc-Type: 4,ENCRYPTED`) and blank lines; or, for
    # a key flattened onto one line, long base64 words.
    _body = re.compile(
        rf"(?:{NEWLINE}[ \t]{{0,8}}(?:[A-Za-z-]{{1,30}}: [^\r\n\\]{{1,100}}"
        rf"|[A-Za-z0-9+/=]{{1,8192}}(?=[ \t]{{0,8}}(?:{NEWLINE}|[\"'\\]|$))"
        rf"|(?=[ \t]{{0,8}}{NEWLINE}))"
        r"|[ \t]{1,4}[A-Za-z0-9+/=]{16,8192}(?![A-Za-z0-9+/=]))*"
    )

    def find(self, text: str, folded: str) -> Iterator[Hit]:
        pos = 0
        while begin := self._begin.search(text, pos):
            body_end = _match_end(self._body, text, begin.end())
            end = _match_end(self._end, text, body_end)
            yield Hit(begin.start(), end, "private_key", STRUCTURE)
            pos = end


def _match_end(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    return match.end() if match else pos


_SHORT = 1024


def any_of(words: Iterable[str]) -> str:
    """A regex that matches any of `words`, its branches merged by common prefix: `re`
    tries each branch of a flat alternation at every position of the text (4.4 µs to
    search a 53-character text for the catalog's 60 hints, against 1.2 µs merged)."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here
    return _branches(trie)


def _branches(node: dict[str, Any]) -> str:
    """The regex for what follows one node of `any_of`'s trie."""
    ends = "" in node
    alternatives = [re.escape(char) + _branches(rest) for char, rest in node.items() if char]
    if not alternatives:
        return ""
    group = alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"
    if ends:  # a shorter word ends here: the rest is optional
        return f"(?:{group})?" if len(alternatives) == 1 else f"{group}?"
    return group


class Catalog:
    """Detectors indexed by hint: a text visits only the detectors its hints select, and a
    hint shared by several detectors is searched for once."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self._detectors = tuple(detectors)
        hints = sorted({hint for d in detectors for hint in d.hints})
        self._by_hint = {
            hint: tuple(i for i, d in enumerate(detectors) if hint in d.hints) for hint in hints
        }
        self._unhinted = frozenset(i for i, d in enumerate(detectors) if not d.hints)
        self._any_hint = re.compile(any_of(hints))

    @property
    def detectors(self) -> tuple[Detector, ...]:
        """Every detector, in catalog order."""
        return self._detectors

    def wanted(self, text: str, folded: str) -> list[Detector]:
        """The detectors to run on `text`, in catalog order."""
        chosen = set(self._unhinted)
        # One regex search tells a short text holds no hint at all (the common case);
        # on long texts, searching for each hint on its own is faster.
        if len(folded) > _SHORT or self._any_hint.search(folded):
            for hint, indices in self._by_hint.items():
                if hint in folded:
                    chosen.update(indices)
        detectors = (self._detectors[i] for i in sorted(chosen))
        return [d for d in detectors if len(text) >= d.min_length]
