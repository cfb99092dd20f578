"""The runs table's queries (``cd4ml ui``): one page of runs filtered, sorted and counted by the
database, so that a page of a store of 10,000 runs reads 50 rows, not 10,000.

The table's columns are the runs' fields, their model version (the newest one trained by the
run, or by the run a cached run reused), every parameter (nested ones flattened:
``model.max_depth``) and every overall candidate metric (its last logged value). What the
page shows and how it orders is defined once, in Python terms, by
``tests/unit/test_ui_runs_sql.py``'s reference; the queries here give the same answer:

- a sort puts rows without a value last in both directions; numbers (booleans as 0 and 1)
  before text ascending, after it descending; ties newest first;
- a text filter is a case-insensitive substring of any one field: id, commit, actor, branch,
  pipeline, status, error, or the parameters or tags as their stored JSON text;
- a run left ``running`` by a process that is gone shows (and filters, and sorts) as
  ``abandoned``: the caller passes those ids (``dead``), found by :mod:`cd4ml.store.liveness`.

SQLite and PostgreSQL differ in how JSON is read (``json_extract`` and ``json_type`` against
``json_extract_path`` and ``json_typeof``) and in how text orders (PostgreSQL's collation is the
locale's: ``COLLATE "C"`` orders by code point as Python and SQLite do).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cd4ml.states import MetricScope, RunKind, RunStatus
from cd4ml.store.records import Run, _all
from cd4ml.store.schema import metrics, model_versions, runs

if TYPE_CHECKING:
    from cd4ml.store import Store

#: the run fields a page can sort by as they are stored (text), beside the computed ones
TEXT_KEYS = ("started_at", "ended_at", "actor", "git_commit", "pipeline", "id", "branch", "kind",
             "reused_from", "error", "spec_hash", "code_hash", "data_hash", "cache_key")


@dataclass(frozen=True)
class RunFilter:
    pipeline: str = ""
    status: str = ""
    blessed: bool | None = None
    text: str = ""


@dataclass(frozen=True)
class TableColumns:
    """What the whole table holds: read once per store change (see ``Store.fingerprint``)."""

    params: dict[str, tuple[tuple[str, ...], ...]]  # flattened name -> the JSON paths it comes from
    metrics: tuple[str, ...]
    pipelines: tuple[str, ...]
    statuses: tuple[str, ...]  # as stored
    count: int


def table_columns(store: Store) -> TableColumns:
    """Every parameter, metric, pipeline and status in the store, and how many runs."""
    paths: dict[str, set[tuple[str, ...]]] = {}
    names = (sa.select(metrics.c.name).distinct()
             .where(metrics.c.scope == MetricScope.CANDIDATE, metrics.c.slice == ""))
    with store.read() as conn:
        # distinct texts: runs of one sweep share few parameter sets
        for text in conn.execute(sa.select(sa.cast(runs.c.params, sa.Text)).distinct()).scalars():
            _paths(json.loads(text) if text else {}, (), paths)
        found = sorted(conn.execute(names).scalars())
        pipelines = sorted(conn.execute(sa.select(runs.c.pipeline).distinct()).scalars())
        statuses = sorted(conn.execute(sa.select(runs.c.status).distinct()).scalars())
        count = conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one()
    return TableColumns({k: tuple(sorted(v)) for k, v in sorted(paths.items())}, tuple(found),
                        tuple(pipelines), tuple(statuses), count)


def _paths(params: Any, prefix: tuple[str, ...], out: dict[str, set[tuple[str, ...]]]) -> None:
    """As the page flattens parameters: a non-empty object's members become columns."""
    if not isinstance(params, dict):
        return
    for k, v in params.items():
        path = (*prefix, k)
        if isinstance(v, dict) and v:
            _paths(v, path, out)
        else:
            out.setdefault(".".join(path), set()).add(path)


@dataclass(frozen=True)
class StoredRow:
    row: dict  # as ``reporting.api.RunRow.json`` makes it
    params_text: str  # the parameters and tags as stored (what a text filter searches)
    tags_text: str


