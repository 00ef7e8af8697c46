"""A tiny webhook receiver for the bench: answers every POST 204 at once, counts them, and
says how many at `GET /count` (how many distinct `webhook-id`s at `GET /unique`). HTTP/1.1
with keep-alive, nothing else; loopback only.

    python -m bench.receiver --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
from typing import ClassVar


class Counter:
    posts = 0
    ids: ClassVar[set[str]] = set()


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            webhook_id = ""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
                elif name.strip().lower() == "webhook-id":
                    webhook_id = value.strip()
            if length:
                await reader.readexactly(length)
            if lines[0].startswith(("GET /count", "GET /unique")):
                count = Counter.posts if lines[0].startswith("GET /count") else len(Counter.ids)
                body = str(count).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                Counter.posts += 1
                Counter.ids.add(webhook_id)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
