"""HTTP/1.1 on the standard library: the request handler and the threaded server.

One thread per connection with keep-alive: a single-row prediction costs well under a
millisecond of Python after the forest shortcut, so per-request overhead is what is left to
save. Responses go out in one ``send`` (headers and body together, Nagle off), there is no
access log (``/metrics`` and the prediction log say more), and nothing resolves names.
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import time
import traceback
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any

from cd4ml.serve import schema
from cd4ml.serve.app import JSON, App, Request

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
            414: "URI Too Long", 422: "Unprocessable Content", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}


def _request_id(given: str | None) -> str:
    # a client's id is echoed into headers and logs: only a short run of visible ASCII is kept
    if given and len(given) <= 200 and given.isascii() and given.isprintable() and " " not in given:
        return given
    return uuid.uuid4().hex


_date: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date
    now = int(time.time())
    if now != _date[0]:
        _date = (now, formatdate(now, usegmt=True))  # one assignment: threads see a whole pair
    return _date[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cd4ml-serve"
    disable_nagle_algorithm = True
    #: seconds an idle keep-alive connection (or a stalled upload) is kept
    timeout = 60
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        # access logs would cost more than a prediction; /metrics and the prediction log say it all
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        # load balancers probe with HEAD: a GET whose body is not sent (see _send)
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, oversized headers) as JSON like the rest
        self.close_connection = True
        body = json.dumps({"error": message or _REASONS.get(code, "error")}).encode()
        self._send(code, JSON, body, None)
        self.server.app.metrics.observe("other", code, 0.0)

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        app = self.server.app
        path = self.path.split("?", 1)[0]
        request_id = _request_id(self.headers.get("X-Request-ID"))
        allowed = app.routes.get(path)
        endpoint = path if allowed is not None else "other"
        extra = None
        if not app.enter():
            self.close_connection = True
            status, ctype = 503, JSON
            body = json.dumps({"error": "the server is shutting down",
                               "request_id": request_id}).encode()
        else:
            try:
                status, ctype, body, extra = self._route(app, method, allowed, request_id)
            finally:
                app.leave()
        self._send(status, ctype, body, request_id, extra)
        app.metrics.observe(endpoint, status, time.perf_counter() - started)

    def _route(self, app: App, method: str, allowed: dict | None, request_id: str,
               ) -> tuple[int, str, bytes, str | None]:
        when = time.time()
        try:
            body = self._body(app.max_body)
            if allowed is None:
                raise schema.RequestError(404, f"no endpoint {self.path.split('?', 1)[0]}; see "
                                          "GET /openapi.json")
            handler = allowed.get("GET" if method == "HEAD" else method)
            if handler is None:
                raise schema.RequestError(405, f"{method} is not allowed here; use "
                                          f"{', '.join(allowed)}")
            status, ctype, payload = handler(Request(request_id, body, when))
            return status, ctype, payload, None
        except schema.RequestError as e:
            error: dict[str, Any] = {"error": e.message, "request_id": request_id}
            if e.errors:
                error["errors"] = e.errors
            allow = ", ".join(allowed) if e.status == 405 and allowed else None
            return e.status, JSON, json.dumps(error).encode(), allow
        except Exception as e:  # noqa: BLE001 - a bug must answer 500, not drop the connection
            traceback.print_exc(file=sys.stderr)
            failure = {"error": f"internal error: {type(e).__name__}: {e}",
                       "request_id": request_id}
            return 500, JSON, json.dumps(failure, default=str).encode(), None

    def _body(self, limit: int) -> bytes:
        # chunked wins over a Content-Length beside it (RFC 9112 6.3), as in any proxy in front
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._chunked(limit)
        length = self.headers.get("Content-Length")
        if length is not None:
            try:
                n = int(length)
                if n < 0:
                    raise ValueError
            except ValueError:
                self.close_connection = True
                raise schema.RequestError(400, f"Content-Length {length!r} is not a byte "
                                          "count") from None
            if n > limit:
                # the unread body would be taken for the next request: drop the connection
                self.close_connection = True
                raise schema.RequestError(413, f"request body of {n} bytes; the limit is {limit}")
            return self.rfile.read(n) if n > 0 else b""
        return b""

    def _chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                n = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise schema.RequestError(400, "malformed chunked request body") from None
            if n == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            size += n
            if size > limit:
                self.close_connection = True
                raise schema.RequestError(413, f"request body over the limit of {limit} bytes")
            parts.append(self.rfile.read(n))
            self.rfile.readline(8)

    def _send(self, status: int, ctype: str, body: bytes, request_id: str | None,
              allow: str | None = None) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                f"Date: {_http_date()}", f"Server: {self.server_version}",
                f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        if request_id:
            head.append(f"X-Request-ID: {request_id}")
        if allow:
            head.append(f"Allow: {allow}")
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            data += body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client went away; nothing left to tell it


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; made before the workers fork so that they all share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=512)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A thread per connection, over a socket that is already listening (maybe shared)."""

    daemon_threads = True
    # shutdown waits for requests in flight itself (App.drain), not for idle keep-alive threads
    block_on_close = False
    app: App

    def __init__(self, sock: socket.socket, app: App):
        # BaseServer, not TCPServer: the socket exists already, and binding it again (or
        # HTTPServer's getfqdn, a DNS lookup) has no place here
        socketserver.BaseServer.__init__(self, sock.getsockname(), Handler)
        self.socket = sock
        self.app = app

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client hanging up mid-request is routine (load generators, timeouts, probes)
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)
