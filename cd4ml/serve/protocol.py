"""uvicorn's HTTP/1.1 protocol (httptools, i.e. llhttp) with the limits a public server needs.

uvicorn parses and answers; what it leaves to the server in front of it is added here, per
connection, without a thread: a deadline for a request's headers (a client sending them a
byte at a time is cut off, not kept forever), a cap on their size (llhttp has none), an idle
timeout from the moment a connection opens (uvicorn starts it only after a first answer), and
a lingering close: an answer that ends a connection while the client is still sending its
body (413) is followed by a few seconds of reading and discarding, so the client reads the
answer instead of a connection reset. Protocol errors answer in JSON like every other error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

# uvicorn's optional fast parser (the image build pins what the server imports)
import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: most bytes of request line and headers together
MAX_HEAD = 64 << 10
#: seconds a request's headers may take from their first byte
HEADER_TIMEOUT = 10.0
#: seconds a closing connection keeps reading (and dropping) a body the client still sends
LINGER = 2.0

_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


class LimitedProtocol(HttpToolsProtocol):
    """One connection: uvicorn's protocol, bounded in time and memory before the app runs."""

    header_timeout = HEADER_TIMEOUT
    max_head = MAX_HEAD

    def connection_made(self, transport: Any) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._begun = 0
        self._body_done = True
        self._lingering = False
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(_Transport(transport, self))  # type: ignore[arg-type]
        # a connection that never sends a byte is idle too
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is out; what still comes is the refused body
        in_head, begun = self._in_head, self._begun
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # (no protocol to upgrade to: the request is served as plain HTTP/1.1, as uvicorn does)
            pass
        except httptools.HttpParserError as e:
            # a bad request line or header, a negative or malformed chunk size, ...
            self._refuse(400, f"malformed HTTP request: {str(e).rstrip('.') or 'unparsable'}")
            return
        # a chunk wholly inside one request's head counts (the one that began it does not,
        # so a head is refused within MAX_HEAD plus one read, 256 KiB)
        if in_head and self._in_head and begun == self._begun:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head:
                self._refuse(431, f"request line and headers over {self.max_head} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    # ---------------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._body_done = True, 0, False
        self._begun += 1
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_done = True
        super().on_message_complete()

    # -------------------------------------------------------------------------------- refusals

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, f"request headers not received within {self.header_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request the app never saw, and close."""
        self._cancel_head_timer()
        transport = self.transport
        if transport.is_closing():
            return
        body = json.dumps({"error": message}).encode()
        head = [f"HTTP/1.1 {status} {_REASONS[status]}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json",
                 b"content-length: " + str(len(body)).encode(), b"connection: close"]
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        counted = getattr(self.app, "refused", None)
        if counted is not None:
            counted(status)
        self._in_head = False
        transport.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def linger(self, transport: asyncio.Transport) -> bool:
        """Called when the connection is to close: whether to keep reading for a while first
        (the client is still sending a body the answer refused). A connection closed while
        its client is still sending headers (a shutdown) has no answer to read: it just closes."""
        if self._body_done or self._in_head or self._lingering or transport.is_closing():
            return False
        self._lingering = True
        if transport.can_write_eof():
            transport.write_eof()  # the answer, then FIN: the client sees both
        transport.resume_reading()
        self.loop.call_later(LINGER, transport.close)
        return True


class _Transport:
    """The connection's transport as uvicorn sees it, with ``close`` made a lingering close."""

    def __init__(self, transport: asyncio.Transport, protocol: LimitedProtocol):
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closed or self._transport.is_closing()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._protocol.linger(self._transport):
                return
        self._transport.close()

    def write(self, data: bytes) -> None:
        if not self._closed:
            self._transport.write(data)
