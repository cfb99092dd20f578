"""The runs table of the web view: every run as one row like the team spreadsheet (date, who,
commit, pipeline, version, status, every parameter and metric a column), filtered, sorted and
paged on the server, and exported as CSV.

The rows are ``cd4ml runs --json``'s objects (``reporting.api.RunRow.json``); the database
answers each page (``cd4ml.store.runtable``), reading its fifty rows.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cd4ml.reporting.api import rows_for
from cd4ml.states import RunStatus
from cd4ml.store import Store
from cd4ml.store.liveness import shown_status
from cd4ml.store.runtable import (
    RunFilter,
    TableColumns,
    page_ids,
    running,
    runs_by_id,
    table_columns,
)

#: the spreadsheet's leading columns, in order: (key, title)
FIXED = (("started_at", "date"), ("actor", "who"), ("git_commit", "commit"),
         ("pipeline", "pipeline"), ("model_version", "version"), ("status", "status"),
         ("blessed", "blessed"), ("duration_seconds", "duration s"), ("id", "run"),
         ("branch", "branch"), ("kind", "kind"), ("reused_from", "cached from"))
PER_PAGE_MAX = 500
#: runs read at a time for a CSV export
CSV_CHUNK = 500


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


class RunsTable:
    """The store's runs, a page at a time, each page asked of the database
    (:mod:`cd4ml.store.runtable`: filtered, sorted, paged and counted there, reading its fifty
    rows). What every page needs besides (the columns, pipelines and statuses, the runs left
    running by a dead process) is read once per change of the store (``Store.fingerprint``).

    No copy of the whole table is kept: reading 10,000 runs into Python again after each
    write takes most of a second of CPU holding the GIL, which every page asked meanwhile
    waited for, while the database answers any page in tens of milliseconds from its indexes
    (migration ``0006_runs_page_indexes``; ``bench/bench_ui.py``)."""

    def __init__(self, store: Store):
        self.store = store
        self._columns_lock = threading.Lock()
        self._columns: tuple[str, TableColumns, tuple[set[str], set[str]]] | None = None
        self._decoded: dict[str, tuple[tuple[str, ...], ...]] = {}  # see table_columns

    # ------------------------------------------------------------------ what the pages use

    def page(self, q: RunsQuery) -> dict:
        """One page of matching rows, and what the page needs to draw its controls."""
        mark = self.store.fingerprint()
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
        """Read the table's columns before anyone asks (else the first page reads them)."""
        self.columns(self.store.fingerprint())

    def csv(self, q: RunsQuery, columns: list[str] | None = None) -> str:
        """Every matching row (not one page) as CSV, in the chosen columns."""
        mark = self.store.fingerprint()
        known = self.columns(mark)
        keys = columns or ([k for k, _ in FIXED] + [f"metric.{m}" for m in known.metrics]
                           + [f"param.{p}" for p in known.params])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(keys)
        _, ids = self._ids(q, known, self._running(mark)[1])
        for i in range(0, len(ids), CSV_CHUNK):
            for row in self._rows(ids[i:i + CSV_CHUNK]):
                writer.writerow([_cell(value(row, k)) for k in keys])
        return buf.getvalue()

    def pipelines(self) -> list[str]:
        return list(self.columns(self.store.fingerprint()).pipelines)

    # ------------------------------------------------------------------ read once per change

    def columns(self, mark: str) -> TableColumns:
        return self._kept(mark)[0]

    def _running(self, mark: str) -> tuple[set[str], set[str]]:
        """(the running runs, those of them whose process is gone: shown as abandoned):
        found once per change of the store."""
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
                    kept = self._columns = (mark, table_columns(self.store, self._decoded), alive)
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


def _row(run: dict) -> dict:
    """A run's ``--json`` object with its parameters flattened for the table: nested ones
    ({"model": {"max_depth": 3}}) become columns, model.max_depth."""
    return {**run, "param_values": _flatten(run["params"])}


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
