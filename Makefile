# Stepwatch. `make run` and `make test` set everything up themselves.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
BUF    := node_modules/.bin/buf
ORCH_PORT ?= $(or $(STEPWATCH_PORT),50051)
UI_PORT   ?= $(or $(STEPWATCH_UI_PORT),8080)
METRICS_PORT ?= $(or $(STEPWATCH_METRICS_PORT),9464)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install proto proto-baseline lint run test bench bench-quick clean system-deps sandbox-deps

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(BUF): package.json
	npm install --no-fund --no-audit --silent
	touch $@

install: $(VENV)/.installed $(BUF)

# Regenerate the committed bindings under stepwatch/v1 (a test fails when stale).
proto: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
		protos/stepwatch/v1/orchestrator.proto

# Update the breaking-change baseline on purpose (after a reviewed contract change).
proto-baseline: $(BUF)
	$(BUF) build protos -o protos/baseline.binpb

lint: install
	$(BUF) lint protos
	$(BUF) breaking protos --against protos/baseline.binpb
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy  # strict (pyproject.toml), over every package but the generated bindings

# The orchestrator runs commands in a bubblewrap sandbox (Debian's bubblewrap).
sandbox-deps:
	@if ! command -v bwrap >/dev/null; then \
		echo "installing bubblewrap (the command sandbox)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	fi

# Debian packages the tests use: Chromium + chromedriver (browser tests), tmux (the CLI in a
# 24-row terminal), PostgreSQL's server (a test fixture runs its own cluster with initdb);
# util-linux (setpriv, flock, mount) comes with Debian itself.
system-deps: sandbox-deps
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
			|| ! command -v tmux >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing chromium, chromium-driver, tmux and postgresql"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver tmux postgresql >/dev/null; \
	fi

run: install sandbox-deps
	$(PY) scripts/run_all.py --orchestrator-port $(ORCH_PORT) --ui-port $(UI_PORT) \
		--metrics-port $(METRICS_PORT) $(if $(DB_URL),--db-url '$(DB_URL)')

# Two passes: the tests that only wait on events run two at a time (one per core); those that
# time something against the wall clock, or are the load themselves, run alone after them.
test: install system-deps lint
	$(PY) -m pytest -n 2 --dist worksteal -m "not serial"
	$(PY) -m pytest -m serial

# PostgreSQL next to SQLite: make bench DB_URL=postgresql+psycopg://USER:PASS@HOST/DB (a server
# where that user may create databases); without it the bench starts its own PostgreSQL.
bench: install system-deps
	$(PY) -m bench $(if $(DB_URL),--db-url '$(DB_URL)')

bench-quick: install system-deps
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis .mypy_cache .ruff_cache stepwatch.db* \
		*.egg-info build dist
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
