"""The products service over HTTP: bounded retries, a connection queue, a cache and a breaker."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from urllib.parse import quote

import httpx
from cachetools import TTLCache

from app.clients.products.breaker import CircuitBreaker, CircuitState
from app.clients.products.catalog import (
    ProductLookup,
    ProductsCatalog,
    ProductStatus,
    StandaloneCatalog,
)
from app.clients.products.payload import (
    UnreadablePayload,
    flatten_product,
    parse_product_body,
    read_capped,
)
from app.core import metrics
from app.core.config import Settings
from app.core.context import request_id_var
from app.core.errors import ProductsUnavailable
from app.core.logging import MASK

logger = logging.getLogger(__name__)

_ACCEPT = "application/json, application/vnd.api+json"
# The catalog says "no such product" with these, as much as with a 404: an id it cannot
# parse (400, 422) or one it has retired (410). A healthy catalog talking.
_NOT_FOUND_STATUSES = frozenset({400, 404, 410, 422})
# Our credentials are refused: a configuration fault on our side, not a missing product.
_AUTH_STATUSES = frozenset({401, 403})
# The catalog as a whole is unwell (or refuses us): these count toward the circuit breaker, as
# does no answer at all. Any other answer is about the id the caller chose, and a caller must
# not open the circuit for everybody by choosing ids the catalog answers oddly.
_UNWELL_STATUSES = frozenset({429, *_AUTH_STATUSES})
# A gateway in front of the products service said it got no answer, so the request
# may never have reached it and asking again is safe. A 500 is the service's own verdict.
_RETRYABLE_STATUSES = frozenset({502, 503, 504})
# What the readiness probe asks for: an id no catalog has (a catalog of integer ids refuses
# it with 400 or 422, one of strings answers 404), so the answer says only whether the catalog
# answers us where the products are.
_PROBE_ID = "inventory-readiness-probe-0000"
# Look-ups are GETs: when the connection failed or the answer never came, asking again
# cannot do harm. `TimeoutError` is our own per-attempt deadline firing.
_RETRYABLE_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    TimeoutError,
)


def backoff_cap(base_seconds: float, max_seconds: float, retry: int) -> float:
    """The longest pause before retry number `retry` (0 for the first): doubling, capped."""
    return min(max_seconds, base_seconds * 2.0**retry)


def lookup_deadline_seconds(settings: Settings) -> float:
    """The longest the attempts of one look-up can take once a connection is free: every
    attempt times out and every pause is at its cap."""
    pauses = sum(
        backoff_cap(settings.products_backoff_seconds, settings.products_backoff_max_seconds, retry)
        for retry in range(settings.products_retries)
    )
    return (settings.products_retries + 1) * settings.products_timeout_seconds + pauses


def lookup_bound_seconds(settings: Settings) -> float:
    """The one deadline of a look-up, whatever happens: its time in line for a connection
    (at most PRODUCTS_POOL_TIMEOUT_SECONDS before the first attempt), its attempts, its
    pauses, and any wait for a connection before a retry, all together."""
    return settings.products_pool_timeout_seconds + lookup_deadline_seconds(settings)


class _CannotAnswer(Exception):
    """No verdict on the product. `counts` says whether it is the catalog's failure (toward the
    circuit breaker) or only ours, such as waiting too long for a free connection."""

    def __init__(self, reason: str, *, retryable: bool, counts: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable
        self.counts = counts


class _NoTurn(_CannotAnswer):
    """No attempt was made: no free connection in time, or the circuit opened meanwhile."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False, counts=False)


