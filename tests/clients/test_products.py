"""Unit tests of the products client, with the products service mocked by respx."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from app.clients.products import (
    HttpProductsCatalog,
    ProductLookup,
    ProductStatus,
    StandaloneCatalog,
    build_catalog,
    build_http_client,
    lookup_all,
    lookup_deadline_seconds,
)
from app.clients.products.breaker import CircuitState
from app.clients.products.payload import flatten_product
from app.core.config import Settings
from app.core.context import request_id_var
from app.core.errors import ProductsUnavailable

BASE = "http://products.test"
RESET_SECONDS = 30.0
_TLS = ssl.create_default_context()


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "products_service_url": BASE,
        "products_api_key": None,
        "products_timeout_seconds": 0.5,
        "products_retries": 2,
        "products_backoff_seconds": 0.1,
        "products_backoff_max_seconds": 1.0,
        "products_cache_ttl_seconds": 30.0,
        "products_cache_size": 100,
        "products_circuit_failures": 3,
        "products_circuit_reset_seconds": RESET_SECONDS,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordedSleeps:
    """Stands in for asyncio.sleep: remembers the pauses instead of taking them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def products_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    # One TLS context for all tests: building one per client costs more than most tests.
    async with httpx.AsyncClient(verify=_TLS) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


CatalogFactory = Callable[..., HttpProductsCatalog]


@pytest.fixture
def make_catalog(
    http_client: httpx.AsyncClient, clock: FakeClock, sleeps: RecordedSleeps
) -> CatalogFactory:
    def make(*, jitter: Callable[[], float] = lambda: 1.0, **settings: Any) -> HttpProductsCatalog:
        return HttpProductsCatalog(
            http_client, make_settings(**settings), clock=clock, sleep=sleeps, jitter=jitter
        )

    return make


def product(product_id: str = "42", **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"id": product_id, "name": "Mug", "price": 9.5, **fields})


