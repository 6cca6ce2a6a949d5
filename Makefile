# Two commands do all set-up on a fresh machine:
#   make train   -> trains an agent on InvertedPendulum-v5 (short default budget)
#   make test    -> lint, type-check, the fast test suite and the docs build (mkdocs build --strict)
#   make docs    -> the documentation site into build/site; make serve-docs serves it on 127.0.0.1:8000
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

.PHONY: install train test bench docs serve-docs
install: $(VENV)/.installed

train: install
	MUJOCO_GL=egl $(BIN)/python train_agent.py $(ARGS)

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy agent world_models planners envs language_models train_agent.py benchmarks tests examples
	MUJOCO_GL=egl $(BIN)/python -m pytest -q $(ARGS)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

serve-docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000
