"""The model server's HTTP face: a plain ASGI application over :class:`cd4ml.serve.app.App`.

uvicorn (see :mod:`cd4ml.serve.protocol`) owns the connections; this turns a request into a
call of an endpoint and its answer into one response, with the request id, the ``Allow`` of a
405, and the body limit, which holds for chunked bodies too: the body is read a piece at a time
(uvicorn stops reading the socket while a piece waits) and refused with 413 as soon as it
passes ``max_body``, or before a byte of it is read when ``Content-Length`` says so. No web
framework: the routes are a dict, and a framework's per-request machinery would cost more
than the prediction of one row.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import uuid
from typing import Any

from cd4ml.serve import schema
from cd4ml.serve.app import App, Request

_CLOSE = (b"connection", b"close")


def _request_id(given: bytes | None) -> str:
    # a client's id is echoed into headers and logs: only a short run of visible ASCII is kept
    if given and len(given) <= 200:
        text = given.decode("latin-1")
        if text.isascii() and text.isprintable() and " " not in text:
            return text
    return uuid.uuid4().hex


class _Gone(Exception):
    """The client went away while sending its body: nobody to answer."""


class Asgi:
    """The ASGI application: routing, body limits, errors as JSON, metrics per request."""

    def __init__(self, app: App):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # no lifespan (uvicorn is told so), no websockets
        started = time.perf_counter()
        app = self.app
        given = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
        request_id = _request_id(given)
        allowed = app.routes.get(scope["path"])
        try:
            status, ctype, body, extra = await self._route(scope, receive, allowed, request_id)
        except _Gone:
            return
        headers = [(b"content-type", ctype), (b"content-length", b"%d" % len(body)),
                   (b"x-request-id", request_id.encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        app.metrics.observe(scope["path"] if allowed is not None else "other", status,
                            time.perf_counter() - started)

    def refused(self, status: int) -> None:
        """Count a request the protocol refused before it reached the app (400, 408, 431)."""
        self.app.metrics.observe("other", status, 0.0)

    async def _route(self, scope: dict, receive: Any, allowed: dict | None, request_id: str,
                     ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        when = time.time()
        method = scope["method"]
        try:
            if allowed is None:
                raise schema.RequestError(404, f"no endpoint {scope['path']}; see "
                                          "GET /openapi.json")
            handler = allowed.get("GET" if method == "HEAD" else method)
            if handler is None:
                raise schema.RequestError(405, f"{method} is not allowed here; use "
                                          f"{_allow(allowed)}")
            body = await self._body(scope, receive) if method == "POST" else b""
            status, ctype, payload = handler(Request(request_id, body, when))
            return status, ctype.encode(), payload, []
        except schema.RequestError as e:
            error: dict[str, Any] = {"error": e.message, "request_id": request_id}
            if e.errors:
                error["errors"] = e.errors
            extra = []
            if e.status == 405 and allowed:
                extra.append((b"allow", _allow(allowed).encode()))
            if e.status == 413:
                extra.append(_CLOSE)  # the rest of the body is not read: it is not a request
            return e.status, b"application/json", json.dumps(error).encode(), extra
        except _Gone:
            raise
        except Exception:  # noqa: BLE001 - a bug must answer 500, not drop the connection
            # the details go to the server's log, never to the client
            traceback.print_exc(file=sys.stderr)
            failure = {"error": "internal error; the server's log has the details",
                       "request_id": request_id}
            return 500, b"application/json", json.dumps(failure).encode(), []

    async def _body(self, scope: dict, receive: Any) -> bytes:
        limit = self.app.max_body
        for name, value in scope["headers"]:
            # (llhttp has checked it is a byte count, and refused it beside chunked)
            if name == b"content-length" and int(value) > limit:
                raise schema.RequestError(413, f"request body of {int(value)} bytes; the limit "
                                          f"is {limit}")
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise schema.RequestError(413, f"request body over the limit of {limit} bytes")
            parts.append(part)
            if not message.get("more_body"):
                return parts[0] if len(parts) == 1 else b"".join(parts)


def _allow(allowed: dict) -> str:
    methods = list(allowed)
    if "GET" in methods:
        methods.append("HEAD")
    return ", ".join(methods)
