"""Random sequences of every stock operation keep the books straight."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
)
from sqlalchemy import Connection, func, select

from app.clients.products import StandaloneCatalog
from app.core.errors import InsufficientStock, NotFound
from app.models import Movement, Purchase, PurchaseLine, StockLevel
from app.schemas.purchases import PurchaseIn
from app.services import purchases, stock
from tests.support.factories import TEST_CALLER, make_stock
from tests.support.machines import DatabaseMachine, run_machine

# Left out of `make test-fast`: several processes, a crash, or generated cases.
pytestmark = pytest.mark.slow

PRODUCTS = ["p0", "p1", "p2", "p3"]
product_ids = st.sampled_from(PRODUCTS)


def machine_for(database_url: str) -> type[RuleBasedStateMachine]:
    class StockMachine(DatabaseMachine):
        bought = Bundle("purchases")

        def __init__(self) -> None:
            super().__init__(database_url)
            self.expected: dict[str, int] = {}

        @rule(name=product_ids, quantity=st.integers(0, 20))
        def set_quantity(self, name: str, quantity: int) -> None:
            self.run(make_stock(self.db, self.pid(name), quantity))
            self.expected[name] = quantity

        @rule(name=product_ids, delta=st.integers(-10, 10).filter(bool))
        def adjust(self, name: str, delta: int) -> None:
            try:
                self.run(
                    stock.adjust(
                        self.db, TEST_CALLER, product_id=self.pid(name), delta=delta, reason="p"
                    )
                )
            except NotFound:
                assert name not in self.expected
            except InsufficientStock:
                assert self.expected[name] + delta < 0
            else:
                self.expected[name] += delta

        @rule(
            target=bought,
            lines=st.lists(st.tuples(product_ids, st.integers(1, 5)), min_size=1, max_size=4),
        )
        def purchase(self, lines: list[tuple[str, int]]) -> str:
            wanted: dict[str, int] = {}
            for name, quantity in lines:
                wanted[name] = wanted.get(name, 0) + quantity
            order = PurchaseIn.model_validate(
                {"items": [{"product_id": self.pid(n), "quantity": q} for n, q in lines]}
            )
            try:
                receipt = self.run(
                    purchases.buy(self.db, StandaloneCatalog(), TEST_CALLER, order=order)
                )
            except InsufficientStock:
                assert any(
                    self.expected.get(n, 0) < q or n not in self.expected for n, q in wanted.items()
                )
                return ""
            for name, quantity in wanted.items():
                self.expected[name] -= quantity
            return receipt.id

        @rule(purchase_id=bought)
        def cancel(self, purchase_id: str) -> None:
            if not purchase_id:
                return
            before = self.run(purchases.get_purchase(self.db, purchase_id=purchase_id))
            self.run(purchases.cancel(self.db, TEST_CALLER, purchase_id=purchase_id))
            if before.status == "completed":
                for line in before.items:
                    name = line.product_id.removeprefix(f"{self.prefix}-")
                    self.expected[name] = self.expected.get(name, 0) + line.quantity

        @rule(name=product_ids)
        def delete(self, name: str) -> None:
            try:
                self.run(stock.delete_stock(self.db, TEST_CALLER, product_id=self.pid(name)))
            except NotFound:
                assert name not in self.expected
            else:
                del self.expected[name]

        @invariant()
        def books_balance(self) -> None:
            self.run(self.check_books())

        async def check_books(self) -> None:
            mine = [self.pid(name) for name in PRODUCTS]

            def books(connection: Connection) -> tuple[dict[str, int], dict[str, int], int]:
                levels = dict(
                    connection.execute(
                        select(StockLevel.product_id, StockLevel.quantity).where(
                            StockLevel.product_id.in_(mine)
                        )
                    ).all()
                )
                sums = dict(
                    connection.execute(
                        select(Movement.product_id, func.sum(Movement.delta))
                        .where(Movement.product_id.in_(mine))
                        .group_by(Movement.product_id)
                    ).all()
                )
                unmatched = connection.scalar(
                    select(func.count())
                    .select_from(PurchaseLine)
                    .join(Purchase, Purchase.id == PurchaseLine.purchase_id)
                    .outerjoin(
                        Movement,
                        (Movement.purchase_id == PurchaseLine.purchase_id)
                        & (Movement.product_id == PurchaseLine.product_id)
                        & (Movement.kind == "purchase")
                        & (Movement.delta == -PurchaseLine.quantity),
                    )
                    .where(PurchaseLine.product_id.in_(mine), Movement.id.is_(None))
                )
                return levels, sums, int(unmatched or 0)

            levels, sums, unmatched = await self.db.read(books)
            assert all(quantity >= 0 for quantity in levels.values())
            assert levels == {self.pid(n): q for n, q in self.expected.items()}
            for product_id in mine:
                assert sums.get(product_id, 0) == levels.get(product_id, 0)
            assert unmatched == 0

    return StockMachine


def test_random_operations_keep_the_books_balanced(database_url: str) -> None:
    run_machine(machine_for(database_url), examples=25, steps=15)
