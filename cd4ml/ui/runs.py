"""The runs table of the web view: every run as one row like the team spreadsheet (date, who,
commit, pipeline, version, status, every parameter and metric a column), filtered, sorted and
paged on the server, and exported as CSV.

The rows are ``cd4ml runs --json``'s (``reporting.api.run_rows``), read once for the whole store
and kept until ``Store.fingerprint()`` says something was recorded: a page of 10,000 runs is
then a filter and a sort in memory, not ten thousand rows through the database driver.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from cd4ml.reporting.api import run_rows
from cd4ml.store import Store

log = logging.getLogger(__name__)

#: the spreadsheet's leading columns, in order: (key, title)
FIXED = (("started_at", "date"), ("actor", "who"), ("git_commit", "commit"),
         ("pipeline", "pipeline"), ("model_version", "version"), ("status", "status"),
         ("blessed", "blessed"), ("duration_seconds", "duration s"), ("id", "run"),
         ("branch", "branch"), ("kind", "kind"), ("reused_from", "cached from"))
PER_PAGE_MAX = 500


@dataclass(frozen=True)
class RunsQuery:
    """What the runs page asks for; every field comes from the URL's query string."""

    pipeline: str = ""
    status: str = ""
    blessed: str = ""  # "yes" | "no" | ""
    text: str = ""  # in the run id, commit, actor, branch, pipeline, params or tags
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


class Row:
    """A runs-table row: the run's ``--json`` object, flattened for sorting and CSV."""

    __slots__ = ("data", "haystack")

    def __init__(self, run: dict):
        # nested parameters ({"model": {"max_depth": 3}}) become columns: model.max_depth
        self.data = data = {**run, "param_values": _flatten(run["params"])}
        r = data
        self.haystack = " ".join(str(v) for v in (
            r["id"], r["git_commit"], r["actor"], r["branch"], r["pipeline"], r["status"],
            r["error"], json.dumps(r["params"], default=str), json.dumps(r["tags"], default=str),
        ) if v).lower()

    def value(self, key: str) -> Any:
        if key.startswith("param."):
            return self.data["param_values"].get(key[6:])
        if key.startswith("metric."):
            return self.data["metrics"].get(key[7:])
        return self.data.get(key)


class Snapshot:
    """The runs table as the store had it at one moment (its fingerprint ``mark``), with each
    column's sort order computed once, when first asked for."""

    def __init__(self, mark: str, rows: list[Row]):
        self.mark, self.rows = mark, rows
        self.params = sorted({k for r in rows for k in r.data["param_values"]})
        self.metrics = sorted({k for r in rows for k in r.data["metrics"]})
        self.choices = {k: sorted({str(r.data[k]) for r in rows}) for k in ("pipeline", "status")}
        self._orders: dict[tuple[str, bool], list[Row]] = {}

    def ordered(self, key: str, descending: bool) -> list[Row]:
        found = self._orders.get((key, descending))
        if found is None:
            present, missing = _sorted(self.rows, key)
            # missing values stay last either way
            found = (present[::-1] if descending else present) + missing
            self._orders[(key, descending)] = found
        return found


class RunsTable:
    """The whole store's runs, kept until the store's fingerprint changes. The first read
    waits for the table; after that a change is read in the background while requests are
    answered from the previous table, marked ``stale`` (the page asks again shortly), so that
    no request waits for ten thousand rows to come out of the database."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._reading: str | None = None  # the mark being read in the background

    def snapshot(self, wait: bool = False) -> tuple[Snapshot, bool]:
        """The table and whether the store has changed since it was read (then a fresh read
        is under way). ``wait``: read it now instead."""
        mark = self.store.fingerprint()
        current = self._current
        if current is None or (wait and current.mark != mark):
            with self._lock:  # one reader at a time; a second caller finds the first's table
                if self._current is None or (wait and self._current.mark != mark):
                    self._current = self._read(mark)
                return self._current, False
        if current.mark == mark:
            return current, False
        with self._lock:
            if self._reading != mark:
                self._reading = mark
                threading.Thread(target=self._refresh, args=(mark,), daemon=True,
                                 name="cd4ml-ui-runs").start()
        return current, True

    def _read(self, mark: str) -> Snapshot:
        return Snapshot(mark, [Row(r.json()) for r in run_rows(self.store)])

    def _refresh(self, mark: str) -> None:
        try:
            fresh = self._read(mark)
        except Exception as e:  # noqa: BLE001 -- the stale table stays; the next request retries
            log.warning("reading the runs table failed: %s", e)
            fresh = None
        with self._lock:
            if fresh is not None:
                self._current = fresh
            self._reading = None

    def matching(self, q: RunsQuery, table: Snapshot) -> list[Row]:
        ordered = table.ordered(q.sort, q.descending)
        text = q.text.lower()
        blessed = {"yes": True, "no": False}.get(q.blessed)
        if not (q.pipeline or q.status or text or blessed is not None):
            return ordered
        return [r for r in ordered
                if (not q.pipeline or r.data["pipeline"] == q.pipeline)
                and (not q.status or r.data["status"] == q.status)
                and (blessed is None or bool(r.data["blessed"]) == blessed)
                and (not text or text in r.haystack)]

    def page(self, q: RunsQuery, wait: bool = False) -> dict:
        """One page of matching rows, and what the page needs to draw its controls."""
        table, stale = self.snapshot(wait)
        found = self.matching(q, table)
        start = (q.page - 1) * q.per_page
        return {
            "total": len(found), "all": len(table.rows), "page": q.page, "per_page": q.per_page,
            "sort": q.sort, "order": "desc" if q.descending else "asc", "stale": stale,
            "columns": {"fixed": [{"key": k, "title": t} for k, t in FIXED],
                        "params": table.params, "metrics": table.metrics},
            "pipelines": table.choices["pipeline"], "statuses": table.choices["status"],
            "rows": [r.data for r in found[start:start + q.per_page]],
        }

    def csv(self, q: RunsQuery, columns: list[str] | None = None) -> str:
        """Every matching row (not one page) as CSV, in the chosen columns; never stale."""
        table, _ = self.snapshot(wait=True)
        keys = columns or ([k for k, _ in FIXED] + [f"metric.{m}" for m in table.metrics]
                           + [f"param.{p}" for p in table.params])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(keys)
        for row in self.matching(q, table):
            writer.writerow([_cell(row.value(k)) for k in keys])
        return buf.getvalue()


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


def _sorted(rows: list[Row], key: str) -> tuple[list[Row], list[Row]]:
    """Rows with a value, ascending (numbers before text, so that a mixed column still
    orders), and the rows without one. Each value is looked up once."""
    numbers: list[tuple[float, Row]] = []
    texts: list[tuple[str, Row]] = []
    missing: list[Row] = []
    for r in rows:
        v = r.value(key)
        if v is None:
            missing.append(r)
        elif isinstance(v, (bool, int, float)):
            numbers.append((float(v), r))
        else:
            texts.append((json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v), r))
    numbers.sort(key=itemgetter(0))
    texts.sort(key=itemgetter(0))
    return [r for _, r in numbers] + [r for _, r in texts], missing
