"""The runs table of the web view: every run as one row like the team spreadsheet (date, who,
commit, pipeline, version, status, every parameter and metric a column), filtered, sorted and
paged on the server, and exported as CSV.

The rows are ``cd4ml runs --json``'s objects (``reporting.api.RunRow.json``), kept in memory
for the whole store until it changes (read by ``cd4ml.store.runtable.every_row``); until they
are read, the database answers a page by itself (``cd4ml.store.runtable``), reading its fifty
rows.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cd4ml.reporting.api import rows_for
from cd4ml.states import RunStatus
from cd4ml.store import Store
from cd4ml.store.liveness import shown_status
from cd4ml.store.runtable import (
    RunFilter,
    StoredRow,
    TableColumns,
    every_row,
    page_ids,
    running,
    runs_by_id,
    sortable,
    table_columns,
)

log = logging.getLogger(__name__)

#: the spreadsheet's leading columns, in order: (key, title)
FIXED = (("started_at", "date"), ("actor", "who"), ("git_commit", "commit"),
         ("pipeline", "pipeline"), ("model_version", "version"), ("status", "status"),
         ("blessed", "blessed"), ("duration_seconds", "duration s"), ("id", "run"),
         ("branch", "branch"), ("kind", "kind"), ("reused_from", "cached from"))
PER_PAGE_MAX = 500
#: runs read at a time for a CSV export
CSV_CHUNK = 500
#: seconds a thread holds the GIL while another wants it, while the table is read (Python's
#: default: 0.005)
SWITCH_INTERVAL = 0.0002


@dataclass(frozen=True)
class RunsQuery:
    """What the runs page asks for; every field comes from the URL's query string."""

    pipeline: str = ""
    status: str = ""
    blessed: str = ""  # "yes" | "no" | ""
    text: str = ""  # in the run id, commit, actor, branch, pipeline, status, error, params or tags
    sort: str = "started_at"  # a fixed key, "param.NAME" or "metric.NAME"
    descending: bool = True
    page: int = 1
    per_page: int = 50

    @classmethod
    def from_query(cls, q: Mapping[str, list[str]]) -> RunsQuery:
        def one(name: str, default: str = "") -> str:
            return (q.get(name) or [default])[0].strip()

        def number(name: str, default: int, top: int) -> int:
            try:
                return max(1, min(top, int(one(name, str(default)))))
            except ValueError:
                return default

        return cls(pipeline=one("pipeline"), status=one("status"), blessed=one("blessed"),
                   text=one("q"), sort=one("sort", "started_at") or "started_at",
                   descending=one("order", "desc") != "asc",
                   page=number("page", 1, 10**9), per_page=number("per_page", 50, PER_PAGE_MAX))


class Snapshot:
    """The whole runs table as the store had it at one moment (its fingerprint ``mark``),
    in memory: each column's order is computed once, when first asked for."""

    def __init__(self, mark: str, rows: list[StoredRow], columns: TableColumns):
        rows.sort(key=lambda r: (r.row["started_at"], r.row["id"]), reverse=True)  # ties: newest first
        self.mark, self.columns = mark, columns
        self.rows = [_row(r.row) for r in rows]
        #: run id -> what a text filter looks in, lower case
        self.fields = {r.row["id"]: _fields(r) for r in rows}
        self._orders: dict[tuple[str, bool], list[dict]] = {}

    def ordered(self, key: str, descending: bool) -> list[dict]:
        found = self._orders.get((key, descending))
        if found is None:
            if not sortable(key, self.columns) or (key == "started_at" and descending):
                found = self.rows
            else:
                present: list[dict] = []
                missing: list[dict] = []
                for r in self.rows:
                    (missing if value(r, key) is None else present).append(r)
                # numbers before text; stable, so that ties stay newest first both ways
                found = sorted(present, key=lambda r: _order(value(r, key)),
                               reverse=descending) + missing
            self._orders[(key, descending)] = found
        return found


