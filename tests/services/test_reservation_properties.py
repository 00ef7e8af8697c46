"""Random holds, confirmations, releases, expiries, purchases and adjustments: after every
step `reserved ≤ quantity`, `available = quantity − reserved`, and the books balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import update

from app.clients.products import StandaloneCatalog
from app.core.errors import InsufficientStock, NotFound, ReservationNotActive
from app.models import Reservation, ReservationLine
from app.models.base import utcnow
from app.repositories import stock_levels
from app.schemas.purchases import PurchaseIn, PurchaseItemIn
from app.schemas.reservations import ReservationIn
from app.services import expiry, purchases, reservations, stock
from devtools.invariants import broken_invariants
from tests.support.factories import TEST_CALLER, ledger_sum, make_stock
from tests.support.machines import DatabaseMachine, run_machine

pytestmark = pytest.mark.slow

NAMES = ["p0", "p1", "p2"]
names = st.sampled_from(NAMES)
TTL = timedelta(hours=1)


@dataclass
class Hold:
    id: str
    lines: dict[str, int]
    state: str = "active"


def machine_for(database_url: str) -> type[RuleBasedStateMachine]:
    class ReservationMachine(DatabaseMachine):
        def __init__(self) -> None:
            super().__init__(database_url)
            self.quantity: dict[str, int] = {}
            self.holds: list[Hold] = []

        def reserved(self, name: str) -> int:
            return sum(h.lines.get(name, 0) for h in self.holds if h.state == "active")

        def available(self, name: str) -> int:
            return self.quantity.get(name, 0) - self.reserved(name)

        @rule(name=names, quantity=st.integers(0, 12))
        def set_quantity(self, name: str, quantity: int) -> None:
            step = make_stock(self.db, self.pid(name), quantity)
            if quantity < self.reserved(name):
                with pytest.raises(InsufficientStock):
                    self.run(step)
                return
            self.run(step)
            self.quantity[name] = quantity

        @rule(name=names, delta=st.integers(-6, 6).filter(bool))
        def adjust(self, name: str, delta: int) -> None:
            step = stock.adjust(
                self.db, TEST_CALLER, product_id=self.pid(name), delta=delta, reason="p"
            )
            if name not in self.quantity:
                with pytest.raises(NotFound):
                    self.run(step)
            elif self.quantity[name] + delta < self.reserved(name):
                with pytest.raises(InsufficientStock):
                    self.run(step)
            else:
                self.run(step)
                self.quantity[name] += delta

        @rule(name=names, quantity=st.integers(1, 4))
        def buy(self, name: str, quantity: int) -> None:
            order = PurchaseIn(items=[PurchaseItemIn(product_id=self.pid(name), quantity=quantity)])
            step = purchases.buy(self.db, StandaloneCatalog(), TEST_CALLER, order=order)
            if quantity > self.available(name) or name not in self.quantity:
                with pytest.raises(InsufficientStock):
                    self.run(step)
                return
            self.run(step)
            self.quantity[name] -= quantity

        @rule(lines=st.dictionaries(names, st.integers(1, 4), min_size=1, max_size=2))
        def hold(self, lines: dict[str, int]) -> None:
            items = [PurchaseItemIn(product_id=self.pid(n), quantity=q) for n, q in lines.items()]
            step = reservations.hold(
                self.db, StandaloneCatalog(), TEST_CALLER, order=ReservationIn(items=items), ttl=TTL
            )
            if any(q > self.available(n) or n not in self.quantity for n, q in lines.items()):
                with pytest.raises(InsufficientStock):
                    self.run(step)
                return
            self.holds.append(Hold(self.run(step).id, dict(lines)))

        @rule(data=st.data())
        def confirm(self, data: st.DataObject) -> None:
            if not self.holds:
                return
            held = data.draw(st.sampled_from(self.holds))
            step = reservations.confirm(self.db, TEST_CALLER, reservation_id=held.id)
            if held.state in ("released", "expired"):
                with pytest.raises(ReservationNotActive):
                    self.run(step)
                return
            assert self.run(step).created == (held.state == "active")
            if held.state == "active":
                for name, quantity in held.lines.items():
                    self.quantity[name] -= quantity
                held.state = "confirmed"

        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            if not self.holds:
                return
            held = data.draw(st.sampled_from(self.holds))
            step = reservations.release(self.db, TEST_CALLER, reservation_id=held.id)
            if held.state == "confirmed":
                with pytest.raises(ReservationNotActive):
                    self.run(step)
                return
            assert self.run(step).status == ("released" if held.state == "active" else held.state)
            if held.state == "active":
                held.state = "released"

        @rule(data=st.data())
        def let_expire(self, data: st.DataObject) -> None:
            """Time passes for one hold: its expiry moves into the past."""
            active = [h for h in self.holds if h.state == "active"]
            if not active:
                return
            held = data.draw(st.sampled_from(active))
            past = utcnow() - timedelta(seconds=1)

            def unit(connection: Any) -> None:
                connection.execute(
                    update(Reservation).where(Reservation.id == held.id).values(expires_at=past)
                )
                connection.execute(
                    update(ReservationLine)
                    .where(ReservationLine.reservation_id == held.id)
                    .values(expires_at=past)
                )

            self.run(self.db.write(unit))
            held.state = "expired"

        @rule()
        def sweep(self) -> None:
            self.run(expiry.sweep(self.db))

        @invariant()
        def books_balance(self) -> None:
            for name in NAMES:
                level = self.run(
                    self.db.read_one(partial(stock_levels.find, product_id=self.pid(name)))
                )
                if name not in self.quantity:
                    assert level is None
                    continue
                assert level is not None
                assert level.quantity == self.quantity[name]
                assert level.reserved == self.reserved(name)
                assert 0 <= level.reserved <= level.quantity
                assert self.run(ledger_sum(self.db, self.pid(name))) == level.quantity
            assert self.run(broken_invariants(self.db)) == []

    return ReservationMachine


def test_random_reservation_operations_keep_reserved_within_quantity(database_url: str) -> None:
    run_machine(machine_for(database_url), examples=20, steps=20)
