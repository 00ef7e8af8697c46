# The inventory service, on Debian's Python 3.11.
#
#   docker build -t inventory .                            # the service (the last stage)
#   docker build -t inventory-demo-products --target products .   # the demo catalog
#
# Settings come from the environment only (README, "Settings"); the image holds no .env.

FROM debian:bookworm-slim AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Debian's Python 3.11; ca-certificates for an https products service.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*


# Poetry lives only here: it installs exactly what poetry.lock pins (hashes checked) into
# /opt/venv, which the later stages copy without Poetry.
FROM base AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
# Poetry and pip read the system CA bundle, not their own copy of one.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
ARG POETRY_VERSION=2.5.1
RUN python3 -m venv /opt/poetry && /opt/poetry/bin/pip install --quiet "poetry==${POETRY_VERSION}"
# Poetry installs into the active virtual environment; it needs no pip of its own there.
RUN python3 -m venv --without-pip /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
WORKDIR /srv/inventory
# Dependencies first, so that a change to the code reuses this layer.
COPY pyproject.toml poetry.lock poetry.toml ./
RUN /opt/poetry/bin/poetry install --only main --no-root --no-interaction --no-ansi
# Then the project itself: the `inventory` command, its code found at /srv/inventory.
COPY README.md alembic.ini ./
COPY alembic ./alembic
COPY app ./app
RUN /opt/poetry/bin/poetry install --only main --no-interaction --no-ansi \
    && python3 -m compileall -q /opt/venv /srv/inventory/app /srv/inventory/alembic


# What both images run with: the virtual environment and a user that owns nothing in it.
FROM base AS runtime-base
RUN groupadd --gid 10001 inventory \
    && useradd --uid 10001 --gid inventory --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin inventory
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH


# The demo products catalog of `make demo` (devtools/fake_products.py needs only
# starlette and uvicorn, both in the venv). Listens on 8003.
FROM runtime-base AS products
WORKDIR /srv/demo
COPY devtools/__init__.py devtools/fake_products.py ./devtools/
USER inventory
EXPOSE 8003
CMD ["python3", "-m", "devtools.fake_products", "--host", "0.0.0.0", "--port", "8003"]


# The service. `inventory migrate` is a separate one-shot run of this image (see
# docker-compose.yml); replicas only serve.
FROM runtime-base AS service
WORKDIR /srv/inventory
COPY --from=builder /srv/inventory/alembic.ini ./
COPY --from=builder /srv/inventory/alembic ./alembic
COPY --from=builder /srv/inventory/app ./app
# Writable for a SQLite file (DATABASE_URL=sqlite:////data/inventory.db) on a volume; the
# code itself stays read-only to the service.
RUN install -d -o inventory -g inventory /data
USER inventory
EXPOSE 8002
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/health', timeout=2)"]
CMD ["inventory", "serve", "--host", "0.0.0.0", "--port", "8002"]
