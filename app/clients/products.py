"""The products catalog as the inventory sees it: does a product exist, and what is said of it."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx
from cachetools import TTLCache

from app.core import metrics
from app.core.config import Settings
from app.core.context import request_id_var
from app.core.errors import ProductsUnavailable

logger = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]

_ACCEPT = "application/json, application/vnd.api+json"
# A gateway in front of the products service said it got no answer, so the request
# may never have reached it and asking again is safe. A 500 is the service's own verdict.
_RETRYABLE_STATUSES = frozenset({502, 503, 504})
# Look-ups are GETs: when the connection failed or the answer never came, asking again
# cannot do harm. `TimeoutError` is our own per-attempt deadline firing.
_RETRYABLE_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    TimeoutError,
)
# A body made of these JSON:API top-level members only is an envelope around the product.
_DOCUMENT_MEMBERS = frozenset({"data", "meta", "links", "included", "jsonapi"})
# A `data` object made of these members only is a JSON:API resource object.
_RESOURCE_MEMBERS = frozenset({"id", "lid", "type", "attributes", "relationships", "links", "meta"})


class ProductStatus(enum.Enum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    UNCHECKED = "unchecked"  # standalone mode: nobody was asked


@dataclass(frozen=True, slots=True)
class ProductLookup:
    product_id: str
    status: ProductStatus
    product: dict[str, Any] | None = field(default=None)


class ProductsCatalog(Protocol):
    """Where product look-ups go. Raises `ProductsUnavailable` when the catalog cannot answer."""

    @property
    def enabled(self) -> bool: ...

    async def lookup(self, product_id: str) -> ProductLookup: ...

    async def probe(self) -> str:
        """`ok`, `unavailable` or `disabled`, from a real request made now."""
        ...


class StandaloneCatalog:
    """No products service configured: nothing is checked and nothing is known."""

    enabled = False

    async def lookup(self, product_id: str) -> ProductLookup:
        return ProductLookup(product_id, ProductStatus.UNCHECKED)

    async def probe(self) -> str:
        return "disabled"


def backoff_cap(base_seconds: float, max_seconds: float, retry: int) -> float:
    """The longest pause before retry number `retry` (0 for the first): doubling, capped."""
    return min(max_seconds, base_seconds * 2.0**retry)


def lookup_deadline_seconds(settings: Settings) -> float:
    """The longest one look-up can take: every attempt times out and every pause is at its cap."""
    pauses = sum(
        backoff_cap(settings.products_backoff_seconds, settings.products_backoff_max_seconds, retry)
        for retry in range(settings.products_retries)
    )
    return (settings.products_retries + 1) * settings.products_timeout_seconds + pauses


def flatten_product(body: object, product_id: str) -> dict[str, Any] | None:
    """One flat product from a plain, `{"data": …}` or JSON:API body; None if it holds none.

    The `id` is always a string: the body's own id (integers become their decimal string),
    or the id that was asked for when the body carries none.
    """
    if not isinstance(body, dict):
        return None
    resource: object = body
    # Only a body that is nothing but an envelope is unwrapped, so a plain product that
    # happens to have a field called `data` stays what it is.
    if "data" in body and body.keys() <= _DOCUMENT_MEMBERS:
        resource = body["data"]
    if not isinstance(resource, dict):
        return None
    attributes = resource.get("attributes")
    if isinstance(attributes, dict) and resource.keys() <= _RESOURCE_MEMBERS:
        product = dict(attributes)
    else:
        product = dict(resource)
    product["id"] = _id_string(resource.get("id"), product_id)
    return product


def _id_string(raw: object, fallback: str) -> str:
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return fallback


class CircuitBreaker:
    """Stops calling a products service that keeps failing; one probe later finds out if it is back.

    closed: every look-up goes out; `failure_threshold` failures in a row open it.
    open: nothing goes out for `reset_seconds`.
    half_open: the first look-up goes out as the probe, the others are refused until it
    answers; its success closes the circuit, its failure opens it again.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failure_threshold = failure_threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_out = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return "closed"
        return "open" if self.seconds_until_half_open() > 0 else "half_open"

    def seconds_until_half_open(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._reset_seconds - self._clock())

    def try_acquire(self) -> bool:
        """Whether a look-up may go out now; in half_open only the probe may."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._probe_out:
            return False
        self._probe_out = True
        return True

    def record_success(self) -> None:
        if self._opened_at is not None:
            logger.info("products circuit closed: the service answers again")
        self._failures = 0
        self._opened_at = None
        self._probe_out = False

    def record_failure(self) -> None:
        self._failures += 1
        self._probe_out = False
        if self._failures >= self._failure_threshold:
            self._opened_at = self._clock()
            logger.warning(
                "products circuit open for %ss after %d failed look-ups",
                self._reset_seconds,
                self._failures,
            )

    def release_probe(self) -> None:
        """The probe ended without a verdict on the service (cancelled, or a bug of ours)."""
        self._probe_out = False


class _CannotAnswer(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class HttpProductsCatalog:
    """The products service over one shared `httpx.AsyncClient`.

    Each look-up gets a bounded number of attempts, each with its own deadline, with
    fully jittered exponential pauses between them, so one look-up never takes longer
    than `lookup_deadline_seconds(settings)`. Found products are cached for a short
    while; concurrent look-ups of one id share one request; a circuit breaker stops
    asking a service that keeps failing.
    """

    enabled = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if settings.products_service_url is None:
            raise ValueError("HttpProductsCatalog needs PRODUCTS_SERVICE_URL")
        self._client = client
        # Absolute URLs, so the catalog does not depend on how the shared client was built.
        self._base_url = settings.products_service_url
        key = settings.products_api_key
        self._api_key = key.get_secret_value() if key is not None else None
        self._timeout = settings.products_timeout_seconds
        self._retries = settings.products_retries
        self._backoff = settings.products_backoff_seconds
        self._backoff_max = settings.products_backoff_max_seconds
        self._sleep = sleep
        self._jitter = jitter
        self._breaker = CircuitBreaker(
            failure_threshold=settings.products_circuit_failures,
            reset_seconds=settings.products_circuit_reset_seconds,
            clock=clock,
        )
        # TTLCache refuses every insert when maxsize is 0, so "no cache" is no cache object.
        caching = settings.products_cache_size > 0 and settings.products_cache_ttl_seconds > 0
        self._cache: TTLCache[str, ProductLookup] | None = (
            TTLCache(
                maxsize=settings.products_cache_size,
                ttl=settings.products_cache_ttl_seconds,
                timer=clock,
            )
            if caching
            else None
        )
        self._in_flight: dict[str, asyncio.Task[ProductLookup]] = {}

    @property
    def circuit_state(self) -> CircuitState:
        return self._breaker.state

    async def lookup(self, product_id: str) -> ProductLookup:
        cached = self._cache.get(product_id) if self._cache is not None else None
        if cached is not None:
            metrics.count_product_lookup("cache_hit")
            return _detached(cached)
        task = self._in_flight.get(product_id)
        if task is None:
            if not self._breaker.try_acquire():
                metrics.count_product_lookup("unavailable")
                raise self._refused()
            # The task copies the current context: the first caller's request id is the
            # one forwarded for everybody who joins this look-up.
            task = asyncio.create_task(self._fetch(product_id))
            self._in_flight[product_id] = task
            task.add_done_callback(partial(self._forget, product_id))
        try:
            # Shielded: one caller giving up must not cancel the answer the others wait for.
            found = _detached(await asyncio.shield(task))
        except ProductsUnavailable:
            metrics.count_product_lookup("unavailable")
            raise
        metrics.count_product_lookup(
            "found" if found.status is ProductStatus.FOUND else "not_found"
        )
        return found

    async def probe(self) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.get(f"{self._base_url}/health", headers=self._headers())
        except (httpx.HTTPError, TimeoutError) as error:
            logger.info("products service probe got no answer: %s", type(error).__name__)
            return "unavailable"
        return "ok"

    def _refused(self) -> ProductsUnavailable:
        wait = self._breaker.seconds_until_half_open()
        if wait > 0:
            return ProductsUnavailable(
                "the products service failed repeatedly; not asking it for now", retry_after=wait
            )
        return ProductsUnavailable(
            "the products service failed repeatedly; a probe is checking whether it is back",
            retry_after=self._backoff_max,
        )

    def _forget(self, product_id: str, task: asyncio.Task[ProductLookup]) -> None:
        del self._in_flight[product_id]
        # Mark the outcome as seen even when every waiter gave up, so asyncio does not
        # report an exception that was never retrieved.
        if not task.cancelled():
            task.exception()

    async def _fetch(self, product_id: str) -> ProductLookup:
        try:
            found = await self._attempts(product_id)
        except _CannotAnswer as failure:
            self._breaker.record_failure()
            logger.warning("products service cannot answer for %r: %s", product_id, failure)
            raise ProductsUnavailable(
                f"the products service cannot answer for product {product_id!r}: {failure}",
                # While the circuit is open nobody will be asked before it half-opens.
                retry_after=self._breaker.seconds_until_half_open() or self._backoff_max,
            ) from failure
        except BaseException:
            self._breaker.release_probe()
            raise
        self._breaker.record_success()
        if self._cache is not None and found.status is ProductStatus.FOUND:
            self._cache[product_id] = found
        return found

    async def _attempts(self, product_id: str) -> ProductLookup:
        url = f"{self._base_url}/products/{quote(product_id, safe='')}"
        headers = self._headers()
        retry = 0
        while True:
            try:
                return await self._attempt(url, product_id, headers)
            except _CannotAnswer as failure:
                if not failure.retryable or retry == self._retries:
                    raise
            # Full jitter: callers that failed together do not come back together.
            await self._sleep(self._jitter() * backoff_cap(self._backoff, self._backoff_max, retry))
            retry += 1

    async def _attempt(self, url: str, product_id: str, headers: dict[str, str]) -> ProductLookup:
        try:
            # httpx's timeouts bound each phase (connect, every read); this bounds the whole
            # attempt, which keeps a slowly trickling answer within the look-up deadline.
            async with asyncio.timeout(self._timeout):
                response = await self._client.get(url, headers=headers)
        except _RETRYABLE_ERRORS as error:
            raise _CannotAnswer(f"no answer ({type(error).__name__})", retryable=True) from error
        except httpx.HTTPError as error:
            raise _CannotAnswer(
                f"request failed ({type(error).__name__})", retryable=False
            ) from error
        if response.status_code == httpx.codes.NOT_FOUND:
            return ProductLookup(product_id, ProductStatus.NOT_FOUND)
        if response.status_code != httpx.codes.OK:
            raise _CannotAnswer(
                f"it answered {response.status_code}",
                retryable=response.status_code in _RETRYABLE_STATUSES,
            )
        try:
            body = response.json()
        except ValueError as error:  # invalid JSON and undecodable bytes are both ValueErrors
            raise _CannotAnswer(
                "it answered 200 with a body that is not JSON", retryable=False
            ) from error
        product = flatten_product(body, product_id)
        if product is None:
            raise _CannotAnswer(
                "it answered 200 with a body that is not a product", retryable=False
            )
        return ProductLookup(product_id, ProductStatus.FOUND, product)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": _ACCEPT, "X-Request-ID": request_id_var.get()}
        if self._api_key is not None:
            headers["X-API-KEY"] = self._api_key
        return headers


def _detached(lookup: ProductLookup) -> ProductLookup:
    """A copy whose product dict the caller may change without touching the cache or others."""
    if lookup.product is None:
        return lookup
    return replace(lookup, product=dict(lookup.product))


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one pooled client for the products service; the app lifespan opens and closes it."""
    seconds = settings.products_timeout_seconds
    connections = settings.products_max_connections
    return httpx.AsyncClient(
        base_url=settings.products_service_url or "",
        timeout=httpx.Timeout(connect=seconds, read=seconds, write=seconds, pool=seconds),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def build_catalog(settings: Settings, client: httpx.AsyncClient | None) -> ProductsCatalog:
    """The catalog the settings ask for: standalone when no products service is configured."""
    if settings.products_service_url is None:
        return StandaloneCatalog()
    if client is None:
        raise ValueError(
            "PRODUCTS_SERVICE_URL is set, so the products catalog needs an HTTP client"
        )
    return HttpProductsCatalog(client, settings)


async def lookup_all(
    catalog: ProductsCatalog, product_ids: Iterable[str], *, concurrency: int
) -> dict[str, ProductLookup]:
    """Every product looked up, at most `concurrency` at a time, by product id.

    All or nothing: when the catalog cannot answer for any of them this raises
    `ProductsUnavailable` with the longest Retry-After among the failures, so a caller who
    waits that long is not refused again. NOT_FOUND look-ups are returned; what they mean
    (a 422, usually) is the caller's business.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    unique_ids = list(dict.fromkeys(product_ids))
    gate = asyncio.Semaphore(concurrency)

    async def lookup_one(product_id: str) -> ProductLookup:
        async with gate:
            return await catalog.lookup(product_id)

    outcomes: list[ProductLookup | BaseException]
    if len(unique_ids) == 1:
        # The usual purchase: one product, so no task to spawn and no extra turn of the loop.
        outcomes = [await _outcome(catalog.lookup(unique_ids[0]))]
    else:
        outcomes = await asyncio.gather(
            *(lookup_one(product_id) for product_id in unique_ids), return_exceptions=True
        )
    lookups: dict[str, ProductLookup] = {}
    failures: list[ProductsUnavailable] = []
    for product_id, outcome in zip(unique_ids, outcomes, strict=True):
        if isinstance(outcome, ProductsUnavailable):
            failures.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            lookups[product_id] = outcome
    if failures:
        raise ProductsUnavailable(
            f"the products service cannot answer for {len(failures)} of {len(unique_ids)} products",
            retry_after=max(failure.retry_after for failure in failures),
        )
    return lookups


async def _outcome(lookup: Awaitable[ProductLookup]) -> ProductLookup | BaseException:
    """What `asyncio.gather(..., return_exceptions=True)` would have made of one look-up."""
    try:
        return await lookup
    except Exception as error:
        return error
