"""The git store's records: one JSON file per write transaction, replayable into SQLite.

A record holds the data-changing SQL statements a write transaction ran (INSERT, UPDATE, DELETE
with their parameters) exactly as the SQLite cache ran them. Replaying every record of the
branch in commit order on an empty cache therefore rebuilds the same rows, autoincrement ids
included: each writer ran its statements on the state the records before it produced (the
push is a compare-and-swap on that state). A record also says what it was (``op``, e.g.
``register_model``), who wrote it, when, from which CI run, and carries the sha256 of its own
content, so that a hand-edited or damaged file is recognised and named.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from cd4ml.store.schema import metadata

FORMAT = "cd4ml-store-record/1"
_WRITE = re.compile(r"(?:INSERT INTO|UPDATE|DELETE FROM) (\w+)[\s(]")
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class RecordError(ValueError):
    """A record file is not one cd4ml wrote, or was changed after it was written."""


@dataclass(frozen=True)
class Statement:
    """One data-changing statement; ``params`` is a list of rows when ``many``."""

    sql: str
    params: list
    many: bool = False


@dataclass(frozen=True)
class Effect:
    """What a statement did: rows touched and, for an insert, the new row's id."""

    rowcount: int
    lastrowid: int | None


@dataclass(frozen=True)
class Record:
    """One write transaction of the store."""

    id: str
    op: str
    at: str
    actor: str | None
    schema: str  # the newest migration of the writer's store: what the statements assume
    statements: list[Statement]
    host: str = field(default_factory=socket.gethostname)
    ci_run: str | None = None
    format: str = FORMAT

    @classmethod
    def new(cls, op: str, at: str, actor: str | None, schema: str,
            statements: list[Statement]) -> Record:
        server, repo, run = (os.environ.get(k) for k in
                             ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
        ci_run = f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None
        return cls(id=uuid.uuid4().hex[:16], op=op, at=at, actor=actor, schema=schema,
                   statements=statements, ci_run=ci_run)

    @property
    def path(self) -> str:
        """``records/YYYY-MM-DD/<x>/<y>/<HHMMSS>Z-<op>-<id>.json``: by day, then spread by the
        id's first two hex digits. Each commit rewrites every tree on its file's path, and the
        trees' bytes are most of what a fetch indexes and a replay diffs: two levels of 16
        write ~3 KB of trees per record on a day of 7,000 records, one level of 256 (the
        layout before, ``<xx>/``) ~11 KB. Readers take any file under ``records/``, whatever
        its layout, so branches written before read as they did."""
        clock = self.at[11:19].replace(":", "")
        return (f"records/{self.at[:10]}/{self.id[0]}/{self.id[1]}/"
                f"{clock}Z-{self.op}-{self.id}.json")

    def to_bytes(self) -> bytes:
        body = {**asdict(self), "sha256": _BLANK}
        text = (json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
        return text.replace(_blank_line(), _sha_line(hashlib.sha256(text).hexdigest()), 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> Record:
        """Parse and verify a record file; RecordError says what is wrong with it."""
        try:
            body = _loads(data)
        except ValueError as e:
            raise RecordError(f"not JSON ({e})") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise RecordError(f"not a {FORMAT} record")
        claimed = str(body.pop("sha256", ""))
        # the sha256 of the file as written, with its own value blanked: no re-serialising
        if hashlib.sha256(data.replace(_sha_line(claimed), _blank_line(), 1)).hexdigest() != claimed:
            raise RecordError("its content does not match its sha256 (edited by hand or damaged)")
        try:
            body["statements"] = [Statement(**s) for s in body["statements"]]
            record = cls(**body)
        except (TypeError, KeyError) as e:
            raise RecordError(f"malformed ({e})") from None
        for n, statement in enumerate(record.statements, start=1):
            # anyone who may push to the branch can write a record: it may only change rows
            found = _WRITE.match(statement.sql) if isinstance(statement.sql, str) else None
            if found is None or found.group(1) not in metadata.tables:
                raise RecordError(f"statement {n} is not a write to a store table: "
                                  f"{str(statement.sql)[:40]!r}")
        return record


def _loads(data: bytes) -> Any:
    """orjson (a cold rebuild parses thousands of records: a fifth of its Python time went to
    the json module); the json module for what orjson refuses but the writer's json.dumps can
    write (a lone surrogate escaped in a string), so that no record becomes unreadable. (The
    two differ on integers past 64 bits, which no statement can hold: SQLite's are 64-bit.)"""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


_BLANK = "0" * 64


def _sha_line(value: str) -> bytes:
    return f' "sha256": "{value}",'.encode()


def _blank_line() -> bytes:
    return _sha_line(_BLANK)


class Capture:
    """Collects the data-changing statements run on one connection, and their effects."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []
        self.effects: list[Effect] = []


@contextmanager
def capture(conn: sa.Connection) -> Iterator[Capture]:
    """Record what ``conn`` writes inside the block (see :func:`listen`)."""
    found = Capture()
    conn.info["cd4ml_capture"] = found
    try:
        yield found
    finally:
        conn.info.pop("cd4ml_capture", None)


def listen(engine: sa.Engine) -> None:
    """Let :func:`capture` see the statements of ``engine``'s connections."""
    sa.event.listen(engine, "after_cursor_execute", _after_execute)


def _after_execute(conn: sa.Connection, cursor: Any, statement: str, parameters: Any,
                   context: Any, executemany: bool) -> None:
    found: Capture | None = conn.info.get("cd4ml_capture")
    if found is None or not statement.lstrip().upper().startswith(_WRITES):
        return
    params = [list(p) for p in parameters] if executemany else list(parameters or ())
    found.statements.append(Statement(statement, params, executemany))
    found.effects.append(_effect(statement, cursor, executemany))


def _effect(statement: str, cursor: Any, many: bool) -> Effect:
    insert = statement.lstrip().upper().startswith("INSERT") and not many
    return Effect(cursor.rowcount, cursor.lastrowid if insert else None)


def replay(conn: sa.Connection, statements: list[Statement], atomic: bool = False) -> list[Effect]:
    """Run ``statements`` on ``conn`` (all or none of them if ``atomic``); their effects, to
    compare with the original ones. The driver's cursor, not SQLAlchemy's: a cold rebuild runs
    thousands of records, and the statements are already the driver's."""
    effects = []
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if atomic:
            cursor.execute("SAVEPOINT cd4ml_record")
        for s in statements:
            params: Any = [tuple(p) for p in s.params] if s.many else tuple(s.params)
            try:
                if s.many:
                    cursor.executemany(s.sql, params)
                else:
                    cursor.execute(s.sql, params)
            except sqlite3.DatabaseError as e:
                if atomic:
                    cursor.execute("ROLLBACK TO cd4ml_record")
                    cursor.execute("RELEASE cd4ml_record")
                # as SQLAlchemy would raise it: the Store's retry loops catch sa.exc.IntegrityError
                raise sa.exc.DBAPIError.instance(s.sql, params, e, sqlite3.DatabaseError) from None
            effects.append(_effect(s.sql, cursor, s.many))
        if atomic:
            cursor.execute("RELEASE cd4ml_record")
    finally:
        cursor.close()
    return effects
