"""The web view's HTTP server: the standard library's threaded server, the pages (static files
shipped in the wheel) and the JSON API.

Why no framework: the view is read-only, local, a dozen GET routes and a few static files; the
standard library serves that with no dependency to install on an air-gapped machine, and the
cost that matters (a page of 10,000 runs) is in the table, not in the HTTP layer.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cd4ml.errors import UiError
from cd4ml.store import Store
from cd4ml.ui.access import Access, is_loopback, new_token
from cd4ml.ui.api import Api, Response, error

log = logging.getLogger(__name__)

#: strings from the store are put in pages as text by the scripts; this policy stops anything
#: that slipped through from running (no inline script, nothing from elsewhere)
SECURITY_HEADERS = (
    ("Content-Security-Policy", ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                 "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                 "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


# not mimetypes: its answers depend on the machine's /etc/mime.types
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "css": "text/css; charset=utf-8", "png": "image/png", "svg": "image/svg+xml",
          "txt": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class UiConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    root: Path = field(default_factory=Path.cwd)  # where pipelines/ is looked for
    log_paths: tuple[Path, ...] = ()  # prediction logs; default: the lineage command's


@dataclass(frozen=True)
class Started:
    url: str  # to open; carries the token when one is needed
    token: str | None


def static_files() -> dict[str, tuple[str, bytes]]:
    """name -> (content type, bytes) of every file in cd4ml/ui/static, read once."""
    out = {}
    for entry in resources.files("cd4ml.ui").joinpath("static").iterdir():
        if entry.is_file():
            kind = _TYPES.get(entry.name.rpartition(".")[2], "application/octet-stream")
            out[entry.name] = (kind, entry.read_bytes())
    return out


class UiServer(ThreadingHTTPServer):
    daemon_threads = True
    api: Api
    access: Access
    files: dict[str, tuple[str, bytes]]


class Handler(BaseHTTPRequestHandler):
    server: UiServer
    server_version = "cd4ml-ui"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a read-only local view: no access log on the terminal

    def do_GET(self) -> None:
        self._send(self._answer(), head=False)

    def do_HEAD(self) -> None:
        self._send(self._answer(), head=True)

    def _refuse(self) -> None:
        self._send(error(405, "the web view is read-only: GET only"), head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _answer(self) -> Response:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        verdict = self.server.access.check(self.headers, query)
        if not verdict.allowed:
            return error(403, verdict.reason)
        response = self._route(parts.path, query)
        if verdict.set_cookie:
            response = Response(response.status, response.content_type, response.body,
                                response.headers + (("Set-Cookie", verdict.set_cookie),))
        return response

    def _route(self, path: str, query: dict[str, list[str]]) -> Response:
        if path.startswith("/api/"):
            try:
                return self.server.api.handle(path, query)
            except Exception as e:  # noqa: BLE001 -- one failing view must not take the server down
                return error(500, f"{type(e).__name__}: {e}")
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        found = self.server.files.get(name) if name == "index.html" or path.startswith("/static/") else None
        if found is None:
            return error(404, f"no page {path}")
        return Response(200, found[0], found[1])

    def _send(self, r: Response, head: bool) -> None:
        self.send_response(r.status)
        self.send_header("Content-Type", r.content_type)
        self.send_header("Content-Length", str(len(r.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in SECURITY_HEADERS + r.headers:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(r.body)


def start(config: UiConfig, store: Store) -> tuple[UiServer, Started]:
    """Listen (not yet serving: call ``serve_forever``); a token is made unless on loopback."""
    token = None if is_loopback(config.host) else new_token()
    try:
        server = UiServer((config.host, config.port), Handler)
    except OSError as e:
        raise UiError(f"cannot listen on {config.host}:{config.port}: {e.strerror}; "
                      "choose another --port or --host") from None
    server.api = Api(store, config.root, list(config.log_paths) or None)
    # the runs table's columns are read before the first visitor asks for a page
    threading.Thread(target=_warm, args=(server.api,), daemon=True, name="cd4ml-ui-warm").start()
    server.access = Access(token)
    server.files = static_files()
    host, port = server.server_address[:2]
    shown = f"[{host!s}]" if ":" in str(host) else str(host)
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    return server, Started(url, token)


def _warm(api: Api) -> None:
    try:
        api.runs.warm()
    except Exception as e:  # noqa: BLE001 -- the first request meets the same error and shows it
        log.debug("reading the runs table's columns ahead failed: %s", e)


def serve_in_thread(config: UiConfig, store: Store) -> tuple[UiServer, Started]:
    """For tests and benchmarks: the server answering from a daemon thread."""
    server, started = start(config, store)
    threading.Thread(target=server.serve_forever, daemon=True, name="cd4ml-ui").start()
    return server, started
