# `make demo`: set up .venv and run the main job; `make test`: set up .venv, lint, run the tests.
VENV ?= .venv
BIN := $(VENV)/bin
export UNROLLED_DATA_DIR ?= $(abspath ../shared/data)
# the CPU wheel of torch lies here on this project's machines; elsewhere pip takes it from the index
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: setup demo test bench

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q $(FIND_LINKS) -c constraints.txt -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

DEMO := runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: setup
	$(BIN)/unrolled train charlm --preset tiny --out $(DEMO)
	$(BIN)/unrolled sample $(DEMO) --length 400 --temperature 0.8

bench: setup
	$(BIN)/unrolled bench --quick

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -n 2
