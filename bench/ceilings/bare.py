"""Ceiling (a): FastAPI and nothing else. `GET /inventory/{product_id}` answers a constant."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()

_STOCK: dict[str, Any] = {
    "product_id": "hot",
    "quantity": 17,
    "version": 3,
    "created_at": "2026-11-28T10:15:00Z",
    "updated_at": "2026-11-28T10:15:00Z",
    "product": {"id": "hot", "name": "Mug", "price": 9.5},
}


@app.get("/inventory/{product_id}")
async def get_stock_level(product_id: str) -> dict[str, Any]:
    return _STOCK
