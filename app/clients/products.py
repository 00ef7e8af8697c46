"""The products catalog as the inventory sees it: does a product exist, what is it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


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