def every_row(store: Store, dead: Collection[str]) -> list[StoredRow]:
    """Every run as the runs table shows it (``reporting.api.RunRow.json``: the same objects,
    which a test checks), in three queries, with no dataclass per row: what the web view keeps
    in memory. ``dead``: the running runs to show as abandoned."""
    from cd4ml.reporting.api import seconds_between
    from cd4ml.reporting.console import to_jsonable

    names = [f.name for f in fields(Run)]
    newest_last = (sa.select(model_versions.c.run_id, model_versions.c.version,
                             model_versions.c.blessed).order_by(model_versions.c.id))
    overall = (sa.select(metrics.c.run_id, metrics.c.name, metrics.c.value)
               .where(metrics.c.scope == MetricScope.CANDIDATE, metrics.c.slice == "")
               .order_by(metrics.c.id))
    with store.read() as conn:
        # parameters and tags as their stored text: decoded below, checked for NaN only where
        # the text can hold one
        found = conn.execute(sa.select(*(sa.cast(runs.c[n], sa.Text) if n in ("params", "tags")
                                         else runs.c[n] for n in names))).all()
        models = {run_id: (version, blessed) for run_id, version, blessed in conn.execute(newest_last)}
        values: dict[str, dict[str, float | None]] = {}
        for run_id, name, value in conn.execute(overall):  # the last logged value wins
            values.setdefault(run_id, {})[name] = value if value is None or math.isfinite(value) else None
    out = []
    for row in found:
        r = dict(zip(names, row))
        r["kind"], r["status"] = RunKind(r["kind"]), RunStatus(r["status"])
        if r["id"] in dead:
            r["status"] = RunStatus.ABANDONED
        texts = r["params"] or "", r["tags"] or ""
        r["params"], r["tags"] = _decoded(texts[0], to_jsonable), _decoded(texts[1], to_jsonable)
        source = r["reused_from"] or r["id"]
        version, blessed = models.get(source, (None, None))
        r.update(model_version=version, blessed=blessed,
                 duration_seconds=seconds_between(r["started_at"], r["ended_at"]),
                 metrics=values.get(source, {}))
        out.append(StoredRow(r, *texts))
    return out


def _decoded(text: str | None, to_jsonable: Any) -> Any:
    """Stored JSON as the page shows it: what ``to_jsonable`` would make of it, which changes
    nothing but a non-finite number (spelled NaN or Infinity in the text)."""
    value = json.loads(text) if text else None
    return to_jsonable(value) if text and ("NaN" in text or "Infinity" in text) else value


def running(store: Store) -> list[Run]:
    """The runs recorded as running (few: the caller asks which of them are abandoned)."""
    with store.read() as conn:
        return _all(Run, conn.execute(sa.select(runs).where(runs.c.status == RunStatus.RUNNING)))


def runs_by_id(store: Store, ids: Sequence[str]) -> list[Run]:
    """The runs of ``ids``, in that order."""
    found: dict[str, Run] = {}
    with store.read() as conn:
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            found.update((r.id, r) for r in _all(Run, conn.execute(
                sa.select(runs).where(runs.c.id.in_(chunk)))))
    return [found[i] for i in ids if i in found]


def page_ids(store: Store, columns: TableColumns, where: RunFilter, sort: str,
             descending: bool, dead: Collection[str], offset: int = 0,
             limit: int | None = None) -> tuple[int, list[str]]:
    """How many runs match ``where``, and the ids of ``limit`` of them from ``offset`` in the
    order of ``sort`` (a run field, ``model_version``, ``blessed``, ``duration_seconds``,
    ``param.NAME`` or ``metric.NAME``; anything else: newest first)."""
    q = _Query(store.is_sqlite, dead)
    conditions = q.conditions(where)
    count = sa.select(sa.func.count()).select_from(q.source(where, "")).where(*conditions)
    order = q.order(sort, descending, columns)
    ids = (sa.select(runs.c.id).select_from(q.source(where, sort)).where(*conditions)
           .order_by(*order).offset(offset))
    if limit is not None:
        ids = ids.limit(limit)
    with store.read() as conn:
        total = conn.execute(count).scalar_one()
        return total, list(conn.execute(ids).scalars())


def sortable(key: str, columns: TableColumns) -> bool:
    """Whether a page can be sorted by ``key`` (else it is newest first)."""
    return (key in TEXT_KEYS or key in ("status", "model_version", "blessed", "duration_seconds")
            or key.startswith("metric.") or (key.startswith("param.") and key[6:] in columns.params))