class RunsTable:
    """The store's runs, a page at a time. The whole table is kept in memory (a page is then
    a filter and a sort of rows already read) until ``Store.fingerprint()`` says something was
    recorded; while it is being read (on a fresh server, after a change) a page is asked of
    the database instead (:mod:`cd4ml.store.runtable`: filtered, sorted, paged and counted
    there, reading its fifty rows), so that no request waits for ten thousand rows. Both
    give the same page (``tests/unit/test_ui_runs_sql.py``)."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._columns_lock = threading.Lock()
        self._current: Snapshot | None = None
        self._columns: tuple[str, TableColumns, tuple[set[str], set[str]]] | None = None
        self._reading: str | None = None  # the mark being read in the background

    # ------------------------------------------------------------------ what the pages use

    def page(self, q: RunsQuery) -> dict:
        """One page of matching rows, and what the page needs to draw its controls."""
        mark = self.store.fingerprint()
        table = self._current
        if table is not None and table.mark == mark:
            return self.from_memory(q, table)
        answer = self.from_database(q, mark)
        self._read(mark)  # after the answer: the read would slow it down (the GIL)
        return answer

    def from_memory(self, q: RunsQuery, table: Snapshot) -> dict:
        found = self.matching(q, table)
        start = (q.page - 1) * q.per_page
        return self._page(q, table.columns, len(found), found[start:start + q.per_page],
                          sorted({r["status"] for r in table.rows}))

    def from_database(self, q: RunsQuery, mark: str) -> dict:
        columns = self.columns(mark)
        alive, dead = self._running(mark)
        total, ids = self._ids(q, columns, dead, (q.page - 1) * q.per_page, q.per_page)
        statuses = set(columns.statuses)
        if dead:
            statuses.add(RunStatus.ABANDONED.value)
            if alive <= dead:
                statuses.discard(RunStatus.RUNNING.value)
        return self._page(q, columns, total, self._rows(ids), sorted(statuses))

    def warm(self) -> None:
        """Read the table's columns before anyone asks (the first page reads the table)."""
        self.columns(self.store.fingerprint())

    def csv(self, q: RunsQuery, columns: list[str] | None = None) -> str:
        """Every matching row (not one page) as CSV, in the chosen columns."""
        mark = self.store.fingerprint()
        table = self._current if self._current is not None and self._current.mark == mark else None
        known = table.columns if table is not None else self.columns(mark)
        keys = columns or ([k for k, _ in FIXED] + [f"metric.{m}" for m in known.metrics]
                           + [f"param.{p}" for p in known.params])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(keys)
        if table is not None:
            chunks: Any = [self.matching(q, table)]
        else:
            _, ids = self._ids(q, known, self._running(mark)[1])
            chunks = (self._rows(ids[i:i + CSV_CHUNK]) for i in range(0, len(ids), CSV_CHUNK))
        for chunk in chunks:
            for row in chunk:
                writer.writerow([_cell(value(row, k)) for k in keys])
        return buf.getvalue()

    def pipelines(self) -> list[str]:
        return list(self.columns(self.store.fingerprint()).pipelines)

    # ------------------------------------------------------------------ in memory

    def matching(self, q: RunsQuery, table: Snapshot) -> list[dict]:
        ordered = table.ordered(q.sort, q.descending)
        text = q.text.lower()
        blessed = {"yes": True, "no": False}.get(q.blessed)
        if not (q.pipeline or q.status or text or blessed is not None):
            return ordered
        fields = table.fields
        return [r for r in ordered
                if (not q.pipeline or r["pipeline"] == q.pipeline)
                and (not q.status or r["status"] == q.status)
                and (blessed is None or bool(r["blessed"]) == blessed)
                and (not text or any(text in f for f in fields[r["id"]]))]

    def _read(self, mark: str) -> None:
        """Have the table as of ``mark`` read in the background, unless it is being read."""
        with self._lock:
            if self._reading != mark:
                self._reading = mark
                threading.Thread(target=self._refresh, args=(mark,), daemon=True,
                                 name="cd4ml-ui-runs").start()

    def read(self, mark: str) -> Snapshot:
        """The whole table, now."""
        return Snapshot(mark, every_row(self.store, self._running(mark)[1]), self.columns(mark))

    def _refresh(self, mark: str) -> None:
        # the read is pure Python for a second or more: a request thread coming back from the
        # database would wait for the GIL up to the switch interval each time (5 ms by
        # default, hundreds of times a page)
        try:
            with _short_switches():
                fresh: Snapshot | None = self.read(mark)
        except Exception as e:  # noqa: BLE001 -- pages come from the database; the next one retries
            log.warning("reading the runs table failed: %s", e)
            fresh = None
        with self._lock:
            if fresh is not None:
                self._current = fresh
            self._reading = None

    # ------------------------------------------------------------------ from the database

    def columns(self, mark: str) -> TableColumns:
        return self._kept(mark)[0]

    def _running(self, mark: str) -> tuple[set[str], set[str]]:
        """(the running runs, those of them whose process is gone: shown as abandoned), as
        the table in memory has them: found once per change of the store."""
        return self._kept(mark)[1]

    def _kept(self, mark: str) -> tuple[TableColumns, tuple[set[str], set[str]]]:
        kept = self._columns
        if kept is None or kept[0] != mark:
            with self._columns_lock:  # a second asker (the first page, the warm-up) waits
                kept = self._columns
                if kept is None or kept[0] != mark:
                    # read after the mark: a write in between makes the next call read again
                    found = running(self.store)
                    alive = ({r.id for r in found},
                             {r.id for r in found if shown_status(r) is not RunStatus.RUNNING})
                    kept = self._columns = (mark, table_columns(self.store), alive)
        return kept[1], kept[2]

    def _ids(self, q: RunsQuery, columns: TableColumns, dead: set[str], offset: int = 0,
             limit: int | None = None) -> tuple[int, list[str]]:
        where = RunFilter(q.pipeline, q.status, {"yes": True, "no": False}.get(q.blessed), q.text)
        return page_ids(self.store, columns, where, q.sort, q.descending, dead, offset, limit)

    def _rows(self, ids: list[str]) -> list[dict]:
        return [_row(r.json()) for r in rows_for(self.store, runs_by_id(self.store, ids))]

    @staticmethod
    def _page(q: RunsQuery, columns: TableColumns, total: int, rows: list[dict],
              statuses: list[str]) -> dict:
        return {
            "total": total, "all": columns.count, "page": q.page, "per_page": q.per_page,
            "sort": q.sort, "order": "desc" if q.descending else "asc",
            "columns": {"fixed": [{"key": k, "title": t} for k, t in FIXED],
                        "params": list(columns.params), "metrics": list(columns.metrics)},
            "pipelines": list(columns.pipelines), "statuses": statuses, "rows": rows,
        }


