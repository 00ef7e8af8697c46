from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devtools.fake_products import FakeProductsServer
from tests.support.products import PRODUCTS_KEY, settings_for
from tests.support.service import Inventory, running


@pytest.fixture
async def inventory(
    database_url: str, fake_products: FakeProductsServer
) -> AsyncIterator[Inventory]:
    fake_products.require_api_key(PRODUCTS_KEY)
    async with running(settings_for(database_url, fake_products.url)) as service:
        yield service
