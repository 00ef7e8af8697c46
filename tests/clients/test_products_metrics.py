"""Product look-ups are counted by outcome."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from app.core.errors import ProductsUnavailable
from devtools.fake_products import FakeProductsServer
from tests.support.products import catalog_for


def _lookups(outcome: str) -> float:
    return REGISTRY.get_sample_value("inventory_product_lookups_total", {"outcome": outcome}) or 0.0


async def test_lookups_are_counted_by_outcome(fake_products: FakeProductsServer) -> None:
    before = {o: _lookups(o) for o in ("found", "not_found", "cache_hit", "unavailable")}

    async with catalog_for(fake_products.url) as catalog:
        await catalog.lookup("42")
        await catalog.lookup("42")
        await catalog.lookup("nope")
        fake_products.fail_with(500)
        with pytest.raises(ProductsUnavailable):
            await catalog.lookup("43")

    after = {o: _lookups(o) - before[o] for o in before}
    assert after == {"found": 1, "not_found": 1, "cache_hit": 1, "unavailable": 1}
