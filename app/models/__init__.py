"""The tables. Importing this package registers every one of them on `Base.metadata`."""

from app.models.base import Base
from app.models.movement import Movement
from app.models.stock_level import StockLevel

__all__ = ["Base", "Movement", "StockLevel"]
