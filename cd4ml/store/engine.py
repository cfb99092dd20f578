"""Opening the database behind a store: the URL, the driver, and what SQLite needs so that
several CI jobs can write at once (WAL, a busy timeout, ``BEGIN IMMEDIATE`` for writes).

JSON columns are written with NaN and infinities as text, which PostgreSQL would refuse.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cd4ml.errors import StoreError


def create_engine(url: str) -> tuple[sa.Engine, bool]:
    """An engine for ``url`` and whether it is SQLite; a bad URL or a missing driver is a
    StoreError that says what to do."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: e.g. a port that is not a number
        raise StoreError(f"CD4ML_STORE_URL: not a database URL: {redact(url)!r}; "
                         "use e.g. sqlite:///path.db or postgresql+psycopg://user@host/db") from None
    is_sqlite = parsed.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {"json_serializer": _dumps}
    if is_sqlite:
        if not parsed.database or parsed.database == ":memory:":
            kwargs["poolclass"] = sa.pool.StaticPool  # one shared in-memory database
        elif not parsed.query.get("uri"):  # a URI filename (file:path?mode=ro) must exist already
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the store's directory for {redact(url)}: "
                                 f"{e.strerror}; set CD4ML_HOME or CD4ML_STORE_URL elsewhere") from None
            _check_or_create_sqlite(Path(parsed.database))
        kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ImportError, sa.exc.NoSuchModuleError) as e:
        raise StoreError(f"no driver for {redact(url)}: {e}; pip install 'cd4ml[postgres]'") from None
    if is_sqlite:
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine, is_sqlite


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_or_create_sqlite(path: Path) -> None:
    """Refuse a store file that exists but is empty or not SQLite — opening it would silently
    start a new store at version 1, whose artifacts then collide with the old ones — and create
    a missing one with its header written at once. Both under a lock on the folder, so that a
    file another process is creating this instant is never taken for a truncated one."""
    import fcntl
    import os
    import sqlite3

    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        try:
            with open(path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
        except FileNotFoundError:
            conn = sqlite3.connect(path)
            try:
                conn.execute("PRAGMA journal_mode=WAL")  # writes the header now
            finally:
                conn.close()
            return
        except OSError as e:
            raise StoreError(f"{path}: cannot read the store: {e.strerror}") from None
        if head != _SQLITE_HEADER:
            what = "empty (0 bytes)" if not head else "not a SQLite database"
            raise StoreError(f"{path}: the store exists but is {what}; cd4ml never replaces a "
                             "store silently: restore it from a backup, or move it away to "
                             "start an empty one")
    finally:
        os.close(folder)


def redact(url: str) -> str:
    """A store URL fit to print: the password replaced."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- whatever could not be parsed is never printed raw
        return "<unparseable store URL>"


def first_line(e: Exception) -> str:
    """The first line of a database error, without SQLAlchemy's wrapping."""
    return str(getattr(e, "orig", e)).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _json_safe(o: Any) -> Any:
    # NaN and infinities are not JSON, and PostgreSQL refuses them: keep them as text.
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    return o


def _dumps(o: Any) -> str:
    return json.dumps(_json_safe(o), default=str, sort_keys=True)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # let SQLAlchemy's "begin" event issue BEGIN itself, so that it can be IMMEDIATE
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 60000")
    _set_wal(dbapi_conn, cur)
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def _set_wal(dbapi_conn: Any, cur: Any) -> None:
    # Turning a new database into WAL takes a lock SQLite does not wait for (busy_timeout does
    # not apply), so jobs opening a fresh store at the same moment retry here instead of failing
    # with "database is locked".
    deadline = time.monotonic() + 60
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except dbapi_conn.OperationalError as e:
            # the primary result code (low byte): SQLITE_BUSY or SQLITE_LOCKED, extended or not
            code = getattr(e, "sqlite_errorcode", 0) & 0xFF
            if code not in (_SQLITE_BUSY, _SQLITE_LOCKED) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("cd4ml_read") else "BEGIN IMMEDIATE")
