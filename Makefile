# Two commands on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
POETRY := $(shell command -v poetry 2>/dev/null || echo "$(PYTHON) -m poetry")
HOST ?= 127.0.0.1
PORT ?= 8002

.PHONY: run test test-fast lint format install poetry demo bench stress

poetry:
	@command -v poetry >/dev/null 2>&1 || $(PYTHON) -m poetry --version >/dev/null 2>&1 \
		|| $(PYTHON) -m pip install --quiet poetry

install: poetry
	$(POETRY) install --no-interaction

run: install
	$(POETRY) run inventory migrate
	$(POETRY) run inventory serve --host $(HOST) --port $(PORT)

test: install
	$(POETRY) run pytest --cov=app --cov-report=term-missing

# The edit loop: the suite without the multi-process, crash and fuzz tests (no coverage floor).
test-fast: install
	$(POETRY) run pytest -m "not slow" -q

lint: install
	$(POETRY) run ruff check app devtools tests alembic bench
	$(POETRY) run ruff format --check app devtools tests alembic bench
	$(POETRY) run mypy

format: install
	$(POETRY) run ruff check --fix app devtools tests alembic bench
	$(POETRY) run ruff format app devtools tests alembic bench

# The service on $(HOST):$(PORT) (SQLite file demo.db, migrated) talking to the fake products
# service of devtools/fake_products.py on 127.0.0.1:$(DEMO_PRODUCTS_PORT). Inventory key
# $(DEMO_API_KEY); the fake requires $(DEMO_PRODUCTS_API_KEY), which the service forwards.
# Ctrl-C stops the service, and the trap then stops the fake by its PID.
DEMO_PRODUCTS_PORT ?= 8003
DEMO_API_KEY ?= demo-key
DEMO_PRODUCTS_API_KEY ?= demo-products-key

demo: install
	@$(POETRY) run python -m devtools.fake_products --host 127.0.0.1 --port $(DEMO_PRODUCTS_PORT) \
		--api-key $(DEMO_PRODUCTS_API_KEY) & fake=$$!; \
	echo "demo: fake products on 127.0.0.1:$(DEMO_PRODUCTS_PORT) (PID $$fake), service on $(HOST):$(PORT)"; \
	echo "demo: Ctrl-C stops the service, then the fake (kill $$fake stops the fake alone)"; \
	trap 'echo "demo: stopping the fake products service (PID $$fake)"; kill $$fake 2>/dev/null; wait $$fake 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	export DATABASE_URL=sqlite:///./demo.db API_KEY=$(DEMO_API_KEY) \
		PRODUCTS_SERVICE_URL=http://127.0.0.1:$(DEMO_PRODUCTS_PORT) \
		PRODUCTS_API_KEY=$(DEMO_PRODUCTS_API_KEY); \
	$(POETRY) run inventory migrate && \
	$(POETRY) run inventory serve --host $(HOST) --port $(PORT) || [ $$? -ge 128 ]

# `make bench`: short run (1 worker, both engines); `make bench FULL=1`: the whole grid.
# Needs wrk (installed here if missing) and PostgreSQL on 127.0.0.1:5432 (skipped if absent).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

bench: install
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	BENCH_COMMAND="make bench$(if $(FULL), FULL=$(FULL),)" $(POETRY) run python -m bench.run $(if $(FULL),--full,)

# `make stress`: 60 s of mixed load on 2 workers against PostgreSQL, then the invariant check.
STRESS_SECONDS ?= 60
stress: install
	TEST_POSTGRES_URL=$${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres} \
		$(POETRY) run python -m bench.stress --seconds $(STRESS_SECONDS)

# Containers (README, "Deploying"). Docker's daemon, docker-compose 1.29 and debootstrap come
# from Debian's packages when missing. `make image` needs a running daemon; `make image-test`
# starts one itself when none answers, and stops it again.
.PHONY: docker-tools image image-test

docker-tools:
	@command -v dockerd >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 \
		&& command -v debootstrap >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq docker.io docker-compose debootstrap; }

# The images of docker-compose.yml, on a debian:bookworm-slim made locally if none can be had.
image: docker-tools
	$(SUDO) sh docker/base-image.sh
	docker-compose --profile demo build

# Build, start the stack, load it through the load balancer, kill a replica, check the
# books, tear it all down; one summary line.
image-test: install docker-tools
	$(POETRY) run python docker/image_test.py

# `make fuzz`: schemathesis's `st run` over the whole API with ./schemathesis.toml, against the
# fake catalog and the service on free loopback ports with a fresh SQLite file, and again on a
# fresh PostgreSQL database when TEST_POSTGRES_URL is set; both stopped by PID afterwards.
# Not part of `make test`. `make fuzz FUZZ_ARGS="--seed 7"` passes arguments to `st run`.
.PHONY: fuzz
FUZZ_ARGS ?=
fuzz: install
	$(POETRY) run python -m tests.fuzz.standalone $(FUZZ_ARGS)
