# incident-bot — the two commands that matter are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK_VENV := .venv-lock
LOCK_STAMP := $(LOCK_VENV)/.installed
# The venv holds exactly these (plus the project, editable): build.txt pins pip and the
# build backend, dev.txt the runtime and dev dependencies, all with hashes.
LOCKS := requirements/build.txt requirements/dev.txt
PIP := $(BIN)/pip --quiet --disable-pip-version-check
# `make lock` keeps every pin it can; `make lock LOCK_ARGS=--upgrade` (or
# `LOCK_ARGS='--upgrade-package redis'`) moves them.
LOCK_ARGS ?=
# Distribution names as pip compares them (PEP 503), one a line.
NORMALIZE := tr 'A-Z_.' 'a-z--' | sort -u
COMPILE := CUSTOM_COMPILE_COMMAND='make lock' $(LOCK_VENV)/bin/pip-compile --quiet \
	--generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)

.PHONY: demo test lint bench soak lock clean

# Installs the lock over the venv (creating it if need be), then removes whatever the lock
# no longer names, so the venv is the lock's whenever the lock changes.
$(STAMP): $(LOCKS) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes -r requirements/build.txt
	$(PIP) install --require-hashes -r requirements/dev.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	@locked="$$(sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*\)==.*/\1/p' $(LOCKS) | $(NORMALIZE))"; \
	extra="$$($(PIP) freeze --all --exclude-editable | sed -n 's/==.*//p' | $(NORMALIZE) \
		| grep -vxF -e "$$locked" || true)"; \
	if [ -n "$$extra" ]; then echo "removing what the lock no longer names:" $$extra; \
		$(PIP) uninstall --yes $$extra; fi
	$(PIP) check
	touch $(STAMP)

## Run the whole flow offline: alert -> investigation -> proposal -> approval -> rollback -> verified.
demo: $(STAMP)
	@if [ -t 0 ]; then $(BIN)/incident-bot demo; else $(BIN)/incident-bot demo --yes; fi

## Lint, type-check and run the whole test suite.
test: $(STAMP) lint
	bash scripts/install-system-packages.sh
	bash scripts/install-checkov.sh
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
	$(BIN)/python bench/investigation.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/slack_ack.py

## Recompile the hashed lock files in requirements/ (pip-tools, in its own venv) from
## pyproject.toml and requirements/*.in; `make` then installs them.
lock: $(LOCK_STAMP)
	$(COMPILE) --output-file requirements/runtime.txt pyproject.toml
	$(COMPILE) --extra dev --constraint requirements/runtime.txt \
		--output-file requirements/dev.txt pyproject.toml
	$(COMPILE) --allow-unsafe --output-file requirements/build.txt requirements/build.in
	$(COMPILE) --allow-unsafe --output-file requirements/lock-tools.txt requirements/lock-tools.in
	if [ -f requirements/checkov.in ]; then \
		$(COMPILE) --output-file requirements/checkov.txt requirements/checkov.in; fi

$(LOCK_STAMP): requirements/lock-tools.txt
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip --quiet --disable-pip-version-check install --require-hashes \
		-r requirements/lock-tools.txt
	touch $(LOCK_STAMP)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .tools .incident-bot