def split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """The URL without its `user:password@`, and those credentials as HTTP basic auth, so
    that the URL can be logged (httpx logs every request's URL) without them."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url, None
    bare = str(parsed.copy_with(username=None, password=None))
    return bare, httpx.BasicAuth(parsed.username, parsed.password)


def masked_url(url: str) -> str:
    """The URL as it may be shown: a password in it replaced by `***`."""
    parsed = httpx.URL(url)
    if not parsed.password:
        return url
    return str(parsed.copy_with(username=parsed.username, password=MASK))


class HttpProductsCatalog:
    """The products service over one shared `httpx.AsyncClient`.

    Each look-up gets a bounded number of attempts, each with its own timeout, with fully
    jittered exponential pauses between them, all under one deadline,
    `lookup_bound_seconds(settings)`: the wait in line for one of the
    `PRODUCTS_MAX_CONNECTIONS` connections (at most `PRODUCTS_POOL_TIMEOUT_SECONDS` before the
    first attempt, which never counts as the catalog failing) and every attempt, pause and
    wait before a retry together. No retry goes out once the circuit is open, and a look-up
    that got its connection only after the circuit opened does not ask at all. Found products
    are cached for a short while; concurrent look-ups of one id share one request; a circuit
    breaker stops asking a service that keeps failing.
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
        self._base_url, self._auth = split_credentials(settings.products_service_url)
        self._path = settings.products_path
        key = settings.products_api_key
        self._api_key = key.get_secret_value() if key is not None else None
        self._timeout = settings.products_timeout_seconds
        self._pool_timeout = settings.products_pool_timeout_seconds
        self._bound = lookup_bound_seconds(settings)
        self._retries = settings.products_retries
        self._backoff = settings.products_backoff_seconds
        self._backoff_max = settings.products_backoff_max_seconds
        self._sleep = sleep
        self._jitter = jitter
        # One slot per pooled connection: a look-up takes one before its deadline starts, so
        # the time spent queueing for a connection is never taken for the catalog's slowness.
        self._connections = asyncio.Semaphore(settings.products_max_connections)
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
        self._credentials_refused = False

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
                raise self._refused(product_id)
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
        """A look-up of an id no catalog has, where the products are: a catalog whose own
        `/health` is public but which refuses our key for products shows as `unauthorized`.
        Past the cache, the breaker and the connection queue: it says how things are now."""
        try:
            async with (
                asyncio.timeout(self._timeout),
                # Streamed and never read: only the status counts, whatever the body holds.
                self._client.stream(
                    "GET", self._url_of(_PROBE_ID), headers=self._headers(), auth=self._auth
                ) as response,
            ):
                status = response.status_code
        except (httpx.HTTPError, TimeoutError) as error:
            logger.info("products service probe got no answer: %s", type(error).__name__)
            return "unavailable"
        if status in _AUTH_STATUSES:
            return "unauthorized"
        if httpx.codes.is_success(status) or status in _NOT_FOUND_STATUSES:
            return "ok"
        logger.info("products service probe was answered %d", status)
        return "unavailable"

    def _refused(self, product_id: str) -> ProductsUnavailable:
        wait = self._breaker.seconds_until_half_open()
        if wait > 0:
            return ProductsUnavailable(
                "the products service failed repeatedly; not asking it for now",
                retry_after=wait,
                product_ids=[product_id],
            )
        return ProductsUnavailable(
            "the products service failed repeatedly; a probe is checking whether it is back",
            retry_after=self._backoff_max,
            product_ids=[product_id],
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
            if failure.counts:
                self._breaker.record_failure()
            else:
                self._breaker.release_probe()
            logger.warning("products service cannot answer for %r: %s", product_id, failure)
            raise ProductsUnavailable(
                f"the products service cannot answer for product {product_id!r}: {failure}",
                # While the circuit is open nobody will be asked before it half-opens.
                retry_after=self._breaker.seconds_until_half_open() or self._backoff_max,
                product_ids=[product_id],
            ) from failure
        except BaseException:
            self._breaker.release_probe()
            raise
        self._breaker.record_success()
        self._credentials_refused = False
        if self._cache is not None and found.status is ProductStatus.FOUND:
            self._cache[product_id] = found
        return found

    async def _attempts(self, product_id: str) -> ProductLookup:
        url = self._url_of(product_id)
        headers = self._headers()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._bound
        # The first wait in line is bounded on its own, so the attempts keep their whole time.
        queue_until = loop.time() + self._pool_timeout
        failed: _CannotAnswer | None = None
        retry = 0
        while True:
            try:
                status, body = await self._attempt(url, headers, queue_until, deadline)
                return self._verdict(product_id, status, body)
            except _NoTurn:
                # After a failed attempt, that failure is the verdict, not the lost turn.
                if failed is not None:
                    raise failed from None
                raise
            except _CannotAnswer as failure:
                circuit_open = self._breaker.state == "open"
                if not failure.retryable or retry == self._retries or circuit_open:
                    raise
                failed = failure
            # Full jitter: callers that failed together do not come back together.
            pause = self._jitter() * backoff_cap(self._backoff, self._backoff_max, retry)
            if loop.time() + pause >= deadline:
                raise failed
            await self._sleep(pause)
            queue_until = deadline
            retry += 1

    @asynccontextmanager
    async def _connection(self, queue_until: float) -> AsyncIterator[None]:
        """A turn at one of the pooled connections, waited for in order of arrival until
        `queue_until` (event loop time); none once the circuit has opened meanwhile."""
        try:
            async with asyncio.timeout_at(queue_until):
                await self._connections.acquire()
        except TimeoutError:
            raise _NoTurn(f"no free connection to it within {self._pool_timeout:g}s") from None
        try:
            if self._breaker.state == "open":
                raise _NoTurn("the circuit opened while it waited for a connection")
            yield
        finally:
            self._connections.release()

    async def _attempt(
        self, url: str, headers: dict[str, str], queue_until: float, deadline: float
    ) -> tuple[int, bytes]:
        """The status and, for a 200, the body (at most MAX_PRODUCT_BYTES) of one request."""
        async with self._connection(queue_until):
            ends = min(asyncio.get_running_loop().time() + self._timeout, deadline)
            try:
                # httpx's timeouts bound each phase (connect, every read); this bounds the
                # whole attempt, which keeps a slowly trickling answer within the deadline.
                async with (
                    asyncio.timeout_at(ends),
                    self._client.stream("GET", url, headers=headers, auth=self._auth) as response,
                ):
                    if response.status_code != httpx.codes.OK:
                        return response.status_code, b""
                    return response.status_code, await read_capped(response)
            except UnreadablePayload as refused:
                raise _CannotAnswer(str(refused), retryable=False, counts=False) from refused
            except _RETRYABLE_ERRORS as error:
                raise _CannotAnswer(
                    f"no answer ({type(error).__name__})", retryable=True, counts=True
                ) from error
            except httpx.HTTPError as error:
                raise _CannotAnswer(
                    f"request failed ({type(error).__name__})", retryable=False, counts=True
                ) from error

    def _verdict(self, product_id: str, status: int, body: bytes) -> ProductLookup:
        if status in _NOT_FOUND_STATUSES:
            return ProductLookup(product_id, ProductStatus.NOT_FOUND)
        if status in _AUTH_STATUSES:
            self._refuse_credentials(status)
        if status != httpx.codes.OK:
            raise _CannotAnswer(
                f"it answered {status}",
                retryable=status in _RETRYABLE_STATUSES,
                counts=status >= 500 or status in _UNWELL_STATUSES,
            )
        try:
            product = flatten_product(parse_product_body(body), product_id)
        except UnreadablePayload as refused:
            raise _CannotAnswer(str(refused), retryable=False, counts=False) from refused
        if product is None:
            raise _CannotAnswer(
                "it answered 200 with a body that is not a product", retryable=False, counts=False
            )
        if product["id"] != product_id:
            return ProductLookup(product_id, ProductStatus.NOT_FOUND, catalog_id=product["id"])
        return ProductLookup(product_id, ProductStatus.FOUND, product)

    def _refuse_credentials(self, status: int) -> None:
        # Loud, but once until the catalog accepts us again: every look-up fails alike.
        if not self._credentials_refused:
            self._credentials_refused = True
            logger.error(
                "the products service refuses our credentials (%d): check PRODUCTS_API_KEY "
                "and any user:password in PRODUCTS_SERVICE_URL; look-ups answer 503 until then",
                status,
            )
        raise _CannotAnswer(f"it refused our credentials ({status})", retryable=False, counts=True)

    def _url_of(self, product_id: str) -> str:
        return self._base_url + self._path.replace("{id}", quote(product_id, safe=""))

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": _ACCEPT,
            # A compressed answer could inflate far past what was read; products are small.
            "Accept-Encoding": "identity",
            "X-Request-ID": request_id_var.get(),
        }
        if self._api_key is not None:
            headers["X-API-KEY"] = self._api_key
        return headers


def _detached(lookup: ProductLookup) -> ProductLookup:
    """A copy whose product dict the caller may change without touching the cache or others."""
    if lookup.product is None:
        return lookup
    return replace(lookup, product=dict(lookup.product))


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one pooled client for the products service; the app lifespan opens and closes it.

    The catalog queues look-ups for its connections itself (`PRODUCTS_POOL_TIMEOUT_SECONDS`),
    so httpx's own pool wait is only a backstop.
    """
    seconds = settings.products_timeout_seconds
    connections = settings.products_max_connections
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=seconds,
            read=seconds,
            write=seconds,
            pool=settings.products_pool_timeout_seconds,
        ),
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
