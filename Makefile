# Two commands on a fresh machine with Python 3.11 or newer: `make run` and `make test`.
# Poetry comes from pipx when pipx is there, else from a tools environment of the project's
# own (.tools/, git-ignored); nothing is installed into the system's Python.
PYTHON ?= python3
# The project's environment, made with $(PYTHON). Another interpreter gets one of its own:
# `make test-fast PYTHON=python3.13 VENV=.venv-3.13`.
VENV ?= .venv
TOOLS ?= .tools
HOST ?= 127.0.0.1
PORT ?= 8002
# pytest-xdist processes for `make test` and `make test-fast`: one per core.
WORKERS ?= auto

POETRY := $(TOOLS)/bin/poetry
# Poetry installs into and runs in $(VENV), whatever environment the shell has active.
RUN := VIRTUAL_ENV=$(abspath $(VENV)) $(POETRY) run
NO_VENV = echo "make: $(PYTHON) cannot make a virtual environment: apt-get install python3-venv \
(or $$($(PYTHON) -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')), or install pipx" >&2

.PHONY: run test test-fast lint format install poetry demo bench stress
.DEFAULT_GOAL := install

poetry: $(POETRY)

$(POETRY):
	@command -v $(PYTHON) >/dev/null 2>&1 \
		|| { echo "make: no $(PYTHON) on PATH: install Python 3.11 or newer" >&2; exit 1; }
	@if command -v pipx >/dev/null 2>&1; then \
		pipx install poetry >/dev/null && mkdir -p $(TOOLS)/bin \
		&& ln -sf "$$(pipx environment --value PIPX_BIN_DIR 2>/dev/null \
			|| echo "$${PIPX_BIN_DIR:-$$HOME/.local/bin}")/poetry" $@; \
	else \
		$(PYTHON) -m venv $(TOOLS) >/dev/null 2>&1 || { rm -rf $(TOOLS); $(NO_VENV); exit 1; }; \
		echo "make: installing Poetry into $(TOOLS)/"; \
		$(TOOLS)/bin/pip install --quiet --disable-pip-version-check poetry; \
	fi

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { rm -rf $(VENV); $(NO_VENV); exit 1; }

# Poetry's HTTP client trusts certifi's list of authorities alone unless REQUESTS_CA_BUNDLE
# names another: the system's bundle, as pip, curl and apt trust, holds any authority a
# machine's own connections to the package index are signed by.
SYSTEM_CA := $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt))

$(VENV)/.installed: $(POETRY) $(VENV)/bin/python pyproject.toml poetry.lock
	REQUESTS_CA_BUNDLE=$${REQUESTS_CA_BUNDLE:-$(SYSTEM_CA)} VIRTUAL_ENV=$(abspath $(VENV)) \
		$(POETRY) install --no-interaction
	@touch $@

install: $(VENV)/.installed

run: install
	$(RUN) inventory migrate
	$(RUN) inventory serve --host $(HOST) --port $(PORT)

# The whole suite with the coverage floor; PostgreSQL's half runs when TEST_POSTGRES_URL is set.
test: install
	$(RUN) pytest -n $(WORKERS) --cov=app --cov-report=term-missing

# The edit loop: the suite without the multi-process, crash and fuzz tests (no coverage floor).
test-fast: install
	$(RUN) pytest -n $(WORKERS) -m "not slow" -q

# The fast suite on Python 3.13 in .venv-3.13: a python3.13 from the PATH or pyenv, else
# Debian 13's in a debootstrapped folder (.ci/python3.13 says how it chooses).
.PHONY: test-py313
test-py313:
	bash .ci/python3.13

lint: install
	$(RUN) ruff check app devtools tests alembic bench
	$(RUN) ruff format --check app devtools tests alembic bench
	$(RUN) mypy

format: install
	$(RUN) ruff check --fix app devtools tests alembic bench
	$(RUN) ruff format app devtools tests alembic bench

