"""The database: units of work to write, queries to read, on SQLite or PostgreSQL.

- `engines`: `Database`, the one object the rest of the service uses.
- `sqlite_writer`: the one thread per process that writes to SQLite, with group commit.
- `units`: what a unit of work is, and callbacks that run once it has committed.
- `errors`: which errors mean the database cannot answer right now.
- `listeners`: the pool listeners (SQLite settings, schema check, stale connections).
"""

from app.core.database.engines import Database, async_url
from app.core.database.errors import is_unavailable, unavailable_reason
from app.core.database.units import AfterCommit, T, Unit, after_commit

__all__ = [
    "AfterCommit",
    "Database",
    "T",
    "Unit",
    "after_commit",
    "async_url",
    "is_unavailable",
    "unavailable_reason",
]
