"""Store backends by name: a URL that starts with a registered prefix opens that backend.

Every other URL is a SQLAlchemy URL (SQLite, PostgreSQL) opened by :class:`cd4ml.store.Store`
itself. A backend is a Store subclass, named as ``"module:Class"`` so that it is imported only
when a URL asks for it (``cd4ml --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cd4ml.store import Store

BACKENDS: dict[str, str] = {
    "git+": "cd4ml.store.gitstore:GitStore",  # git+<remote>#<branch>: records on a git branch
}


def register(prefix: str, target: str) -> None:
    """Open URLs starting with ``prefix`` with the Store subclass ``target`` (``module:Class``)."""
    BACKENDS[prefix] = target


def backend_for(url: str) -> type[Store] | None:
    """The Store subclass for ``url``, or None for a SQLAlchemy URL."""
    for prefix, target in BACKENDS.items():
        if url.startswith(prefix):
            module, _, name = target.partition(":")
            backend = getattr(importlib.import_module(module), name)
            # a backend may open some of its URLs with a subclass (the git store's ?writes=local)
            variant = getattr(backend, "variant", None)
            return variant(url) if variant is not None else backend
    return None
