"""The products catalog as the inventory sees it: does a product exist, and what is said of it."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.core.errors import ProductsUnavailable


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
