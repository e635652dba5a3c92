# llmtally — `make run` starts the local stack, `make test` runs every test tier.
# Python packages install into .venv and npm packages into web/node_modules, from the registries.
# `make test` first checks what it cannot install there (`make preflight`: python3, node, Chromium);
# run as root with apt-get (CI, a fresh container) it installs Debian's chromium itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST := $(PY) -m pytest -n 2 --dist loadgroup -q
MYPY   := $(VENV)/bin/mypy shared lambdas bench tests cdk_app

.DEFAULT_GOAL := help
.PHONY: help preflight install run test checks checks-after-preflight test-python test-python-and-types ruff typecheck test-unit test-integration test-infra lint fmt bench schema synth clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv and install the library with every extra and the dev tools

run: $(STAMP) ## install, build the dashboard (when web/ exists) and start the local stack: `make run ARGS=--demo`
	@if [ -f web/package.json ]; then $(MAKE) --no-print-directory web; fi
	$(VENV)/bin/llmtally local $(ARGS)

preflight: ## check what `make test` needs beyond .venv (python3 3.11+, node 20.19+, Chromium); as root, apt-installs chromium
	@PYTHON=$(PYTHON) .ci/preflight

test: preflight ## preflight, then the checks (two at a time), then every pytest tier with mypy beside it
	@$(MAKE) --no-print-directory -j2 --output-sync=target checks-after-preflight
	@$(MAKE) --no-print-directory test-python-and-types

# After the preflight (which stops `make test` at once, with one line, when something is missing), the
# checks are independent of each other: `make test` runs them two at a time — pip install and ruff on
# one core, npm ci + vite build + vitest on the other — each one's output printed in one block when it
# ends. mypy's cold run (~100 s of one core) then runs beside pytest rather than before it; its
# output is printed when pytest ends, and either failing fails `make test`.
checks: preflight checks-after-preflight typecheck ## everything `make test` runs besides pytest
checks-after-preflight: $(STAMP) ruff web test-web

test-python: $(STAMP) ## every pytest tier, without the checks `make test` runs first
	$(PYTEST)

test-python-and-types: $(STAMP)
	@log=$$(mktemp); $(MYPY) >"$$log" 2>&1 & types_pid=$$!; \
	echo "$(PYTEST)  (mypy runs beside it)"; $(PYTEST); tests=$$?; \
	wait $$types_pid; types=$$?; echo "$(MYPY)"; cat "$$log"; rm -f "$$log"; \
	[ $$tests -eq 0 ] && [ $$types -eq 0 ]

test-unit: $(STAMP) ## the fast tier only
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP) ## the moto-server tier only
	$(PY) -m pytest -q tests/integration

test-infra: $(STAMP) ## the CDK tier only (template, cdk-nag, cfn-lint, one real asset bundling); needs node
	$(PY) -m pytest -q tests/infra

lint: ruff typecheck ## ruff (lint + format check) and mypy

ruff: $(STAMP) ## ruff's lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy (strict)
	$(MYPY)

fmt: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP) ## print the benchmark figures (see docs/BENCHMARKS.md)
	$(PY) -m bench

schema: $(STAMP) ## regenerate docs/usage-event.schema.json from the pydantic model
	$(PY) -m llmtally.schema > docs/usage-event.schema.json

# -- AWS (cdk_app/): synthesized offline — node on PATH for jsii, no Docker, no CDK CLI needed -------------
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

synth: $(STAMP) web ## synthesize the CDK app into cdk.out (assets bundled locally with pip for arm64), cdk-nag and cfn-lint it
	@command -v node >/dev/null || { echo "make synth: node is not on PATH (jsii needs it)" >&2; exit 1; }
	rm -rf cdk.out
	CDK_OUTDIR=cdk.out $(PY) -m cdk_app.app
	$(VENV)/bin/cfn-lint --non-zero-exit-code error cdk.out/*.template.json

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis cdk.out

# -- the dashboard (web/): Node 20.19+ and npm; the browser tests also need /usr/bin/chromium -----------
.PHONY: web test-web screenshots
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) \
	web/index.html web/package.json web/vite.config.ts web/tsconfig.json

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && npm run build

web: web/dist/index.html ## build the dashboard into web/dist (npm ci + vite build; skipped when up to date)

screenshots: $(STAMP) web ## refresh docs/screenshots/ from the browser tests (the tests alone write to build/)
	LLMTALLY_SCREENSHOTS_DIR=docs/screenshots $(PY) -m pytest -q tests/browser -k screenshots

test-web: web/node_modules/.package-lock.json ## the dashboard's component tests (vitest + Testing Library)
	cd web && npm test