# The service on $(HOST):$(PORT) (SQLite file demo.db, migrated) talking to the fake products
# service of devtools/fake_products.py on 127.0.0.1:$(DEMO_PRODUCTS_PORT). Inventory key
# $(DEMO_API_KEY); the fake requires $(DEMO_PRODUCTS_API_KEY), which the service forwards.
# Ctrl-C stops the service, and the trap then stops the fake by its PID.
DEMO_PRODUCTS_PORT ?= 8003
DEMO_API_KEY ?= demo-key
DEMO_PRODUCTS_API_KEY ?= demo-products-key

demo: install
	@$(RUN) python -m devtools.fake_products --host 127.0.0.1 --port $(DEMO_PRODUCTS_PORT) \
		--api-key $(DEMO_PRODUCTS_API_KEY) & fake=$$!; \
	echo "demo: fake products on 127.0.0.1:$(DEMO_PRODUCTS_PORT) (PID $$fake), service on $(HOST):$(PORT)"; \
	echo "demo: Ctrl-C stops the service, then the fake (kill $$fake stops the fake alone)"; \
	trap 'echo "demo: stopping the fake products service (PID $$fake)"; kill $$fake 2>/dev/null; wait $$fake 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	export DATABASE_URL=sqlite:///./demo.db API_KEY=$(DEMO_API_KEY) \
		PRODUCTS_SERVICE_URL=http://127.0.0.1:$(DEMO_PRODUCTS_PORT) \
		PRODUCTS_API_KEY=$(DEMO_PRODUCTS_API_KEY); \
	$(RUN) inventory migrate && \
	$(RUN) inventory serve --host $(HOST) --port $(PORT) || [ $$? -ge 128 ]

# `make bench`: short run (1 worker, both engines); `make bench FULL=1`: the whole grid.
# Needs wrk (installed here if missing) and PostgreSQL on 127.0.0.1:5432 (skipped if absent).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

bench: install
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	BENCH_COMMAND="make bench$(if $(FULL), FULL=$(FULL),)" $(RUN) python -m bench.run $(if $(FULL),--full,)

# `make stress`: 60 s of mixed load on 2 workers against PostgreSQL, then the invariant check.
STRESS_SECONDS ?= 60
stress: install
	TEST_POSTGRES_URL=$${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres} \
		$(RUN) python -m bench.stress --seconds $(STRESS_SECONDS)

# Containers (README, "Deploying"). Docker's daemon, docker-compose 1.29 and debootstrap come
# from Debian's packages when missing. `make image` needs a running daemon and says how to
# start one when none answers; `make image-test` starts one itself, and stops it again.
.PHONY: docker-tools image image-test

docker-tools:
	@command -v dockerd >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 \
		&& command -v debootstrap >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq docker.io docker-compose debootstrap; }

# The images of docker-compose.yml, on a debian:bookworm-slim made locally if none can be had.
image: docker-tools
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker daemon answers; start one:" \
		"\`sudo systemctl start docker\`, or where there is no systemd" \
		"\`sudo dockerd >/var/log/dockerd.log 2>&1 &\`" >&2; exit 1; }
	$(SUDO) sh docker/base-image.sh
	docker-compose --profile demo build

# Build, start the stack, load it through the load balancer, kill a replica, check the
# books, tear it all down; one summary line.
image-test: install docker-tools
	$(RUN) python docker/image_test.py

# `make fuzz`: schemathesis's `st run` over the whole API with ./schemathesis.toml, against the
# fake catalog and the service on free loopback ports with a fresh SQLite file, and again on a
# fresh PostgreSQL database when TEST_POSTGRES_URL is set; both stopped by PID afterwards.
# Not part of `make test`. `make fuzz FUZZ_ARGS="--seed 7"` passes arguments to `st run`.
.PHONY: fuzz
FUZZ_ARGS ?=
fuzz: install
	$(RUN) python -m tests.fuzz.standalone $(FUZZ_ARGS)
