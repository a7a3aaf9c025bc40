# Set-up and the two main commands. `make demo` and `make test` create .venv and install everything first.
VENV ?= .venv
BIN := $(VENV)/bin
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test bench

$(BIN)/.c2s-installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch must come first: a looser spec would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/.c2s-installed

demo: setup
	$(BIN)/c2s ask "Which marker genes distinguish the cell types, and how do monocytes respond to interferon?" --data demo

test: setup
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/transform/run.py
