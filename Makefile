# crypto-lakehouse: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# compile bytecode at install: the first `lakehouse` call does not pay for it
export UV_COMPILE_BYTECODE := 1
# Registries may sit behind a TLS proxy whose CA is only in the system store.
export UV_SYSTEM_CERTS := 1
ifneq ($(wildcard /etc/ssl/certs/ca-certificates.crt),)
export SSL_CERT_FILE ?= /etc/ssl/certs/ca-certificates.crt
endif

VENV := .venv
BIN := $(VENV)/bin

# Python 3.13 on PATH, or through pyenv (the pyenv shim may be inactive: ask pyenv where it is).
define find_python
for c in python3.13 "$$(PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null)" \
         $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13 2>/dev/null) \
         /usr/local/bin/python3.13 /usr/bin/python3.13; do \
  [ -n "$$c" ] && "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null \
    && { "$$c" -c 'import sys; print(sys.executable)'; exit 0; }; \
done; echo "error: Python 3.13 not found (install it, e.g. 'pyenv install 3.13')" >&2; exit 1
endef

.PHONY: help setup browser demo test lint bench serve stop clean checkov

help:
	@echo "make demo   - set up, then run the demo on embedded defaults"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make lint   - ruff check, ruff format --check, mypy (strict on src/ and flows/)"
	@echo "make bench  - run the benchmarks in benchmarks/"
	@echo "make serve  - local Prefect server (UI on :4200), worker, deployments, exchange, writer, query API (:8400); make stop"
	@echo "make checkov - scan infra/ (terraform, Dockerfile, kustomize overlays) with checkov"

setup: $(VENV)/.synced browser

# The explorer page's browser test (tests/service/test_explorer.py) drives Debian's chromium through
# Playwright (never `playwright install`: no browser download). Installed here when missing and
# run as root (CI); otherwise a hint. Quiet unless it fails.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (apt-get)"; \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/tmp/chromium-apt.log 2>&1 \
	      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } >>/tmp/chromium-apt.log 2>&1; } \
	      || { tail -20 /tmp/chromium-apt.log; exit 1; }; \
	  else echo "note: /usr/bin/chromium is missing (as root: apt-get install chromium); the browser test needs it" >&2; fi; \
	fi

$(VENV)/.synced: pyproject.toml uv.lock $(wildcard src/crypto_lakehouse/ingest/*.pyx)
	@set -e; PY313=$$($(find_python)); echo "using $$PY313"; \
	UV=$$(command -v uv || true); \
	if [ -z "$$UV" ]; then \
	  [ -x .tools/bin/uv ] || { "$$PY313" -m venv .tools && .tools/bin/pip install -q 'uv>=0.9'; }; \
	  UV=.tools/bin/uv; \
	fi; \
	"$$UV" sync --frozen --python "$$PY313"
	@touch $@

demo: setup
	$(BIN)/lakehouse demo

test: setup
	$(BIN)/python -m pytest

serve: setup  ## offline Prefect server + worker + deployments + loopback exchange + streaming writer + query API
	$(BIN)/python -m crypto_lakehouse.devtools.serve start

stop:
	$(BIN)/python -m crypto_lakehouse.devtools.serve stop

lint: setup
	$(BIN)/ruff check src flows tests benchmarks
	$(BIN)/ruff format --check src flows tests benchmarks
	$(BIN)/mypy

# checkov runs in its own environment (its pins conflict with uv.lock), pinned by
# infra/checkov-constraints.txt; tests/infra/test_checkov.py runs the same scan.
checkov: setup
	@UV=$$(command -v uv || echo .tools/bin/uv); \
	"$$UV" tool run --python "$$($(BIN)/python -c 'import sys; print(sys._base_executable)')" \
	  --from checkov --constraints infra/checkov-constraints.txt --no-build \
	  checkov -d infra --framework terraform dockerfile kustomize --skip-download --compact --quiet

bench: setup
	$(BIN)/python benchmarks/exchange.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/silver.py
	$(BIN)/python benchmarks/gold.py
	$(BIN)/python benchmarks/query.py
	$(BIN)/python benchmarks/api.py
	$(BIN)/python benchmarks/archive.py
	$(BIN)/python benchmarks/maintenance.py
	$(BIN)/python benchmarks/commits.py
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) .tools .serve lakehouse_data lakehouse_spool lakehouse_archive_cache .pytest_cache .mypy_cache
