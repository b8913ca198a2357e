"""A detector runs only on text that holds one of its hints (`Catalog.wanted`): the hints
never hide a secret their detector finds, and the merged regex that asks whether a text
holds any hint (`any_of`) answers as a plain alternation of the hints does.

The Telegram detector's hints are context, not part of a token: it looks only near a bot
(`tools.secret_patterns`), so it is left out of the first test."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import yaml
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector

from tools.redaction import redact
from tools.secret_detectors import Detector, PluginDetector, any_of, fold
from tools.secret_patterns import catalog

FIXTURES = Path(__file__).parent / "fixtures" / "secrets"
CORPUS: list[dict[str, Any]] = [
    *yaml.safe_load((FIXTURES / "secrets.yaml").read_text()),
    *yaml.safe_load((FIXTURES / "near_misses.yaml").read_text()),
]
TAIL = "a1B2c3D4e5" * 4
GITLAB_PREFIXES = "glpat- gldt- glft- glsoat- glrt- glcbt- glimt- glptt- glagent- gloas-".split()
# A token of every prefix the GitHub, GitLab and Vault patterns know, in a sentence.
TOKENS = [
    *(f"export TOKEN={prefix}{TAIL}" for prefix in ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    f"GITHUB_TOKEN=github_pat_{TAIL}_{TAIL}",
    *(f"gitlab: {prefix}{TAIL}" for prefix in GITLAB_PREFIXES),
    f"runner GR1348941{TAIL}",
    *(f"VAULT_TOKEN={prefix}{TAIL}" for prefix in ("hvs.", "hvb.", "hvr.")),
]
# Ordinary words that hold a token's first letters (`gh`, `gl`).
WORDS = "HighErrorRate: checkout 5xx ratio high overnight, global ingress throughput low"


def _near_a_bot(detector: Detector) -> bool:
    return isinstance(detector, PluginDetector) and isinstance(
        detector.plugin, TelegramBotTokenDetector
    )


def test_no_detector_skipped_for_its_hints_would_have_found_a_secret() -> None:
    cat = catalog()
    texts = [entry["text"] for entry in CORPUS] + TOKENS + [WORDS]
    skipped, hidden = 0, []
    for text in texts:
        folded = fold(text)
        wanted = cat.wanted(text, folded)
        for detector in cat.detectors:
            if detector in wanted or _near_a_bot(detector):
                continue
            skipped += 1
            if list(detector.find(text, folded)):
                hidden.append((text[:60], detector))
    print(f"{len(texts)} texts: {skipped} detector runs skipped by hint, {len(hidden)} hid a hit")
    assert hidden == []
    assert skipped > len(texts)  # the hints do skip detectors


def test_each_named_token_is_redacted() -> None:
    for text in TOKENS:
        assert TAIL not in redact(text).text, text


def test_the_merged_hint_regex_matches_where_some_word_occurs() -> None:
    rng = random.Random(7)
    alphabet = "ab-._c"
    for _ in range(300):
        words = {"".join(rng.choices(alphabet, k=rng.randint(1, 4))) for _ in range(8)}
        merged = re.compile(any_of(sorted(words)))
        for _ in range(20):
            text = "".join(rng.choices(alphabet + "xy", k=rng.randint(0, 12)))
            assert bool(merged.search(text)) == any(w in text for w in words), (words, text)
