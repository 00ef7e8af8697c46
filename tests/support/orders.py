"""Request bodies of purchases and reservations."""

from __future__ import annotations


def order(*lines: tuple[str | int, int], reference: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "items": [{"product_id": pid, "quantity": quantity} for pid, quantity in lines]
    }
    if reference is not None:
        body["reference"] = reference
    return body
