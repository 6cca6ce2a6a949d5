# Two commands do all set-up on a fresh machine:
#   make train   -> trains an agent on InvertedPendulum-v5 (short default budget)
#   make test    -> lint, type-check and the fast test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

.PHONY: install train test bench
install: $(VENV)/.installed

train: install
	MUJOCO_GL=egl $(BIN)/python train_agent.py $(ARGS)

test: install
	$(BIN)/ruff check .
	$(BIN)/mypy agent world_models planners envs train_agent.py benchmarks tests
	MUJOCO_GL=egl $(BIN)/python -m pytest -q $(ARGS)
