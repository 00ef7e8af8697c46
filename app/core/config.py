"""Settings, read once from the environment or `.env`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_ignore_empty=True,  # `API_KEY=` counts as unset
        extra="ignore",
    )

    database_url: str = "sqlite:///./inventory.db"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    # PostgreSQL: how long to wait to open a connection, and for a pooled connection or one
    # statement (lock waits included), before answering 503; a hung server holds no request
    # for long. The second is generous: under contention, queueing for a row lock is normal.
    database_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    database_statement_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)

    api_key: SecretStr | None = None
    # (actor, key) pairs: an actor may hold several keys, so one can be rotated under one name.
    api_keys: Annotated[list[tuple[str, SecretStr]], NoDecode] = Field(default_factory=list)

    products_service_url: str | None = None
    products_api_key: SecretStr | None = None
    products_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    products_retries: int = Field(default=2, ge=0, le=10)
    products_backoff_seconds: float = Field(default=0.1, ge=0, le=10)
    products_backoff_max_seconds: float = Field(default=1.0, ge=0, le=60)
    products_cache_ttl_seconds: float = Field(default=30.0, ge=0, le=86_400)
    products_cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    products_circuit_failures: int = Field(default=5, ge=1, le=1000)
    products_circuit_reset_seconds: float = Field(default=30.0, gt=0, le=3600)
    products_path: str = "/products/{id}"
    # Look-ups beyond these connections queue (up to the pool timeout) rather than fail; more
    # connections cost CPU on every request in httpx's pool (docs/performance.md).
    products_max_connections: int = Field(default=20, ge=1, le=10_000)
    products_pool_timeout_seconds: float = Field(default=10.0, gt=0, le=600)

    # Requests in progress in one process beyond which new ones are answered 503 `overloaded`
    # at once instead of queueing without bound; 0 turns shedding off.
    max_requests_in_progress: int = Field(default=1000, ge=0, le=1_000_000)

    # How long a claimed key protects a request still in flight; a claim whose process died
    # is taken over after it. Longer than any request may run.
    idempotency_lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    idempotency_ttl_hours: float = Field(default=24.0, ge=24, le=24 * 365)

    # How long a reservation holds stock when its request names no `ttl_seconds`.
    reservation_ttl_seconds: int = Field(default=900, ge=1, le=86_400)
    # Reservations that ended (confirmed, released, expired) are forgotten after this long.
    reservation_retention_days: float = Field(default=30.0, gt=0, le=3650)
    # Events stay in the feed at least this long; deliveries are retried for at least 24 hours.
    events_retention_days: float = Field(default=7.0, ge=1, le=3650)
    # One delivery attempt, from connecting to the last byte of the answer.
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # The first retry of a failed delivery; each next one about twice as late, up to an hour.
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    # Hosts (names or addresses) that webhooks may reach although they are loopback,
    # private, link-local or metadata addresses.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # CA certificates (PEM) that HTTPS webhook receivers may also be signed by, besides the
    # system's: a private CA's receivers.
    webhook_ca_file: FilePath | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_unset(cls, value: object) -> object:
        # Header values arrive without surrounding blanks, so a key cannot keep them; and a
        # key that is only blanks is no key (`API_KEY=` counts as unset, from anywhere).
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return list(value.items())
        if not isinstance(value, str):
            return value
        pairs: list[tuple[str, str]] = []
        for entry in filter(None, (part.strip() for part in value.split(","))):
            name, sep, key = entry.partition(":")
            if not sep or not name.strip() or not key.strip():
                raise ValueError("must be comma-separated name:key pairs")
            pairs.append((name.strip(), key.strip()))
        return pairs

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip().lower() for host in value.split(",") if host.strip()]
        return value

    @field_validator("products_service_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("products_path")
    @classmethod
    def _path_template(cls, value: str) -> str:
        if not value.startswith("/") or value.count("{id}") != 1:
            raise ValueError("must start with / and hold {id} once, as in /products/{id}")
        return value

    @model_validator(mode="after")
    def _one_actor_per_key(self) -> Settings:
        # A key names its actor in the ledger: given to two actors, it would name either.
        actors: dict[str, str] = {}
        for actor, key in self.actor_keys():
            if actors.setdefault(key, actor) != actor:
                raise ValueError(
                    f"API_KEYS: one key is given to two actors, {actors[key]!r} and {actor!r}"
                )
        return self

    @model_validator(mode="after")
    def _backoff_cap(self) -> Settings:
        if self.products_backoff_max_seconds < self.products_backoff_seconds:
            raise ValueError("PRODUCTS_BACKOFF_MAX_SECONDS: must be >= PRODUCTS_BACKOFF_SECONDS")
        return self

    @property
    def idempotency_lease(self) -> timedelta:
        return timedelta(seconds=self.idempotency_lease_seconds)

    @property
    def idempotency_ttl(self) -> timedelta:
        return timedelta(hours=self.idempotency_ttl_hours)

    @property
    def reservation_ttl(self) -> timedelta:
        return timedelta(seconds=self.reservation_ttl_seconds)

    @property
    def reservation_retention(self) -> timedelta:
        return timedelta(days=self.reservation_retention_days)

    @property
    def events_retention(self) -> timedelta:
        return timedelta(days=self.events_retention_days)

    def actor_keys(self) -> list[tuple[str, str]]:
        """Every accepted key with the actor it stands for; an actor may have several."""
        keys = [(name, secret.get_secret_value()) for name, secret in self.api_keys]
        if self.api_key is not None:
            keys.append(("default", self.api_key.get_secret_value()))
        return keys


def load_settings() -> Settings:
    """The settings of the environment (and `.env`), or one clear line naming the bad one
    and an exit. Read afresh on each call: a process calls it once, at start-up."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a check across settings, whose message names the setting
            raise SystemExit(f"invalid setting {message}") from None
        name = str(first["loc"][0]).upper()
        raise SystemExit(f"invalid setting {name}: {message}") from None
