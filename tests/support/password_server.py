"""A loopback server that speaks just enough of PostgreSQL's protocol to ask for a password
and reject it, as a server with password authentication does. (The test server trusts every
local connection, so it can never play this part.)"""

from __future__ import annotations

import asyncio
import struct
from types import TracebackType

# The first message of a connection asks for TLS or GSSAPI encryption, or starts the session.
_ENCRYPTION_REQUESTS = (80877103, 80877104)


def _error(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


class PasswordRejectingServer:
    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> PasswordRejectingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            length, code = struct.unpack("!ii", await reader.readexactly(8))
            while code in _ENCRYPTION_REQUESTS:
                writer.write(b"N")  # not offered: go on in the clear
                length, code = struct.unpack("!ii", await reader.readexactly(8))
            pairs = (await reader.readexactly(length - 8)).split(b"\0")
            parameters = dict(zip(pairs[0::2], pairs[1::2], strict=False))
            user = parameters.get(b"user", b"").decode()
            writer.write(b"R" + struct.pack("!ii", 8, 3))  # send the password in clear text
            await reader.readexactly(1)
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            await reader.readexactly(length - 4)
            writer.write(_error("28P01", f'password authentication failed for user "{user}"'))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
