"""Known secret values, and text with them taken out.

Whatever path led a secret into a message — a spec that names ``/proc/self/environ``, a git or
registry error that echoes a URL, a user's exception text — the CLI, the logs and the store's
error fields pass through :func:`redact` before anything is printed or recorded.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

#: environment variables whose whole value is a secret
SECRET_ENV = ("GITHUB_TOKEN", "GH_TOKEN", "CD4ML_REGISTRY_PASSWORD", "CD4ML_UI_TOKEN",
              "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
#: environment variables holding URLs whose password part is a secret
SECRET_URL_ENV = ("CD4ML_STORE_URL",)
#: shorter values would redact ordinary words
_MIN_LEN = 6
_MASK = "***"
# a password inside any URL, even one cd4ml does not know of (scheme://user:PASSWORD@host)
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)")

_registered: set[str] = set()


def register(value: str | None) -> None:
    """Treat ``value`` as a secret from now on (a password read from somewhere else than the
    environment, a token handed over in code)."""
    if value and len(value) >= _MIN_LEN:
        _registered.add(value)


def known() -> list[str]:
    """The secret values this process knows of, longest first (so a token that contains another
    is masked whole)."""
    found = set(_registered)
    for name in SECRET_ENV:
        v = os.environ.get(name, "")
        if len(v) >= _MIN_LEN:
            found.add(v)
    for name in SECRET_URL_ENV:
        try:
            password = urlsplit(os.environ.get(name, "")).password
        except ValueError:
            password = None
        if password and len(password) >= _MIN_LEN:
            found.add(password)
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every known secret and every URL password replaced by ``***``."""
    for value in known():
        text = text.replace(value, _MASK)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{_MASK}{m.group(3)}", text)


def excerpt(value: object, limit: int = 40) -> str:
    """A short, printable excerpt of something read from a file, fit for an error message:
    control characters shown escaped, cut at ``limit`` characters, secrets taken out."""
    text = redact(str(value))
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
