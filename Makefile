# incident-bot — the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the whole flow offline: alert -> investigation -> proposal -> approval -> rollback -> verified.
demo: $(STAMP)
	@if [ -t 0 ]; then $(BIN)/incident-bot demo; else $(BIN)/incident-bot demo --yes; fi

## Lint, type-check and run the whole test suite.
test: $(STAMP) lint
	bash scripts/install-system-packages.sh
	$(BIN)/pytest -q

## kill -9 of `serve` at 20 random moments of 20 runs; prints the counts (seed: INCIDENT_BOT_SOAK_SEED).
soak: $(STAMP)
	INCIDENT_BOT_SOAK_RUNS=20 $(BIN)/pytest -q -s tests/test_kill9_soak.py

lint: $(STAMP)
	$(BIN)/ruff check bot tools policies tests bench
	$(BIN)/ruff format --check bot tools policies tests bench
	$(BIN)/mypy bot tools policies

bench: $(STAMP)
	bash scripts/install-system-packages.sh wrk
	$(BIN)/python bench/checkpoint.py
	$(BIN)/python bench/webhook.py

clean:
	rm -rf $(VENV) .incident-bot
