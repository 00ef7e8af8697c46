"""The products catalog as the inventory sees it: does a product exist, and what is said of it."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
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
from app.core.logging import MASK

logger = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]

_ACCEPT = "application/json, application/vnd.api+json"
# A product is a small document. What is read of an answer, and how deeply it may nest, is
# capped so that a broken or hostile catalog cannot make us hold, parse or echo a huge one.
MAX_PRODUCT_BYTES = 1024 * 1024
MAX_PRODUCT_DEPTH = 32
# The catalog says "no such product" with these, as much as with a 404: an id it cannot
# parse (400, 422) or one it has retired (410). A healthy catalog talking.
_NOT_FOUND_STATUSES = frozenset({400, 404, 410, 422})
# Our credentials are refused: a configuration fault on our side, not a missing product.
_AUTH_STATUSES = frozenset({401, 403})
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
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
    # NOT_FOUND because the catalog answered with another product: the id it gave.
    catalog_id: str | None = None


class ProductsCatalog(Protocol):
    """Where product look-ups go. Raises `ProductsUnavailable` when the catalog cannot answer."""

    @property
    def enabled(self) -> bool: ...

    async def lookup(self, product_id: str) -> ProductLookup: ...

    async def probe(self) -> str:
        """`ok`, `unauthorized`, `unavailable` or `disabled`, from a real request made now."""
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
    """No verdict on the product. `counts` says whether it is the catalog's failure (toward the
    circuit breaker) or only ours, such as waiting too long for a free connection."""

    def __init__(self, reason: str, *, retryable: bool, counts: bool = True) -> None:
        super().__init__(reason)
        self.retryable = retryable
        self.counts = counts


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

    Each look-up gets a bounded number of attempts, each with its own deadline, with
    fully jittered exponential pauses between them, so one look-up never takes longer
    than `lookup_deadline_seconds(settings)` once it has a connection. Waiting for one of
    the `PRODUCTS_MAX_CONNECTIONS` connections is a queue of its own, bounded by
    `PRODUCTS_POOL_TIMEOUT_SECONDS`, and never counts as the catalog failing. Found products
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
        try:
            async with (
                asyncio.timeout(self._timeout),
                # Streamed and never read: only the status counts, whatever the body holds.
                self._client.stream(
                    "GET", f"{self._base_url}/health", headers=self._headers(), auth=self._auth
                ) as response,
            ):
                status = response.status_code
        except (httpx.HTTPError, TimeoutError) as error:
            logger.info("products service probe got no answer: %s", type(error).__name__)
            return "unavailable"
        if status in _AUTH_STATUSES:
            return "unauthorized"
        if status >= 500 or status == httpx.codes.TOO_MANY_REQUESTS:
            return "unavailable"
        return "ok"

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
        url = self._base_url + self._path.replace("{id}", quote(product_id, safe=""))
        headers = self._headers()
        retry = 0
        while True:
            try:
                status, body = await self._attempt(url, headers)
                return self._verdict(product_id, status, body)
            except _CannotAnswer as failure:
                if not failure.retryable or retry == self._retries:
                    raise
            # Full jitter: callers that failed together do not come back together.
            await self._sleep(self._jitter() * backoff_cap(self._backoff, self._backoff_max, retry))
            retry += 1

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[None]:
        """A turn at one of the pooled connections, waited for in order of arrival."""
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._connections.acquire()
        except TimeoutError:
            raise _CannotAnswer(
                f"no free connection to it within {self._pool_timeout:g}s",
                retryable=False,
                counts=False,
            ) from None
        try:
            yield
        finally:
            self._connections.release()

    async def _attempt(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """The status and, for a 200, the body (at most MAX_PRODUCT_BYTES) of one request."""
        async with self._connection():
            try:
                # httpx's timeouts bound each phase (connect, every read); this bounds the
                # whole attempt, which keeps a slowly trickling answer within the deadline.
                async with (
                    asyncio.timeout(self._timeout),
                    self._client.stream("GET", url, headers=headers, auth=self._auth) as response,
                ):
                    if response.status_code != httpx.codes.OK:
                        return response.status_code, b""
                    return response.status_code, await _read_capped(response)
            except _RETRYABLE_ERRORS as error:
                raise _CannotAnswer(
                    f"no answer ({type(error).__name__})", retryable=True
                ) from error
            except httpx.HTTPError as error:
                raise _CannotAnswer(
                    f"request failed ({type(error).__name__})", retryable=False
                ) from error

    def _verdict(self, product_id: str, status: int, body: bytes) -> ProductLookup:
        if status in _NOT_FOUND_STATUSES:
            return ProductLookup(product_id, ProductStatus.NOT_FOUND)
        if status in _AUTH_STATUSES:
            self._refuse_credentials(status)
        if status != httpx.codes.OK:
            raise _CannotAnswer(f"it answered {status}", retryable=status in _RETRYABLE_STATUSES)
        product = flatten_product(parse_product_body(body), product_id)
        if product is None:
            raise _CannotAnswer(
                "it answered 200 with a body that is not a product", retryable=False
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
        raise _CannotAnswer(f"it refused our credentials ({status})", retryable=False)

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


async def _read_capped(response: httpx.Response) -> bytes:
    """The raw body, refused when it is larger than MAX_PRODUCT_BYTES or compressed.

    We ask for `identity`; a catalog that compresses anyway is not inflated at all, so a
    small answer cannot unpack into gigabytes.
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _CannotAnswer(f"it answered with {encoding} encoding", retryable=False)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_PRODUCT_BYTES:
        raise _CannotAnswer(f"its answer is larger than {MAX_PRODUCT_BYTES} bytes", retryable=False)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > MAX_PRODUCT_BYTES:
            raise _CannotAnswer(
                f"its answer is larger than {MAX_PRODUCT_BYTES} bytes", retryable=False
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_product_body(body: bytes) -> object:
    """Strict JSON (UTF-8, no NaN or Infinity) that we can hand on unchanged: nested at most
    MAX_PRODUCT_DEPTH deep, finite numbers, and strings that UTF-8 can encode. Anything
    else raises `_CannotAnswer`, so nothing the catalog says can fail a response of ours."""
    try:
        parsed: object = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise _CannotAnswer(
            "it answered 200 with a body that is not JSON", retryable=False
        ) from error
    problem = _unrepresentable(parsed)
    if problem is not None:
        raise _CannotAnswer(f"it answered 200 with {problem}", retryable=False)
    return parsed


def _unrepresentable(document: object) -> str | None:
    """What in a parsed JSON document we could not echo, or None. Iterative, so depth is ours
    to bound rather than the interpreter's recursion limit."""
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_PRODUCT_DEPTH:
                return f"a body nested deeper than {MAX_PRODUCT_DEPTH} levels"
            members = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((member, depth + 1) for member in members)
        elif isinstance(value, str) and _LONE_SURROGATE.search(value):
            return "a string holding a lone surrogate"
        elif isinstance(value, float) and not math.isfinite(value):
            return "a number too large to represent"
    return None


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


async def lookup_all(
    catalog: ProductsCatalog, product_ids: Iterable[str]
) -> dict[str, ProductLookup]:
    """Every product looked up at once, by product id.

    No limit of its own: the catalog's connection queue orders look-ups across all requests,
    so a purchase of many products waits about as long as one of few.

    All or nothing: when the catalog cannot answer for any of them this raises
    `ProductsUnavailable` naming them, with the longest Retry-After among the failures, so a
    caller who waits that long is not refused again. NOT_FOUND look-ups are returned; what
    they mean (a 422, usually) is the caller's business.
    """
    unique_ids = list(dict.fromkeys(product_ids))
    outcomes: list[ProductLookup | BaseException]
    if len(unique_ids) == 1:
        # The usual purchase: one product, so no task to spawn and no extra turn of the loop.
        outcomes = [await _outcome(catalog.lookup(unique_ids[0]))]
    else:
        outcomes = await asyncio.gather(
            *(catalog.lookup(product_id) for product_id in unique_ids), return_exceptions=True
        )
    lookups: dict[str, ProductLookup] = {}
    failures: dict[str, ProductsUnavailable] = {}
    for product_id, outcome in zip(unique_ids, outcomes, strict=True):
        if isinstance(outcome, ProductsUnavailable):
            failures[product_id] = outcome
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            lookups[product_id] = outcome
    if failures:
        named = ", ".join(repr(product_id) for product_id in failures)
        some = len(failures) < len(unique_ids)
        share = f" ({len(failures)} of {len(unique_ids)})" if some else ""
        raise ProductsUnavailable(
            f"The products service cannot answer for {named}{share}; nothing was changed.",
            retry_after=max(failure.retry_after for failure in failures.values()),
            product_ids=list(failures),
        )
    return lookups


async def _outcome(lookup: Awaitable[ProductLookup]) -> ProductLookup | BaseException:
    """What `asyncio.gather(..., return_exceptions=True)` would have made of one look-up."""
    try:
        return await lookup
    except Exception as error:
        return error
