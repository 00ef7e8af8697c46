"""The HTTP server the service runs in: uvicorn's httptools protocol, with the two limits
uvicorn has no setting for.

- Request line and headers together are at most `MAX_HEADER_BYTES`; more is answered 431
  and the connection closed, before the rest is read into memory.
- A request must arrive whole (headers and body) within `REQUEST_READ_TIMEOUT_SECONDS` of
  its first byte (or of the connection, for the first request); otherwise 408 and the
  connection is closed. Idle keep-alive connections are closed by uvicorn's own
  `timeout_keep_alive` (5 s) as before.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.errors import PROBLEM_MEDIA_TYPE

MAX_HEADER_BYTES = 64 * 1024
REQUEST_READ_TIMEOUT_SECONDS = 30.0
_END_OF_HEADERS = b"\r\n\r\n"


def _refusal(status: int, reason: bytes, detail: str) -> bytes:
    body = json.dumps(
        {"type": "about:blank", "title": reason.decode(), "status": status, "detail": detail}
    ).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, reason, PROBLEM_MEDIA_TYPE.encode(), len(body))
    )
    return head + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = MAX_HEADER_BYTES
    read_timeout = REQUEST_READ_TIMEOUT_SECONDS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._deadline: asyncio.TimerHandle | None = None
        self._start_request()

    def _start_request(self) -> None:
        self._in_headers = True
        self._header_bytes = 0
        self._tail = b""  # the end of the last chunk, for a header end split across two
        self._deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None:
            self._start_request()
        if self._in_headers and self._count_header_bytes(data):
            self._refuse(431, b"Request Header Fields Too Large", "Headers over the limit.")
            return
        super().data_received(data)

    def _count_header_bytes(self, data: bytes) -> bool:
        """Count bytes until the headers end; True once there are too many."""
        seen = self._tail + data
        end = seen.find(_END_OF_HEADERS)
        if end >= 0:
            self._header_bytes += end - len(self._tail)
            self._in_headers = False
            return self._header_bytes > self.max_header_bytes
        self._header_bytes += len(data)
        self._tail = seen[-(len(_END_OF_HEADERS) - 1) :]
        return self._header_bytes > self.max_header_bytes

    def on_message_complete(self) -> None:
        self._stop_clock()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def _stop_clock(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _read_timed_out(self) -> None:
        self._deadline = None
        self._refuse(408, b"Request Timeout", "The request did not arrive in time.")

    def _refuse(self, status: int, reason: bytes, detail: str) -> None:
        self._stop_clock()
        if self.transport.is_closing():
            return
        # Once the app has begun its answer, another one would corrupt the stream.
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_refusal(status, reason, detail))
        self.transport.close()
