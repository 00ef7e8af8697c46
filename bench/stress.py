"""`make stress`: mixed load on the service (2 workers, PostgreSQL), then the invariant check.

Reads, sets, adjustments, purchases, cancels and idempotent replays for a bounded time,
against a database made for the run and dropped after it. Prints the request count, the
answers by status, and "invariants hold" or what broke. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter

import httpx

from app.core.database import Database
from devtools import databases
from devtools.invariants import broken_invariants
from devtools.servers import running_service

PRODUCTS = [f"s{i}" for i in range(50)]
EXPECTED = {200, 201, 204, 404, 409}


async def _client_loop(
    http: httpx.AsyncClient, deadline: float, statuses: Counter[int], rng: random.Random
) -> None:
    purchases: list[str] = []
    while time.monotonic() < deadline:
        product = rng.choice(PRODUCTS)
        roll = rng.random()
        if roll < 0.30:
            response = await http.get(f"/inventory/{product}")
        elif roll < 0.40:
            response = await http.put(
                f"/inventory/{product}", json={"quantity": rng.randint(0, 500)}
            )
        elif roll < 0.55:
            response = await http.post(
                f"/inventory/{product}/adjustments",
                json={"delta": rng.choice([-3, -1, 1, 5]), "reason": "stress"},
            )
        elif roll < 0.85:
            items = [
                {"product_id": p, "quantity": rng.randint(1, 3)} for p in rng.sample(PRODUCTS, 2)
            ]
            key = f"stress-{rng.getrandbits(48)}"
            response = await http.post(
                "/inventory/purchase", json={"items": items}, headers={"Idempotency-Key": key}
            )
            if response.status_code == 201:
                purchases.append(response.json()["id"])
                if rng.random() < 0.3:  # a client that did not hear the answer tries again
                    replay = await http.post(
                        "/inventory/purchase",
                        json={"items": items},
                        headers={"Idempotency-Key": key},
                    )
                    statuses[replay.status_code] += 1
        elif purchases:
            response = await http.post(f"/inventory/purchases/{rng.choice(purchases)}/cancel")
        else:
            continue
        statuses[response.status_code] += 1


async def _stress(database_url: str, seconds: float, clients: int) -> int:
    db = Database(database_url)
    try:
        statuses: Counter[int] = Counter()
        with running_service(database_url, workers=2) as base_url:
            limits = httpx.Limits(max_connections=clients)
            async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
                for product in PRODUCTS:
                    seeded = await http.put(
                        f"/inventory/{product}", json={"quantity": 200, "reason": "stress seed"}
                    )
                    seeded.raise_for_status()
                deadline = time.monotonic() + seconds
                await asyncio.gather(
                    *(
                        _client_loop(http, deadline, statuses, random.Random(seed))
                        for seed in range(clients)
                    )
                )
        problems = await broken_invariants(db)
    finally:
        await db.dispose()
    print(f"requests: {sum(statuses.values())}")
    print("answers by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    unexpected = {s: n for s, n in statuses.items() if s not in EXPECTED}
    if unexpected:
        problems.append(f"unexpected statuses: {unexpected}")
    print("invariants hold" if not problems else "BROKEN:\n  " + "\n  ".join(problems))
    return 0 if not problems else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    if databases.POSTGRES_URL is None:
        print("TEST_POSTGRES_URL is not set: make stress needs PostgreSQL", file=sys.stderr)
        return 2
    with databases.postgres_database() as url:
        return asyncio.run(_stress(url, args.seconds, args.clients))


if __name__ == "__main__":
    sys.exit(main())
