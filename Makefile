# One command per habit; CI calls the same targets (.ci/run → make test).
# Every target installs from uv.lock, so a fresh machine gets exactly what was tested;
# uv itself is pinned and installed with pip into .tools/.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS  := .tools
UV_VERSION := 0.13.10
UV     := $(TOOLS)/bin/uv
UV_STAMP := $(TOOLS)/.uv-$(UV_VERSION)
DEMO_KEY := .demo/keys/demo-ed25519.pem
DEMO_SEAL_KEY := .demo/keys/cookie-seal.key
DEMO_OP_SECRET := .demo/keys/demo-op-client-secret

.PHONY: help install lock lock-upgrade lock-check demo test test-fast lint fmt docs screenshots bench bench-quick bench-plot chaos reload-drill clean

help:
	@echo "make demo   - run the demo: echo upstream on :9000, gateway on :8080 (admin :8081)"
	@echo "make test   - install and run the whole test suite"
	@echo "make test-fast - the inner loop: everything but the slow tests (processes, real waits), on two cores"
	@echo "make lint   - ruff + mypy (strict on gateway/ and tests/)"
	@echo "make fmt    - format with ruff"
	@echo "make docs   - regenerate docs/configuration.md's key table from the settings models"
	@echo "make screenshots - the admin console and sign-in at a provider in headless Chromium, saved to docs/"
	@echo "make bench  - benchmark: direct, reference and naive proxies, gateway, nginx in alternating rounds; then the chart"
	@echo "make bench-quick - the same, short (3 rounds of 3 s)"
	@echo "make chaos  - fault drill: Redis paused/killed, upstream refusing/stalling/resetting under load"
	@echo "make reload-drill - ten configuration reloads by SIGHUP under wrk load, --workers 2"
	@echo "make bench-plot - draw the latest results to docs/bench.png"
	@echo "make install - the .venv from uv.lock (every target above does this first)"
	@echo "make lock   - after editing pyproject.toml: resolve uv.lock again, keeping every other pin"
	@echo "make lock-upgrade - move uv.lock to the newest releases pyproject.toml allows; commit it"
	@echo "make lock-check - fail if uv.lock does not match pyproject.toml (CI runs it)"

$(UV_STAMP):
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)
	touch $(UV_STAMP)

# --locked: refuse a uv.lock that no longer matches pyproject.toml instead of re-resolving
$(STAMP): uv.lock pyproject.toml $(UV_STAMP)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --extra dev --python $(PYTHON) \
		--no-python-downloads --quiet \
		|| { echo "installing uv.lock failed (after a change to pyproject.toml: make lock)"; exit 1; }
	touch $(STAMP)

install: $(STAMP)

lock: $(UV_STAMP)
	$(UV) lock

lock-upgrade: $(UV_STAMP)
	$(UV) lock --upgrade

lock-check: $(UV_STAMP)
	@$(UV) lock --check --quiet \
		|| { echo "uv.lock does not match pyproject.toml: run make lock and commit uv.lock"; exit 1; }
	@echo "uv.lock matches pyproject.toml"

$(DEMO_KEY): | $(STAMP)
	$(BIN)/gateway keys generate --alg EdDSA --out $(DEMO_KEY) --if-missing

$(DEMO_SEAL_KEY): | $(STAMP)
	$(BIN)/gateway cookie-key generate --out $(DEMO_SEAL_KEY) --if-missing

$(DEMO_OP_SECRET): | $(STAMP)
	mkdir -p $(dir $(DEMO_OP_SECRET))
	umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(32))" > $(DEMO_OP_SECRET)

demo: $(STAMP) $(DEMO_KEY) $(DEMO_SEAL_KEY) $(DEMO_OP_SECRET)
	@$(BIN)/python deploy/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check gateway tests deploy bench
	$(BIN)/ruff format --check gateway tests deploy bench
	$(BIN)/mypy  # gateway/ and tests/ (files in pyproject.toml)

docs: $(STAMP)
	$(BIN)/python -m gateway.config_reference docs/configuration.md

screenshots: $(STAMP)
	CONSOLE_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/admin/test_console_chromium.py
	SIGN_IN_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/browser/test_provider_sign_in_chromium.py

fmt: $(STAMP)
	$(BIN)/ruff check --fix gateway tests deploy bench
	$(BIN)/ruff format gateway tests deploy bench

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.plot

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

chaos: $(STAMP)
	$(BIN)/python -m bench.drills.chaos

reload-drill: $(STAMP)
	$(BIN)/python -m bench.drills.reload

bench-plot: $(STAMP)
	$(BIN)/python -m bench.plot

clean:
	rm -rf $(VENV) $(TOOLS) .demo .pytest_cache .mypy_cache .ruff_cache
