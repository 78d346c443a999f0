# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: demo docs test lint typecheck unit conformance-oldest autobahn autobahn-full bench bench-quick bench-fanout bench-pipelined clean
OLDEST := .venv-oldest

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,examples]'
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

# The conformance suite again on the oldest release of each library that
# pyproject.toml allows (.ci/oldest.txt); `unit` runs it on the newest.
$(OLDEST)/.installed: pyproject.toml .ci/oldest.txt
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST)/bin/python -m pip install --quiet -c .ci/oldest.txt -e '.[test]'
	touch $(OLDEST)/.installed

conformance-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -m pytest -q --no-cov conformance

# The Autobahn fuzzing client on cases 1-10 against every backend (about 30 s
# each, plus a one-time install of about a minute); fails on any FAILED or
# NON-STRICT case.
autobahn: $(STAMP)
	$(BIN)/python conformance/autobahn/run --fast --strict

autobahn-full: $(STAMP)
	$(BIN)/python conformance/autobahn/run --full --strict

# The reference servers of bench/run.py, and its Go load client (which needs
# Debian's golang-go and golang-github-gorilla-websocket-dev).
$(BENCH_STAMP): $(STAMP) pyproject.toml $(wildcard bench/loadgen/*.go)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/run.py --build-client
	touch $(BENCH_STAMP)

# Echo servers side by side in six shapes, 3 rounds (about 12 minutes);
# writes bench/results/latest.{json,md,png}. See bench/README.md.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --plot

# One short round of every server and shape (under a minute), then a
# broadcast to 50 subscribers on every fan-out server (a few seconds); fails
# if any server fails, never on speed.
bench-quick: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --quick
	$(BIN)/python bench/fanout.py --quick

# Broadcast fan-out side by side: 1,000 and 10,000 subscribers, 5 rounds, the
# shootout up to 19,000, then through Redis, with workers and with stalled
# subscribers (about 20 minutes); writes bench/results/fanout.{json,md}.
bench-fanout: $(BENCH_STAMP)
	$(BIN)/python bench/fanout.py

# Messages per second with 64 in flight against the raw libraries (bench/throughput.py).
bench-pipelined: $(STAMP)
	$(BIN)/python bench/throughput.py --messages 10000 --rounds 10

# The documentation site (mkdocs.yml, docs/) into site/; --strict fails on
# any warning: a broken link or anchor, a name mkdocstrings cannot find.
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,examples,docs]'
	touch $(DOCS_STAMP)

# NO_MKDOCS_2_WARNING: mkdocs-material's banner about its own future, printed
# on every build; it says nothing about these docs.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs autobahn bench-quick conformance-oldest unit  # pytest last: its summary closes the output

clean:
	rm -rf $(VENV) $(OLDEST) .coverage .coverage.* .hypothesis bench/.build site