class _Query:
    """The expressions of one query, for one database."""

    def __init__(self, is_sqlite: bool, dead: Collection[str]):
        self.sqlite = is_sqlite
        source = sa.func.coalesce(runs.c.reused_from, runs.c.id)
        self.source_id = source
        newest = model_versions.alias("newest")
        self.model = model_versions.alias("model")
        self.model_id = (sa.select(sa.func.max(newest.c.id)).where(newest.c.run_id == source)
                         .scalar_subquery())
        self.status: Any = runs.c.status
        if dead:
            self.status = sa.case((runs.c.id.in_(list(dead)), sa.literal(RunStatus.ABANDONED.value)),
                                  else_=runs.c.status)

    def source(self, where: RunFilter, sort: str) -> Any:
        if where.blessed is None and sort not in ("model_version", "blessed"):
            return runs
        return runs.outerjoin(self.model, self.model.c.id == self.model_id)

    def conditions(self, where: RunFilter) -> list[Any]:
        out: list[Any] = []
        if where.pipeline:
            out.append(runs.c.pipeline == where.pipeline)
        if where.status:
            out.append(self.status == where.status)
        if where.blessed is True:
            out.append(self.model.c.blessed.is_(True))
        elif where.blessed is False:
            out.append(sa.or_(self.model.c.blessed.is_(None), self.model.c.blessed.is_(False)))
        if where.text:
            pattern = "%" + "".join("\\" + c if c in "\\%_" else c for c in where.text.lower()) + "%"
            fields = [runs.c.id, runs.c.git_commit, runs.c.actor, runs.c.branch, runs.c.pipeline,
                      self.status, runs.c.error, sa.cast(runs.c.params, sa.Text),
                      sa.cast(runs.c.tags, sa.Text)]
            out.append(sa.or_(*(sa.func.lower(f).like(pattern, escape="\\") for f in fields)))
        return out

    def order(self, sort: str, descending: bool, columns: TableColumns) -> list[Any]:
        newest = [runs.c.started_at.desc(), runs.c.id.desc()]
        if sort == "started_at":
            return newest if descending else [runs.c.started_at.asc(), runs.c.id.desc()]
        if not sortable(sort, columns):
            return newest
        number: Any = None
        text: Any = None
        if sort in TEXT_KEYS:
            text = runs.c[sort]
        elif sort == "status":
            text = self.status
        elif sort == "model_version":
            number = self.model.c.version
        elif sort == "blessed":
            number = sa.cast(self.model.c.blessed, sa.Integer)
        elif sort == "duration_seconds":
            number = self._duration()
        elif sort.startswith("metric."):
            number = self._metric(sort[7:])
        else:
            number, text = self._param(columns.params[sort[6:]])
        if text is not None and not self.sqlite:
            text = sa.collate(text, "C")
        keys: list[Any] = []
        if number is not None and text is not None:  # a parameter: numbers, then text
            keys = [sa.and_(number.is_(None), text.is_(None)),
                    number.is_(None).desc() if descending else number.is_(None),
                    number.desc() if descending else number.asc(),
                    text.desc() if descending else text.asc()]
        else:
            value = number if number is not None else text
            keys = [value.is_(None), value.desc() if descending else value.asc()]
        return keys + newest

    def _duration(self) -> Any:
        if self.sqlite:
            return (sa.func.julianday(runs.c.ended_at) - sa.func.julianday(runs.c.started_at)) * 86400.0
        stamp = sa.dialects.postgresql.TIMESTAMP(timezone=True)
        return sa.extract("epoch", sa.cast(runs.c.ended_at, stamp) - sa.cast(runs.c.started_at, stamp))

    def _metric(self, name: str) -> Any:
        m = metrics.alias("m")
        # the last logged value; a value that is not finite is stored as NULL
        return (sa.select(m.c.value)
                .where(m.c.run_id == self.source_id, m.c.name == name,
                       m.c.scope == MetricScope.CANDIDATE, m.c.slice == "")
                .order_by(m.c.id.desc()).limit(1).scalar_subquery())

    def _param(self, paths: tuple[tuple[str, ...], ...]) -> tuple[Any, Any]:
        """(the number, the text) of a flattened parameter: where two paths flatten to one
        name, the one the flattening meets last wins, as it does on the page."""
        number: Any = sa.null()
        text: Any = sa.null()
        for path in paths:  # in the order the page's flattening meets them
            kind, value = self._json(path)
            leaf = sa.and_(kind.is_not(None), sa.or_(kind != "object", value == "{}"))
            if self.sqlite:
                n = sa.case((kind.in_(["integer", "real"]), sa.cast(value, sa.Float)),
                            (kind == "true", 1.0), (kind == "false", 0.0))
                t = sa.case((kind.in_(["text", "array", "object"]), value))
            else:
                n = sa.case((kind == "number", sa.cast(value, sa.Float)),
                            (kind == "boolean", sa.case((value == "true", 1.0), else_=0.0)))
                t = sa.case((kind.in_(["string", "array", "object"]), value))
            number = sa.case((leaf, n), else_=number)
            text = sa.case((leaf, t), else_=text)
        return number, text

    def _json(self, path: tuple[str, ...]) -> tuple[Any, Any]:
        """(the JSON type of the value at ``path``, NULL where there is none; its text)."""
        if self.sqlite:
            where = "$" + "".join("." + json.dumps(k) for k in path)
            return (sa.func.json_type(runs.c.params, where),
                    sa.type_coerce(sa.func.json_extract(runs.c.params, where), sa.Text))
        keys = [sa.literal(k, sa.Text) for k in path]
        return (sa.func.json_typeof(sa.func.json_extract_path(runs.c.params, *keys)),
                sa.func.json_extract_path_text(runs.c.params, *keys))
