# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit autobahn autobahn-full bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check fastrapi tests conformance examples bench
	$(BIN)/ruff format --check fastrapi tests conformance examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term -q

# The Autobahn fuzzing client on cases 1-10 against every backend (about 30 s
# each, plus a one-time install of about a minute); fails on any FAILED or
# NON-STRICT case.
autobahn: $(STAMP)
	$(BIN)/python conformance/autobahn/run --fast --strict

autobahn-full: $(STAMP)
	$(BIN)/python conformance/autobahn/run --full --strict

# Messages per second against the raw libraries, side by side (not part of test).
bench: $(STAMP)
	$(BIN)/python bench/throughput.py --messages 10000 --rounds 10

test: lint typecheck autobahn unit  # pytest last: its summary closes the output

clean:
	rm -rf $(VENV) .coverage .coverage.* .hypothesis
