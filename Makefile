# Quick start: `make demo` (set up + run the main job), `make test` (set up + run the tests).
# Both create the virtualenv in .venv when it is missing and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/genesis-fw backtest strategy=ema_rsi

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_cli_startup.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
