#!/usr/bin/env bash
# Install checkov (the IaC scanner tests/test_chart_scan.py runs over the rendered Helm
# chart and the Dockerfile) into its own venv, .tools/checkov, never the project's: its
# many pinned dependencies would fight the bot's.
#
# From the hashed locks requirements/build.txt (pip) and requirements/checkov.txt (`make
# lock` writes it from checkov.in). Idempotent: does nothing when the venv's checkov
# already has the locked version. PYTHON picks the interpreter (python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/checkov"
LOCK="$ROOT/requirements/checkov.txt"
PYTHON="${PYTHON:-python3}"

log() { printf 'install-checkov: %s\n' "$*"; }

wanted="$(grep -hoE '^checkov==[^ ;\\]+' "$LOCK" | head -n 1 | cut -d= -f3)"
if [ -x "$VENV/bin/checkov" ] && [ -n "$wanted" ] \
    && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null)" = "$wanted" ]; then
    log "checkov $wanted is installed in .tools/checkov"
    exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r "$ROOT/requirements/build.txt"
log "installing from requirements/checkov.txt (hashes required)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    --no-deps -r "$LOCK"
"$VENV/bin/checkov" --version >/dev/null
log "checkov $("$VENV/bin/checkov" --version) installed in .tools/checkov"