class HeldAnswers:
    """A respx side effect that answers `answer(request)` only once `release()` is called."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self._answer = answer
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await self._released.wait()
        return self._answer(request)


def circuit_state(catalog: HttpProductsCatalog) -> CircuitState:
    """Read afresh each time: an assertion on the property would narrow it for the type checker."""
    return catalog.circuit_state


async def failing_lookups(catalog: HttpProductsCatalog, count: int) -> None:
    for _ in range(count):
        with pytest.raises(ProductsUnavailable):
            await catalog.lookup("42")


# --- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"id": "42", "name": "Mug", "price": 9.5}, id="plain"),
        pytest.param({"data": {"id": "42", "name": "Mug", "price": 9.5}}, id="data-envelope"),
        pytest.param(
            {
                "data": {
                    "id": "42",
                    "type": "products",
                    "attributes": {"name": "Mug", "price": 9.5},
                },
                "links": {"self": "/products/42"},
            },
            id="jsonapi",
        ),
    ],
)
async def test_every_body_shape_flattens_to_the_same_product(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, body: dict[str, Any]
) -> None:
    products_api.get("/products/42").respond(200, json=body)

    found = await make_catalog().lookup("42")

    assert found == ProductLookup(
        "42", ProductStatus.FOUND, {"id": "42", "name": "Mug", "price": 9.5}
    )


@pytest.mark.parametrize(
    ("body", "expected_id"),
    [
        pytest.param({"id": 7, "name": "Mug"}, "7", id="integer-id"),
        pytest.param({"data": {"id": 7, "type": "p", "attributes": {}}}, "7", id="jsonapi-integer"),
        pytest.param({"name": "Mug"}, "0007", id="missing-id"),
        pytest.param({"id": "sku-7"}, "sku-7", id="string-id"),
    ],
)
def test_product_id_is_always_a_string(body: dict[str, Any], expected_id: str) -> None:
    flat = flatten_product(body, "0007")

    assert flat is not None
    assert flat["id"] == expected_id


@pytest.mark.parametrize(
    "raw_id",
    [None, "", True, False, 1.5, 7.0, {"a": 1}, ["7"]],
    ids=["null", "empty", "true", "false", "fraction", "float", "object", "list"],
)
def test_a_body_whose_id_is_no_id_holds_no_product(raw_id: object) -> None:
    assert flatten_product({"id": raw_id, "name": "Mug"}, "7") is None
    assert flatten_product({"data": {"id": raw_id, "type": "p", "attributes": {}}}, "7") is None


def test_plain_product_with_a_data_field_is_not_unwrapped() -> None:
    body = {"id": "1", "name": "Disk", "data": {"capacity": "1TB"}}

    assert flatten_product(body, "1") == body


def test_plain_product_with_an_attributes_field_is_not_flattened() -> None:
    body = {"data": {"id": "1", "name": "Shirt", "attributes": {"colour": "red"}}}

    assert flatten_product(body, "1") == {
        "id": "1",
        "name": "Shirt",
        "attributes": {"colour": "red"},
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([{"id": "42"}], id="list"),
        pytest.param("42", id="string"),
        pytest.param(None, id="null"),
        pytest.param({"data": None}, id="null-data"),
        pytest.param({"data": [{"id": "42"}]}, id="collection"),
    ],
)
async def test_200_whose_json_is_not_a_product_cannot_answer(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, body: object
) -> None:
    route = products_api.get("/products/42").respond(
        200, content=json.dumps(body), content_type="application/json"
    )

    with pytest.raises(ProductsUnavailable, match="not a product"):
        await make_catalog().lookup("42")
    assert route.call_count == 1


async def test_200_that_is_not_json_cannot_answer_and_is_not_retried(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get("/products/42").respond(200, text="<html>oops</html>")

    with pytest.raises(ProductsUnavailable, match="not JSON"):
        await make_catalog().lookup("42")
    assert route.call_count == 1


# --- request ------------------------------------------------------------------------------


async def test_request_carries_api_key_request_id_and_accept(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get("/products/42").mock(return_value=product())
    token = request_id_var.set("req-123")
    try:
        await make_catalog(products_api_key="s3cret").lookup("42")
    finally:
        request_id_var.reset(token)

    headers = route.calls.last.request.headers
    assert headers["X-API-KEY"] == "s3cret"
    assert headers["X-Request-ID"] == "req-123"
    assert headers["Accept"] == "application/json, application/vnd.api+json"


async def test_no_api_key_header_when_none_is_configured(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get("/products/42").mock(return_value=product())

    await make_catalog().lookup("42")

    assert "X-API-KEY" not in route.calls.last.request.headers


async def test_product_id_is_escaped_into_one_path_segment(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get(url__regex=r".*").mock(return_value=product("a/b"))

    await make_catalog().lookup("a/b")

    assert route.calls.last.request.url.raw_path == b"/products/a%2Fb"


# --- statuses and retries -------------------------------------------------------------------


async def test_404_is_not_found_and_not_cached(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get("/products/42").respond(404)
    catalog = make_catalog()

    assert await catalog.lookup("42") == ProductLookup("42", ProductStatus.NOT_FOUND)
    await catalog.lookup("42")
    assert route.call_count == 2


@pytest.mark.parametrize("status", [500, 429, 301, 201])
async def test_other_statuses_cannot_answer_without_retrying(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, status: int
) -> None:
    route = products_api.get("/products/42").respond(status)

    with pytest.raises(ProductsUnavailable, match=f"answered {status}") as raised:
        await make_catalog().lookup("42")
    assert route.call_count == 1
    assert raised.value.status == 503
    assert raised.value.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.Response(502), id="502"),
        pytest.param(httpx.Response(503), id="503"),
        pytest.param(httpx.Response(504), id="504"),
        pytest.param(httpx.ConnectError("refused"), id="connect-error"),
        pytest.param(httpx.ReadTimeout("slow"), id="read-timeout"),
        pytest.param(httpx.ConnectTimeout("slow"), id="connect-timeout"),
        pytest.param(httpx.RemoteProtocolError("dropped"), id="dropped-connection"),
    ],
)
async def test_safe_failures_are_retried_until_an_answer(
    products_api: respx.MockRouter,
    make_catalog: CatalogFactory,
    failure: httpx.Response | Exception,
) -> None:
    route = products_api.get("/products/42").mock(side_effect=[failure, failure, product()])

    found = await make_catalog(products_retries=2).lookup("42")

    assert found.status is ProductStatus.FOUND
    assert route.call_count == 3


async def test_retries_are_bounded(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get("/products/42").respond(503)

    with pytest.raises(ProductsUnavailable, match="answered 503"):
        await make_catalog(products_retries=3).lookup("42")
    assert route.call_count == 4


async def test_no_retries_when_set_to_zero(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get("/products/42").mock(side_effect=httpx.ConnectError("refused"))

    with pytest.raises(ProductsUnavailable, match="ConnectError"):
        await make_catalog(products_retries=0).lookup("42")
    assert route.call_count == 1


async def test_backoff_doubles_up_to_its_cap(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, sleeps: RecordedSleeps
) -> None:
    products_api.get("/products/42").respond(503)
    catalog = make_catalog(
        products_retries=4, products_backoff_seconds=0.1, products_backoff_max_seconds=0.3
    )

    with pytest.raises(ProductsUnavailable):
        await catalog.lookup("42")

    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.3, 0.3])


async def test_backoff_is_fully_jittered(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, sleeps: RecordedSleeps
) -> None:
    products_api.get("/products/42").respond(503)
    draws = iter([0.0, 0.5, 0.25])

    with pytest.raises(ProductsUnavailable):
        await make_catalog(products_retries=3, jitter=lambda: next(draws)).lookup("42")

    assert sleeps.delays == pytest.approx([0.0, 0.1, 0.1])


def test_deadline_is_every_attempt_timing_out_plus_every_capped_pause() -> None:
    settings = make_settings(
        products_timeout_seconds=0.5,
        products_retries=3,
        products_backoff_seconds=0.1,
        products_backoff_max_seconds=0.25,
    )

    assert lookup_deadline_seconds(settings) == pytest.approx(4 * 0.5 + 0.1 + 0.2 + 0.25)
    assert lookup_deadline_seconds(make_settings(products_retries=0)) == pytest.approx(0.5)


async def test_an_answer_that_never_comes_is_cut_off_at_the_attempt_timeout(
    products_api: respx.MockRouter, http_client: httpx.AsyncClient
) -> None:
    attempts: list[httpx.Request] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        await asyncio.sleep(30)  # a mocked transport ignores httpx's own timeouts
        return product()

    products_api.get("/products/42").mock(side_effect=hang)
    settings = make_settings(
        products_timeout_seconds=0.05,
        products_retries=1,
        products_backoff_seconds=0.01,
        products_backoff_max_seconds=0.01,
    )
    catalog = HttpProductsCatalog(http_client, settings)

    started = time.monotonic()
    with pytest.raises(ProductsUnavailable, match="TimeoutError"):
        await catalog.lookup("42")

    assert time.monotonic() - started <= lookup_deadline_seconds(settings) + 0.2
    assert len(attempts) == 2


# --- circuit breaker ----------------------------------------------------------------------


async def test_circuit_opens_after_consecutive_failed_lookups(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get("/products/42").respond(500)
    catalog = make_catalog(products_circuit_failures=3)

    await failing_lookups(catalog, 2)
    assert circuit_state(catalog) == "closed"
    with pytest.raises(ProductsUnavailable) as opening:
        await catalog.lookup("42")

    assert circuit_state(catalog) == "open"
    assert opening.value.retry_after == RESET_SECONDS
    assert route.call_count == 3


async def test_failed_lookup_counts_once_however_many_attempts(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get("/products/42").respond(503)
    catalog = make_catalog(products_circuit_failures=2, products_retries=3)

    await failing_lookups(catalog, 1)

    assert route.call_count == 4
    assert circuit_state(catalog) == "closed"


async def test_open_circuit_refuses_at_once_with_the_time_left(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, clock: FakeClock
) -> None:
    route = products_api.get(url__regex=r"/products/.*").respond(500)
    catalog = make_catalog(products_circuit_failures=1)
    await failing_lookups(catalog, 1)

    clock.advance(12)
    with pytest.raises(ProductsUnavailable, match="not asking") as refused:
        await catalog.lookup("other")

    assert refused.value.retry_after == 18
    assert refused.value.headers["Retry-After"] == "18"
    assert route.call_count == 1


async def test_half_open_probe_success_closes_the_circuit(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, clock: FakeClock
) -> None:
    route = products_api.get("/products/42").mock(side_effect=[httpx.Response(500), product()])
    catalog = make_catalog(products_circuit_failures=1)
    await failing_lookups(catalog, 1)

    clock.advance(RESET_SECONDS)
    assert circuit_state(catalog) == "half_open"
    found = await catalog.lookup("42")

    assert found.status is ProductStatus.FOUND
    assert circuit_state(catalog) == "closed"
    assert route.call_count == 2


async def test_half_open_probe_failure_opens_the_circuit_again(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, clock: FakeClock
) -> None:
    products_api.get("/products/42").respond(500)
    catalog = make_catalog(products_circuit_failures=2)
    await failing_lookups(catalog, 2)

    clock.advance(RESET_SECONDS + 5)
    with pytest.raises(ProductsUnavailable) as probe_failure:
        await catalog.lookup("42")

    assert circuit_state(catalog) == "open"
    assert probe_failure.value.retry_after == RESET_SECONDS
    clock.advance(RESET_SECONDS - 1)
    assert circuit_state(catalog) == "open"


async def test_half_open_lets_only_the_probe_through(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, clock: FakeClock
) -> None:
    slow_answer = HeldAnswers(lambda _: product())
    route = products_api.get("/products/42").respond(500)
    other = products_api.get("/products/7").mock(return_value=product("7"))
    catalog = make_catalog(products_circuit_failures=1)
    await failing_lookups(catalog, 1)
    route.mock(side_effect=slow_answer)
    clock.advance(RESET_SECONDS)

    probe = asyncio.create_task(catalog.lookup("42"))
    await asyncio.sleep(0)
    with pytest.raises(ProductsUnavailable, match="probe"):
        await catalog.lookup("7")
    slow_answer.release()

    assert (await probe).status is ProductStatus.FOUND
    assert other.call_count == 0
    assert (await catalog.lookup("7")).status is ProductStatus.FOUND


async def test_probe_that_ends_without_a_verdict_lets_the_next_lookup_probe(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, clock: FakeClock
) -> None:
    products_api.get("/products/42").mock(
        side_effect=[httpx.Response(500), RuntimeError("bug"), product()]
    )
    catalog = make_catalog(products_circuit_failures=1)
    await failing_lookups(catalog, 1)
    clock.advance(RESET_SECONDS)

    with pytest.raises(RuntimeError):
        await catalog.lookup("42")

    assert circuit_state(catalog) == "half_open"
    assert (await catalog.lookup("42")).status is ProductStatus.FOUND
    assert circuit_state(catalog) == "closed"


async def test_not_found_counts_as_success_for_the_circuit(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    products_api.get("/products/42").respond(500)
    products_api.get("/products/404").respond(404)
    catalog = make_catalog(products_circuit_failures=3)

    await failing_lookups(catalog, 2)
    await catalog.lookup("404")
    await failing_lookups(catalog, 2)

    assert circuit_state(catalog) == "closed"


async def test_cached_products_are_served_while_the_circuit_is_open(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    products_api.get("/products/42").mock(return_value=product())
    products_api.get("/products/7").respond(500)
    catalog = make_catalog(products_circuit_failures=1)
    await catalog.lookup("42")

    with pytest.raises(ProductsUnavailable):
        await catalog.lookup("7")

    assert circuit_state(catalog) == "open"
    assert (await catalog.lookup("42")).status is ProductStatus.FOUND


# --- cache --------------------------------------------------------------------------------


async def test_found_product_is_cached_until_its_ttl_runs_out(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, clock: FakeClock
) -> None:
    route = products_api.get("/products/42").mock(return_value=product())
    catalog = make_catalog(products_cache_ttl_seconds=10)

    first = await catalog.lookup("42")
    clock.advance(9.9)
    second = await catalog.lookup("42")
    assert route.call_count == 1
    assert second == first

    clock.advance(0.2)
    await catalog.lookup("42")
    assert route.call_count == 2


async def test_cache_holds_at_most_its_size(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get(url__regex=r"/products/(?P<pid>\w+)").mock(
        side_effect=lambda request, pid: product(pid)
    )
    catalog = make_catalog(products_cache_size=2)

    for product_id in ["a", "b", "c", "a"]:
        await catalog.lookup(product_id)

    assert [call.request.url.path for call in route.calls] == [
        "/products/a",
        "/products/b",
        "/products/c",
        "/products/a",
    ]


@pytest.mark.parametrize(
    "disabled", [{"products_cache_size": 0}, {"products_cache_ttl_seconds": 0}]
)
async def test_cache_can_be_turned_off(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, disabled: dict[str, Any]
) -> None:
    route = products_api.get("/products/42").mock(return_value=product())
    catalog = make_catalog(**disabled)

    await catalog.lookup("42")
    await catalog.lookup("42")

    assert route.call_count == 2


async def test_changing_a_returned_product_does_not_change_the_cache(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    products_api.get("/products/42").mock(return_value=product())
    catalog = make_catalog()

    first = await catalog.lookup("42")
    assert first.product is not None
    first.product["name"] = "changed"

    second = await catalog.lookup("42")
    assert second.product is not None
    assert second.product["name"] == "Mug"


# --- single flight ------------------------------------------------------------------------


async def test_concurrent_lookups_of_one_id_share_one_request(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    held_answer = HeldAnswers(lambda _: product())
    route = products_api.get("/products/42").mock(side_effect=held_answer)
    catalog = make_catalog()

    waiting = [asyncio.create_task(catalog.lookup("42")) for _ in range(20)]
    await asyncio.sleep(0.01)
    held_answer.release()
    results = await asyncio.gather(*waiting)

    assert route.call_count == 1
    assert {result.status for result in results} == {ProductStatus.FOUND}


async def test_a_shared_failure_reaches_every_caller_and_counts_once(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    held_failure = HeldAnswers(lambda _: httpx.Response(500))
    route = products_api.get("/products/42").mock(side_effect=held_failure)
    catalog = make_catalog(products_circuit_failures=2)

    waiting = [asyncio.create_task(catalog.lookup("42")) for _ in range(10)]
    await asyncio.sleep(0.01)
    held_failure.release()
    results = await asyncio.gather(*waiting, return_exceptions=True)

    assert all(isinstance(result, ProductsUnavailable) for result in results)
    assert route.call_count == 1
    assert circuit_state(catalog) == "closed"


async def test_one_caller_giving_up_does_not_cancel_the_shared_lookup(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    held_answer = HeldAnswers(lambda _: product())
    route = products_api.get("/products/42").mock(side_effect=held_answer)
    catalog = make_catalog()
    impatient = asyncio.create_task(catalog.lookup("42"))
    patient = asyncio.create_task(catalog.lookup("42"))
    await asyncio.sleep(0.01)

    impatient.cancel()
    held_answer.release()

    assert (await patient).status is ProductStatus.FOUND
    assert impatient.cancelled()
    assert route.call_count == 1


# --- lookup_all ---------------------------------------------------------------------------


class ScriptedCatalog:
    """A catalog whose answers a test writes down, which counts how many look-ups overlap."""

    enabled = True

    def __init__(self, outcomes: dict[str, ProductLookup | Exception]) -> None:
        self.outcomes = outcomes
        self.running = 0
        self.most_running = 0
        self.asked: list[str] = []

    async def lookup(self, product_id: str) -> ProductLookup:
        self.asked.append(product_id)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        outcome = self.outcomes[product_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def probe(self) -> str:
        return "ok"


def found(product_id: str) -> ProductLookup:
    return ProductLookup(product_id, ProductStatus.FOUND, {"id": product_id})


async def test_lookup_all_runs_every_lookup_at_once_however_many() -> None:
    ids = [str(n) for n in range(12)]
    catalog = ScriptedCatalog({product_id: found(product_id) for product_id in ids})

    lookups = await lookup_all(catalog, ids)

    assert catalog.most_running == 12
    assert lookups == {product_id: found(product_id) for product_id in ids}


async def test_lookup_all_asks_once_per_id_and_returns_not_found_ones() -> None:
    missing = ProductLookup("9", ProductStatus.NOT_FOUND)
    catalog = ScriptedCatalog({"1": found("1"), "9": missing})

    lookups = await lookup_all(catalog, ["1", "9", "1"])

    assert sorted(catalog.asked) == ["1", "9"]
    assert lookups == {"1": found("1"), "9": missing}


async def test_lookup_all_fails_whole_with_the_longest_retry_after() -> None:
    catalog = ScriptedCatalog(
        {
            "1": found("1"),
            "2": ProductsUnavailable("down", retry_after=3, product_ids=["2"]),
            "3": ProductsUnavailable("down", retry_after=17, product_ids=["3"]),
            "4": ProductLookup("4", ProductStatus.NOT_FOUND),
        }
    )

    with pytest.raises(ProductsUnavailable, match=r"for '2', '3' \(2 of 4\)") as raised:
        await lookup_all(catalog, ["1", "2", "3", "4"])

    assert raised.value.retry_after == 17
    assert raised.value.extensions["product_ids"] == ["2", "3"]
    assert sorted(catalog.asked) == ["1", "2", "3", "4"]


async def test_lookup_all_lets_unexpected_errors_through() -> None:
    catalog = ScriptedCatalog({"1": found("1"), "2": KeyError("bug")})

    with pytest.raises(KeyError):
        await lookup_all(catalog, ["1", "2"])


async def test_lookup_all_over_http_shares_the_catalog(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    route = products_api.get(url__regex=r"/products/(?P<pid>\w+)").mock(
        side_effect=lambda request, pid: product(pid) if pid != "404" else httpx.Response(404)
    )

    lookups = await lookup_all(make_catalog(), ["1", "2", "404"])

    assert {pid: lookup.status for pid, lookup in lookups.items()} == {
        "1": ProductStatus.FOUND,
        "2": ProductStatus.FOUND,
        "404": ProductStatus.NOT_FOUND,
    }
    assert route.call_count == 3


async def test_lookup_all_of_nothing_is_empty() -> None:
    assert await lookup_all(StandaloneCatalog(), []) == {}


# --- probe --------------------------------------------------------------------------------


PROBE = "/products/inventory-readiness-probe-0000"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "ok"),
        (204, "ok"),
        (404, "ok"),
        (400, "ok"),
        (422, "ok"),
        (401, "unauthorized"),
        (403, "unauthorized"),
        (429, "unavailable"),
        (500, "unavailable"),
        (503, "unavailable"),
        (405, "unavailable"),
    ],
)
async def test_probe_tells_ok_unauthorized_or_unavailable_by_status(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, status: int, verdict: str
) -> None:
    route = products_api.get(PROBE).respond(status)

    assert await make_catalog(products_api_key="k").probe() == verdict
    assert route.call_count == 1
    assert route.calls.last.request.headers["X-API-KEY"] == "k"


async def test_probe_asks_where_the_products_are(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    products_api.get("/health").respond(200)
    products = products_api.get(url__regex=r"/api/productos/[^/]+$").respond(401)

    catalog = make_catalog(products_path="/api/productos/{id}")

    assert await catalog.probe() == "unauthorized"
    assert products.call_count == 1


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
async def test_probe_is_unavailable_without_an_answer(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, failure: Exception
) -> None:
    products_api.get(PROBE).mock(side_effect=failure)

    assert await make_catalog().probe() == "unavailable"


async def test_probe_asks_even_while_the_circuit_is_open(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    products_api.get("/products/42").respond(500)
    health = products_api.get(PROBE).respond(404)
    catalog = make_catalog(products_circuit_failures=1)
    await failing_lookups(catalog, 1)

    assert await catalog.probe() == "ok"
    assert await catalog.probe() == "ok"
    assert health.call_count == 2


# --- construction -------------------------------------------------------------------------


async def test_standalone_catalog_checks_nothing() -> None:
    catalog = StandaloneCatalog()

    assert catalog.enabled is False
    assert await catalog.lookup("42") == ProductLookup("42", ProductStatus.UNCHECKED)
    assert await catalog.probe() == "disabled"


async def test_build_catalog_is_standalone_without_a_service_url() -> None:
    assert isinstance(
        build_catalog(make_settings(products_service_url=None), None), StandaloneCatalog
    )


async def test_build_catalog_is_http_with_a_service_url(http_client: httpx.AsyncClient) -> None:
    catalog = build_catalog(make_settings(), http_client)

    assert isinstance(catalog, HttpProductsCatalog)
    assert catalog.enabled is True
    assert circuit_state(catalog) == "closed"


async def test_build_catalog_needs_a_client_with_a_service_url() -> None:
    with pytest.raises(ValueError, match="HTTP client"):
        build_catalog(make_settings(), None)


async def test_http_client_has_explicit_timeouts_and_a_pool_for_a_sale() -> None:
    settings = make_settings(products_timeout_seconds=1.5, products_pool_timeout_seconds=7)

    async with build_http_client(settings) as client:
        assert client.timeout == httpx.Timeout(connect=1.5, read=1.5, write=1.5, pool=7)
    assert Settings(_env_file=None).products_max_connections == 20


# --- a catalog saying "no such product", and waiting for a connection ---------------------


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_ids_the_catalog_rejects_are_not_found_and_never_open_the_circuit(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, status: int
) -> None:
    products_api.get("/products/abc").respond(status)
    catalog = make_catalog(products_circuit_failures=1)

    for _ in range(3):
        assert await catalog.lookup("abc") == ProductLookup("abc", ProductStatus.NOT_FOUND)
    assert circuit_state(catalog) == "closed"


@pytest.mark.parametrize(
    "answer",
    [
        *(httpx.Response(status) for status in (405, 409, 414, 418, 451, 301, 304, 201, 204)),
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json=[{"id": "abc"}]),
        httpx.Response(200, json={"id": 1.5}),
        httpx.Response(200, json={"id": True}),
        httpx.Response(200, json={"id": {"a": 1}}),
    ],
    ids=lambda answer: f"{answer.status_code}-{answer.content[:12]!r}",
)
async def test_answers_about_one_id_cannot_answer_but_never_open_the_circuit(
    products_api: respx.MockRouter, make_catalog: CatalogFactory, answer: httpx.Response
) -> None:
    products_api.get("/products/abc").mock(return_value=answer)
    products_api.get("/products/42").mock(return_value=product())
    catalog = make_catalog(products_circuit_failures=1)

    for _ in range(3):
        with pytest.raises(ProductsUnavailable):
            await catalog.lookup("abc")

    assert circuit_state(catalog) == "closed"
    assert (await catalog.lookup("42")).status is ProductStatus.FOUND


@pytest.mark.parametrize(
    "failure",
    [
        *(httpx.Response(status) for status in (401, 403, 429, 500, 501, 503)),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=repr,
)
async def test_what_says_the_catalog_is_unwell_opens_the_circuit(
    products_api: respx.MockRouter,
    make_catalog: CatalogFactory,
    failure: httpx.Response | Exception,
) -> None:
    route = products_api.get("/products/abc")
    if isinstance(failure, Exception):
        route.mock(side_effect=failure)
    else:
        route.mock(return_value=failure)
    catalog = make_catalog(products_circuit_failures=1, products_retries=0)

    with pytest.raises(ProductsUnavailable):
        await catalog.lookup("abc")

    assert circuit_state(catalog) == "open"


@pytest.mark.parametrize(("answered", "catalog_id"), [(1, "1"), ("ABC", "ABC"), ({"id": "7"}, "7")])
async def test_a_product_answered_under_another_id_is_not_found(
    products_api: respx.MockRouter,
    make_catalog: CatalogFactory,
    answered: object,
    catalog_id: str,
) -> None:
    body = {"data": answered} if isinstance(answered, dict) else {"id": answered}
    products_api.get("/products/01").respond(200, json=body)

    lookup = await make_catalog().lookup("01")

    assert lookup == ProductLookup("01", ProductStatus.NOT_FOUND, catalog_id=catalog_id)


async def test_waiting_for_a_connection_past_the_pool_timeout_does_not_count_as_failing(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    held_answer = HeldAnswers(lambda request: product(request.url.path.rsplit("/", 1)[-1]))
    products_api.get(url__regex=r"/products/\w+").mock(side_effect=held_answer)
    catalog = make_catalog(
        products_max_connections=1,
        products_pool_timeout_seconds=0.05,
        products_circuit_failures=1,
    )
    holder = asyncio.create_task(catalog.lookup("42"))
    await asyncio.sleep(0)  # the holder takes the only connection

    with pytest.raises(ProductsUnavailable, match="no free connection"):
        await catalog.lookup("7")
    held_answer.release()

    assert (await holder).status is ProductStatus.FOUND
    assert circuit_state(catalog) == "closed"


# --- one deadline, and no asking once the circuit is open ----------------------------------


async def test_no_retry_goes_out_once_the_circuit_is_open(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    products_api.get("/products/a").respond(500)
    held_answer = HeldAnswers(lambda request: httpx.Response(503))
    slow = products_api.get("/products/b").mock(side_effect=held_answer)
    catalog = make_catalog(products_circuit_failures=1, products_retries=5)
    waiting = asyncio.create_task(catalog.lookup("b"))
    await asyncio.sleep(0)  # its first attempt is out

    with pytest.raises(ProductsUnavailable):
        await catalog.lookup("a")
    assert circuit_state(catalog) == "open"
    held_answer.release()

    with pytest.raises(ProductsUnavailable, match="answered 503"):
        await waiting
    assert slow.call_count == 1


async def test_a_lookup_that_got_its_connection_after_the_circuit_opened_does_not_ask(
    products_api: respx.MockRouter, make_catalog: CatalogFactory
) -> None:
    held_answer = HeldAnswers(lambda request: httpx.Response(500))
    products_api.get("/products/a").mock(side_effect=held_answer)
    queued = products_api.get("/products/b").respond(200, json={"id": "b"})
    catalog = make_catalog(products_circuit_failures=1, products_max_connections=1)
    holder = asyncio.create_task(catalog.lookup("a"))
    await asyncio.sleep(0)  # the holder takes the only connection
    waiting = asyncio.create_task(catalog.lookup("b"))
    await asyncio.sleep(0)
    held_answer.release()

    with pytest.raises(ProductsUnavailable):
        await holder
    with pytest.raises(ProductsUnavailable, match="circuit opened") as refused:
        await waiting

    assert queued.call_count == 0
    assert refused.value.retry_after == RESET_SECONDS


@pytest.mark.parametrize("path", ["products/{id}", "/products", "/p/{id}/{id}"])
def test_a_products_path_needs_a_leading_slash_and_one_id(path: str) -> None:
    with pytest.raises(ValueError, match=r"hold \{id\} once"):
        make_settings(products_path=path)
