"""A hold captures the catalog's prices; its confirmation charges them without asking again."""

from __future__ import annotations

from devtools.fake_products import FakeProductsServer
from tests.support.factories import make_stock
from tests.support.problems import assert_problem
from tests.support.products import product_lookups
from tests.support.service import Inventory


async def test_a_confirm_after_the_products_service_went_down_charges_the_held_prices(
    inventory: Inventory, fake_products: FakeProductsServer
) -> None:
    await make_stock(inventory.db, "42", 5)
    await make_stock(inventory.db, "7", 5)
    held = await inventory.http.post(
        "/reservations",
        json={"items": [{"product_id": "42", "quantity": 2}, {"product_id": 7, "quantity": 1}]},
    )
    assert held.status_code == 201, held.text
    assert [item["unit_price"] for item in held.json()["items"]] == ["12.90", "4.25"]
    fake_products.fail_with(503)
    asked_before = len(product_lookups(fake_products))

    confirmed = await inventory.http.post(f"/reservations/{held.json()['id']}/confirm")

    assert confirmed.status_code == 201, confirmed.text
    receipt = confirmed.json()
    assert [(i["unit_price"], i["subtotal"]) for i in receipt["items"]] == [
        ("12.90", "25.80"),
        ("4.25", "4.25"),
    ]
    assert receipt["total"] == "30.05"
    assert len(product_lookups(fake_products)) == asked_before
    # A new hold needs the catalog, which cannot answer.
    again = await inventory.http.post(
        "/reservations", json={"items": [{"product_id": "42", "quantity": 1}]}
    )
    assert_problem(again, 503, "products-unavailable")
