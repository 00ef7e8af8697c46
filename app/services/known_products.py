"""The catalog's verdict on the products of a request, before anything is changed."""

from __future__ import annotations

from collections.abc import Sequence

from app.clients.products import ProductLookup, ProductsCatalog, ProductStatus, lookup_all
from app.core.errors import UnknownProduct


async def require_known(
    catalog: ProductsCatalog, product_ids: Sequence[str]
) -> dict[str, ProductLookup]:
    """Ask the catalog about every product at once; 422 naming all it does not know.

    A product the catalog answers under another id (`01` as `1`) is not this product: one
    catalog product must never get two stock levels. Empty in standalone mode.
    """
    if not catalog.enabled:
        return {}
    lookups = await lookup_all(catalog, product_ids)
    unknown = [
        lookups[pid] for pid in product_ids if lookups[pid].status is ProductStatus.NOT_FOUND
    ]
    if unknown:
        raise UnknownProduct(_unknown_detail(unknown), product_ids=[u.product_id for u in unknown])
    return lookups


def _unknown_detail(unknown: list[ProductLookup]) -> str:
    names = ", ".join(repr(lookup.product_id) for lookup in unknown)
    detail = f"The products service does not know {names}."
    renamed = [lookup for lookup in unknown if lookup.catalog_id is not None]
    if renamed:
        answers = ", ".join(f"{u.product_id!r} as {u.catalog_id!r}" for u in renamed)
        detail += f" It answers {answers}: use the catalog's own id."
    return detail
