"""Who may read the web view. Bound to the loopback interface (the default) it answers only
requests addressed to a loopback name, so that a web page elsewhere cannot reach it through DNS
rebinding. Bound to any other address it needs a token, made once at start and printed once:
``?token=...`` in the first URL (then a cookie), or ``Authorization: Bearer ...``.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from http.cookies import CookieError, SimpleCookie

COOKIE = "cd4ml_ui_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    set_cookie: str | None = None  # a header value, when the token came in the URL
    reason: str = ""


@dataclass(frozen=True)
class Access:
    """``token`` None: loopback only, checked by the Host header."""

    token: str | None

    def check(self, headers: Mapping[str, str] | Message, query: Mapping[str, list[str]]) -> Verdict:
        if self.token is None:
            host = _hostname(headers.get("Host") or "")
            if host in LOOPBACK_NAMES or is_loopback(host):
                return Verdict(True)
            return Verdict(False, reason=f"Host {host!r} is not this machine's loopback name")
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given.encode(), self.token.encode()):
            return Verdict(True, f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/")
        auth = headers.get("Authorization") or ""
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), self.token.encode()):
            return Verdict(True)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("Cookie") or "")
        except CookieError:  # a malformed Cookie header is no token, not an error page
            return Verdict(False, reason="no valid token")
        morsel = cookie.get(COOKIE)
        if morsel is not None and hmac.compare_digest(morsel.value.encode(), self.token.encode()):
            return Verdict(True)
        return Verdict(False, reason="no valid token: open the URL 'cd4ml ui' printed at start")


def _hostname(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8765
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header
