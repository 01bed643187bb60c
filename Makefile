# glacierwatch set-up, demo and tests. Every target is idempotent: a second run skips what is done.
#   make demo    create .venv, install torch then glacierwatch (versions pinned by constraints.txt), run `glacierwatch demo`
#   make test    same set-up, then the test suite
#   make lint    same set-up, then ruff and mypy with the settings in pyproject.toml (CI runs it before the tests)
# GPU users: make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEMO_ARGS ?=
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.glacierwatch-installed
CONSTRAINTS ?= constraints.txt

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -c $(CONSTRAINTS) -e '.[test]'
	@touch $@

demo: setup
	$(BIN)/glacierwatch demo $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check glacierwatch tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf demo-work .pytest_cache
