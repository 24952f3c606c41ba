# Every target creates .venv and installs what it needs; nothing is installed by hand.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Two stamps: the demo and the local stack need far less than the test and build tools.
LOCAL_STAMP := $(VENV)/.installed-local
STAMP := $(VENV)/.installed-dev
# checkov lives in a venv of its own: its pins (boto3 1.35, networkx 2) clash with the app's.
SCAN_VENV := .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed

# Lambda runs python3.13; use it for the venv when this machine has one (pyenv included),
# else the newest python3 (the code supports 3.11+).
PYTHON313 := $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do \
	if $$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then echo $$p; break; fi; done)
BASE_PYTHON ?= $(if $(PYTHON313),$(PYTHON313),python3)

PORT ?= 8080
HOST ?= 127.0.0.1
SEED ?=
TIME_SCALE ?= 1
PARAMS ?=
# The per-IP limits are the template's own (sized for a hall behind one NAT). Every local speaker
# shares `make token`'s subject, so only the per-user session budget is raised; PARAMS overrides.
LOCAL_LIMITS := RateLimitSessionsPerUserPerHour=1000
SUB ?= local-speaker
ENV ?= dev
REGION ?= us-east-1

export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= $(REGION)

# --skip-download: no network for Prisma Cloud's guideline mappings (suppressions use CKV ids).
CHECKOV_ARGS := --framework cloudformation --compact --quiet --skip-download

.PHONY: help venv test lint scan unit seed invoke web browser-deps node-test demo local token bench build deploy clean has-python313

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(LOCAL_STAMP): requirements-local.txt src/requirements.txt constraints.txt
	@test -x $(PY) || { echo "creating $(VENV) with $(BASE_PYTHON)" >&2; $(BASE_PYTHON) -m venv $(VENV); \
		$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip; }
	@echo "installing requirements-local.txt into $(VENV)" >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-local.txt -c constraints.txt
	@touch $@

$(STAMP): $(LOCAL_STAMP) requirements-dev.txt
	@echo "installing requirements-dev.txt into $(VENV)" >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $@

$(SCAN_STAMP): requirements-scan.txt constraints-scan.txt
	@test -x $(SCAN_VENV)/bin/python || { echo "creating $(SCAN_VENV) with $(BASE_PYTHON)" >&2; $(BASE_PYTHON) -m venv $(SCAN_VENV); }
	@echo "installing requirements-scan.txt into $(SCAN_VENV)" >&2
	@$(SCAN_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-scan.txt -c constraints-scan.txt
	@touch $@

# The pages' one library (the QR code) and the accessibility checker the browser tests inject,
# pinned by package-lock.json; copied into web/vendor/ (no CDN, no build step).
WEB_STAMP := node_modules/.installed
$(WEB_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: the web pages need npm (Node.js): apt-get install -y nodejs npm" >&2; exit 1; }
	@npm ci --no-audit --no-fund --silent
	@touch $@

web/vendor/qrcode.mjs: $(WEB_STAMP)
	@mkdir -p web/vendor && cp node_modules/qrcode-generator/dist/qrcode.mjs $@

web: web/vendor/qrcode.mjs ## Install the pages' pinned JavaScript (npm ci) into web/vendor/

# The browser tests drive Debian's Chromium and feed it speech made by espeak-ng.
browser-deps: ## Install Chromium, espeak-ng and sox when missing (root with apt-get), or say the command
	@if command -v chromium >/dev/null && command -v espeak-ng >/dev/null && command -v sox >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium, espeak-ng and sox with apt-get" >&2; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium espeak-ng sox >/dev/null; \
	else echo "make: the browser tests need Chromium, espeak-ng and sox: sudo apt-get install -y chromium espeak-ng sox" >&2; exit 1; fi

node-test: web ## The web client's pure logic with Node's built-in test runner
	node --test web/test/*.test.mjs

venv: $(STAMP) $(SCAN_STAMP) ## Create .venv (and .venv-scan) and install every dependency

lint: $(STAMP) scan ## ruff, cfn-lint, sam validate --lint and the security scan
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --region $(REGION) --template template.yaml

scan: $(SCAN_STAMP) ## checkov on template.yaml: fails on any finding neither fixed nor suppressed with a reason
	$(SCAN_VENV)/bin/checkov $(CHECKOV_ARGS) -f template.yaml

unit: $(STAMP) $(SCAN_STAMP) web browser-deps ## pytest only (browser tests included)
	$(PY) -m pytest

test: lint node-test unit ## Everything CI runs: lint, template checks, the Node tests and every pytest test

local: $(LOCAL_STAMP) web ## Serve the app on ws://127.0.0.1:$(PORT) (TIME_SCALE=600: 100 minutes in 10 s; PARAMS="Name=Value ..."; SEED=1; HOST=0.0.0.0)
	@$(PY) -m local_stack --host $(HOST) --port $(PORT) --time-scale $(TIME_SCALE) --env-file .local/env.json \
		$(if $(filter 1 true yes,$(SEED)),--seed) $(foreach p,$(LOCAL_LIMITS) $(PARAMS),--param $(p))

seed: $(LOCAL_STAMP) ## Put back the session and connections events/ refers to, in a running make local
	@$(PY) -m local_stack.seed --port $(PORT)

invoke: $(LOCAL_STAMP) ## Run one function on one event against a running make local, like sam local invoke: FN=JoinSessionFunction EVENT=events/join_session.json
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=JoinSessionFunction EVENT=events/join_session.json" >&2; exit 2; }
	@$(PY) -m local_stack.invoke $(FN) $(EVENT)

token: $(LOCAL_STAMP) ## Print a speaker token for the local stack (SUB=alice for another subject)
	@$(PY) -m local_stack.tokens --sub $(SUB)

demo: $(LOCAL_STAMP) ## A time-compressed multi-hour broadcast on the local stack, with a report
	@$(PY) -m local_stack.demo

bench: $(LOCAL_STAMP) ## Benchmarks: AWS calls per operation, cold start, load, cost
	@PYTHONPATH=src $(PY) -m bench

has-python313: ## Exit 0 when a python3.13 was found (CI uses it to decide on make build)
	@test -n "$(PYTHON313)" && echo "$(PYTHON313)"

build: $(STAMP) ## sam build (needs python3.13 on PATH)
	@if [ -z "$(PYTHON313)" ]; then echo "make build: no python3.13 found (PATH, ~/.pyenv/versions/3.13*); install one, e.g. 'pyenv install 3.13'" >&2; exit 1; fi
	PATH="$$(dirname $(PYTHON313)):$$PATH" $(BIN)/sam build --template template.yaml

deploy: build web ## sam deploy --config-env $(ENV), then the web app: upload, configuration, CloudFront invalidation
	$(BIN)/sam deploy --config-env $(ENV)
	$(PY) -m deploy.publish --config-env $(ENV)

clean: ## Remove build output and caches (keeps .venv)
	rm -rf .aws-sam .pytest_cache .ruff_cache .hypothesis
