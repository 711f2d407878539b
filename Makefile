# One-command set-up: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv with Python 3.12 and install the project on first use (idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := dev,catalog,production,hpc,dashboard,notebooks,browser
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile scripts/setup-system.sh 2>/dev/null | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile scripts/setup-system.sh
	@bash scripts/setup-system.sh
	@test -x $(PY) || "$$(bash scripts/find-python.sh)" -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(VENV)/bin/l2a demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: setup
	for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