_reads = [0, 0.0]  # reads under way in this process, and the switch interval before them
_reads_lock = threading.Lock()


@contextmanager
def _short_switches() -> Iterator[None]:
    """The GIL switch interval shortened while any table is being read."""
    with _reads_lock:
        if _reads[0] == 0:
            _reads[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_reads[1], SWITCH_INTERVAL))
        _reads[0] += 1
    try:
        yield
    finally:
        with _reads_lock:
            _reads[0] -= 1
            if _reads[0] == 0:
                sys.setswitchinterval(_reads[1])


def _row(run: dict) -> dict:
    """A run's ``--json`` object with its parameters flattened for the table: nested ones
    ({"model": {"max_depth": 3}}) become columns, model.max_depth."""
    return {**run, "param_values": _flatten(run["params"])}


def _fields(r: StoredRow) -> tuple[str, ...]:
    """What a text filter looks in, as the database's filter does: the fields, and the
    parameters and tags as their stored text."""
    row = r.row
    return tuple(str(v).lower() for v in (
        row["id"], row["git_commit"], row["actor"], row["branch"], row["pipeline"], row["status"],
        row["error"], r.params_text, r.tags_text) if v is not None)


def _order(v: Any) -> tuple[int, Any]:
    if isinstance(v, (bool, int, float)):
        return (0, float(v))
    return (1, json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))


def value(row: dict, key: str) -> Any:
    """The cell of ``key`` (a run field, ``param.NAME`` or ``metric.NAME``) in a table row."""
    if key.startswith("param."):
        return row["param_values"].get(key[6:])
    if key.startswith("metric."):
        return row["metrics"].get(key[7:])
    return row.get(key)


def _flatten(params: dict, prefix: str = "") -> dict:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    text = json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)
    # a cell a spreadsheet would run as a formula is written as text
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
