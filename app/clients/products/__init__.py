"""The products service, as the rest of the app uses it.

`catalog` is what the inventory asks (does a product exist, what is said of it),
`http_catalog` asks a real products service, `breaker` stops asking one that keeps failing
(`circuit_gauge` shows its state to Prometheus), and `payload` reads its answers with care.
"""

from app.clients.products.catalog import (
    ProductLookup,
    ProductsCatalog,
    ProductStatus,
    StandaloneCatalog,
    lookup_all,
)
from app.clients.products.http_catalog import (
    HttpProductsCatalog,
    build_catalog,
    build_http_client,
    lookup_bound_seconds,
    lookup_deadline_seconds,
    masked_url,
)

__all__ = [
    "HttpProductsCatalog",
    "ProductLookup",
    "ProductStatus",
    "ProductsCatalog",
    "StandaloneCatalog",
    "build_catalog",
    "build_http_client",
    "lookup_all",
    "lookup_bound_seconds",
    "lookup_deadline_seconds",
    "masked_url",
]
