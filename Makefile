# `make run` and `make test` are all a newcomer needs; both install what is missing first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# GraphiQL's scripts and styles, fetched from the npm registry (web/playground.py).
PLAYGROUND := web/playground_assets/.complete
PORT ?= $(or $(PRIVACY_API_PORT),8000)

.PHONY: install run test lint format schema bench

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

# Without npm the API still runs; its playground page then says what is missing.
$(PLAYGROUND): $(INSTALLED)
	$(BIN)/python -m web.playground && touch $(PLAYGROUND) \
		|| echo "The playground's scripts were not fetched (is npm installed?)." >&2

install: $(INSTALLED) $(PLAYGROUND)

run: install
	PRIVACY_API_PORT=$(PORT) $(BIN)/privacy-api serve

# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE, set on
# some machines): otherwise every test process and every command a test starts compiles the
# project, and pytest rewrites the test modules, again. The caches are git-ignored.
test: install lint
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n 2

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schema: install
	$(BIN)/privacy-api export-schema

bench: install
	$(BIN)/python -m benchmarks.load $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.signup_timing --database sqlite
	$(BIN)/python -m benchmarks.signup_timing --database postgresql
	$(BIN)/python -m benchmarks.webhook_lanes
