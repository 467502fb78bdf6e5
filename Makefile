# `make demo`: set up .venv and run the main job; `make test`: set up .venv, lint, run the tests.
VENV ?= .venv
BIN := $(VENV)/bin
export UNROLLED_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: setup demo test bench

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/unrolled train charlm --preset tiny --out runs/demo
	$(BIN)/unrolled sample runs/demo --length 400 --temperature 0.8

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -n 2
