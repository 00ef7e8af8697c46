"""Time `inventory import` of 100,000 rows (a first load, then the same file again).

    poetry run python -m bench.import_100k                      # SQLite in a temp dir
    poetry run python -m bench.import_100k postgresql://…/db     # an empty, migrated database

Not a test: a measurement to repeat after changing the bulk code. The import runs through
the service function the CLI uses; `inventory.changed` lines go to a discarded stream.
"""

from __future__ import annotations

import asyncio
import io
import random
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

from app.cli.importing import IMPORT_BATCH_SIZE
from app.core.config import Settings
from app.core.context import Caller
from app.core.database import Database
from app.core.logging import configure_logging
from app.core.migrations import upgrade
from app.services import bulk

ROWS = 100_000


def _csv() -> str:
    rng = random.Random(1)
    lines = ["product_id,quantity,reason"]
    lines += [f"sku-{i:06d},{rng.randint(0, 1000)},initial load" for i in range(ROWS)]
    return "\n".join(lines) + "\n"


async def _run(url: str) -> None:
    settings = Settings(_env_file=None, database_url=url, log_format="json")
    configure_logging(settings, stream="stderr")
    started = time.perf_counter()
    rows = bulk.parse_import(io.StringIO(_csv()))
    print(f"parse and validate {ROWS:,} rows: {time.perf_counter() - started:.2f} s")
    db = Database(url)
    try:
        for attempt in ("first import", "second import (no change)"):
            started = time.perf_counter()
            with redirect_stderr(io.StringIO()):
                summary = await bulk.import_stock(
                    db, Caller("bench", "bench"), rows, batch_size=IMPORT_BATCH_SIZE
                )
            print(f"{attempt}: {time.perf_counter() - started:.2f} s  {summary}")
    finally:
        await db.dispose()


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(_run(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        upgrade(url)
        asyncio.run(_run(url))


if __name__ == "__main__":
    main()
