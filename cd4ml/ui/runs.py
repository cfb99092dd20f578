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
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cd4ml.reporting.api import run_rows
from cd4ml.store import Store

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


class RunsTable:
    """The whole store's runs, rebuilt when the store's fingerprint changes; each column's
    sort order is computed once per rebuild, so a request is a filter over a sorted list."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._mark: str | None = None
        self._rows: list[Row] = []
        self._params: list[str] = []
        self._metrics: list[str] = []
        self._choices: dict[str, list[str]] = {}
        self._orders: dict[tuple[str, bool], list[Row]] = {}

    def rows(self) -> tuple[list[Row], list[str], list[str]]:
        mark = self.store.fingerprint()
        with self._lock:
            if mark != self._mark:
                rows = [Row(r.json()) for r in run_rows(self.store)]
                self._params = sorted({k for r in rows for k in r.data["param_values"]})
                self._metrics = sorted({k for r in rows for k in r.data["metrics"]})
                self._choices = {k: sorted({str(r.data[k]) for r in rows})
                                 for k in ("pipeline", "status")}
                self._rows, self._orders, self._mark = rows, {}, mark
            return self._rows, self._params, self._metrics

    def _ordered(self, key: str, descending: bool) -> list[Row]:
        rows, _, _ = self.rows()
        with self._lock:
            if (key, descending) not in self._orders:
                ordered = _sorted(rows, key)
                if descending:  # missing values stay last either way
                    present = [r for r in ordered if r.value(key) is not None]
                    ordered = present[::-1] + ordered[len(present):]
                self._orders[(key, descending)] = ordered
            return self._orders[(key, descending)]

    def matching(self, q: RunsQuery) -> list[Row]:
        ordered = self._ordered(q.sort, q.descending)
        text = q.text.lower()
        blessed = {"yes": True, "no": False}.get(q.blessed)
        if not (q.pipeline or q.status or text or blessed is not None):
            return ordered
        return [r for r in ordered
                if (not q.pipeline or r.data["pipeline"] == q.pipeline)
                and (not q.status or r.data["status"] == q.status)
                and (blessed is None or bool(r.data["blessed"]) == blessed)
                and (not text or text in r.haystack)]

    def page(self, q: RunsQuery) -> dict:
        """One page of matching rows, and what the page needs to draw its controls."""
        rows, params, metrics = self.rows()
        found = self.matching(q)
        start = (q.page - 1) * q.per_page
        return {
            "total": len(found), "all": len(rows), "page": q.page, "per_page": q.per_page,
            "sort": q.sort, "order": "desc" if q.descending else "asc",
            "columns": {"fixed": [{"key": k, "title": t} for k, t in FIXED],
                        "params": params, "metrics": metrics},
            "pipelines": self._choices["pipeline"], "statuses": self._choices["status"],
            "rows": [r.data for r in found[start:start + q.per_page]],
        }

    def csv(self, q: RunsQuery, columns: list[str] | None = None) -> str:
        """Every matching row (not one page) as CSV, in the chosen columns."""
        _, params, metrics = self.rows()
        keys = columns or ([k for k, _ in FIXED] + [f"metric.{m}" for m in metrics]
                           + [f"param.{p}" for p in params])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(keys)
        for row in self.matching(q):
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


def _sorted(rows: list[Row], key: str) -> list[Row]:
    """Ascending, values first and missing ones last; numbers before text so that a mixed
    column still orders."""
    present = [r for r in rows if r.value(key) is not None]
    missing = [r for r in rows if r.value(key) is None]

    def order(r: Row) -> tuple:
        v = r.value(key)
        if isinstance(v, (bool, int, float)):
            return (0, float(v), "")
        return (1, 0.0, json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))

    return sorted(present, key=order) + missing
