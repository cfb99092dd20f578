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
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TIMESTAMP

from cd4ml.states import MetricScope, RunStatus
from cd4ml.store.records import Run, _all
from cd4ml.store.schema import metrics, model_versions, runs

if TYPE_CHECKING:
    from cd4ml.store import Store

#: the run fields a page can sort by as they are stored (text), beside the computed ones
TEXT_KEYS = ("started_at", "ended_at", "actor", "git_commit", "pipeline", "id", "branch", "kind",
             "reused_from", "error", "spec_hash", "code_hash", "data_hash", "cache_key")


JsonPath = tuple[str, ...]  # of a parameter's value in its JSON object

#: the page's default order, read from the index ``ix_runs_started_at``
NEWEST = (runs.c.started_at.desc(), runs.c.id.desc())


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


def table_columns(store: Store, decoded: dict[str, tuple[JsonPath, ...]] | None = None) -> TableColumns:
    """Every parameter, metric, pipeline and status in the store, and how many runs.
    ``decoded``: the parameters' leaf paths of each stored text, as the caller kept them from
    its last read (a write adds or changes few texts: the others are not decoded again); left
    holding this read's texts only."""
    known = decoded if decoded is not None else {}
    now: dict[str, tuple[JsonPath, ...]] = {}
    paths: dict[str, set[JsonPath]] = {}
    with store.read() as conn:
        # distinct texts: runs of one sweep share few parameter sets
        for text in conn.execute(sa.select(sa.cast(runs.c.params, sa.Text)).distinct()).scalars():
            leaves: tuple[JsonPath, ...] | None = known.get(text)
            if leaves is None:
                walked: list[JsonPath] = []
                _paths(json.loads(text) if text else {}, (), walked)
                leaves = tuple(walked)
            now[text] = leaves
            for leaf in leaves:
                paths.setdefault(".".join(leaf), set()).add(leaf)
        found = sorted(conn.execute(_metric_names()).scalars())
        pipelines = sorted(conn.execute(sa.select(runs.c.pipeline).distinct()).scalars())
        statuses = sorted(conn.execute(sa.select(runs.c.status).distinct()).scalars())
        count = conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one()
    known.clear()
    known.update(now)
    return TableColumns({k: tuple(sorted(v)) for k, v in sorted(paths.items())}, tuple(found),
                        tuple(pipelines), tuple(statuses), count)


def _metric_names() -> sa.Select:
    """The names of overall candidate metrics: one seek in ``ix_metrics_last_value`` per name
    (the next name after the last one found), not a read of every value logged."""
    def first_after(after: Any = None) -> Any:
        m = metrics.alias("m")
        where = [m.c.scope == MetricScope.CANDIDATE, m.c.slice == ""]
        return (sa.select(sa.func.min(m.c.name))
                .where(*where, *([m.c.name > after] if after is not None else []))
                .scalar_subquery())

    names = sa.select(first_after().label("name")).cte("names", recursive=True)
    names = names.union_all(sa.select(first_after(names.c.name)).where(names.c.name.is_not(None)))
    return sa.select(names.c.name).where(names.c.name.is_not(None))


def _paths(params: Any, prefix: JsonPath, out: list[JsonPath]) -> None:
    """As the page flattens parameters: a non-empty object's members become columns."""
    if not isinstance(params, dict):
        return
    for k, v in params.items():
        path = (*prefix, k)
        if isinstance(v, dict) and v:
            _paths(v, path, out)
        else:
            out.append(path)


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
    order = q.order(sort, descending, columns)
    count = sa.select(sa.func.count()).select_from(runs).where(*conditions)
    # sorted by a computed value, every match is read and sorted anyway: counted on the way
    # (the filter is evaluated once, not again by a count); newest first, the index gives the
    # page after reading little more than it
    counted = bool(conditions) and order[0] is not NEWEST[0]
    ids = (sa.select(runs.c.id, *([sa.func.count().over()] if counted else [])).where(*conditions)
           .order_by(*order).offset(offset))
    if limit is not None:
        ids = ids.limit(limit)
    with store.read() as conn:
        found = conn.execute(ids).all()
        if counted and found:
            total = found[0][1]
        elif conditions:  # or the page is past the last match
            total = conn.execute(count).scalar_one()
        else:  # unfiltered, every run matches: counted with the columns
            total = columns.count
        return total, [row[0] for row in found]


def sortable(key: str, columns: TableColumns) -> bool:
    """Whether a page can be sorted by ``key`` (else it is newest first)."""
    return (key in TEXT_KEYS or key in ("status", "model_version", "blessed", "duration_seconds")
            or key.startswith("metric.") or (key.startswith("param.") and key[6:] in columns.params))


class _Query:
    """The expressions of one query, for one database. Each sort key is one expression,
    computed once a row: the database sorts it with its rows without a value last."""

    def __init__(self, is_sqlite: bool, dead: Collection[str]):
        self.sqlite = is_sqlite
        self.source_id = sa.func.coalesce(runs.c.reused_from, runs.c.id)
        self.status: Any = runs.c.status
        if dead:
            self.status = sa.case((runs.c.id.in_(list(dead)), sa.literal(RunStatus.ABANDONED.value)),
                                  else_=runs.c.status)

    def _model(self, column: str) -> Any:
        """``column`` of the run's newest model version (its source's, for a cached run)."""
        m = model_versions.alias("newest")
        return (sa.select(m.c[column]).where(m.c.run_id == self.source_id)
                .order_by(m.c.id.desc()).limit(1).scalar_subquery())

    def conditions(self, where: RunFilter) -> list[Any]:
        out: list[Any] = []
        if where.pipeline:
            out.append(runs.c.pipeline == where.pipeline)
        if where.status:
            out.append(self.status == where.status)
        if where.blessed is True:
            out.append(self._model("blessed").is_(True))
        elif where.blessed is False:  # not blessed, or no model
            out.append(self._model("blessed").is_not(True))
        if where.text:
            pattern = "%" + "".join("\\" + c if c in "\\%_" else c for c in where.text.lower()) + "%"
            fields = [runs.c.id, runs.c.git_commit, runs.c.actor, runs.c.branch, runs.c.pipeline,
                      self.status, runs.c.error, sa.cast(runs.c.params, sa.Text),
                      sa.cast(runs.c.tags, sa.Text)]
            # SQLite's LIKE ignores case as its lower() does (ASCII, or ICU's with the ICU
            # extension); PostgreSQL's LIKE does not
            out.append(sa.or_(*((f if self.sqlite else sa.func.lower(f)).like(pattern, escape="\\")
                                for f in fields)))
        return out

    def order(self, sort: str, descending: bool, columns: TableColumns) -> list[Any]:
        newest = list(NEWEST)
        if sort == "started_at":
            return newest if descending else [runs.c.started_at.asc(), runs.c.id.desc()]
        if not sortable(sort, columns):
            return newest
        value: Any
        if sort in TEXT_KEYS:
            value = runs.c[sort]
        elif sort == "status":
            value = self.status
        elif sort == "model_version":
            value = self._model("version")
        elif sort == "blessed":
            value = sa.cast(self._model("blessed"), sa.Integer)
        elif sort == "duration_seconds":
            value = self._duration()
        elif sort.startswith("metric."):
            value = self._metric(sort[7:])
        elif self.sqlite:
            # one column of numbers and text: SQLite orders numbers before text, as the page does
            value = self._sqlite_param(columns.params[sort[6:]])
        else:  # a row has a number or a text or neither: numbers first ascending, text first
            # descending, neither last both ways
            number, text = self._param(columns.params[sort[6:]])
            text = sa.collate(text, "C")
            return ([text.desc().nulls_last(), number.desc().nulls_last()] if descending
                    else [number.asc().nulls_last(), text.asc().nulls_last()]) + newest
        if sort in TEXT_KEYS or sort == "status":
            value = value if self.sqlite else sa.collate(value, "C")
        return [(value.desc() if descending else value.asc()).nulls_last()] + newest

    def _duration(self) -> Any:
        if self.sqlite:
            return (sa.func.julianday(runs.c.ended_at) - sa.func.julianday(runs.c.started_at)) * 86400.0
        stamp = TIMESTAMP(timezone=True)
        return sa.extract("epoch", sa.cast(runs.c.ended_at, stamp) - sa.cast(runs.c.started_at, stamp))

    def _metric(self, name: str) -> Any:
        m = metrics.alias("m")
        # the last logged value; a value that is not finite is stored as NULL
        return (sa.select(m.c.value)
                .where(m.c.run_id == self.source_id, m.c.name == name,
                       m.c.scope == MetricScope.CANDIDATE, m.c.slice == "")
                .order_by(m.c.id.desc()).limit(1).scalar_subquery())

    def _sqlite_param(self, paths: tuple[tuple[str, ...], ...]) -> Any:
        """A flattened parameter's value, a number (booleans as 0 and 1) or text; where two
        paths flatten to one name, the one the flattening meets last wins, as on the page."""
        value: Any = sa.null()
        for path in paths:  # in the order the page's flattening meets them
            kind, text = self._json(path)
            number = sa.cast(text, sa.Float)
            # CASE x WHEN ...: the JSON is read once for its type, once for its value
            found = sa.case({"integer": number, "real": number, "true": 1.0, "false": 0.0,
                             "text": text, "array": text, "object": sa.case((text == "{}", text))},
                            value=kind)
            if len(paths) == 1:
                return found
            leaf = sa.and_(kind.is_not(None), sa.or_(kind != "object", text == "{}"))
            value = sa.case((leaf, found), else_=value)
        return value

    def _param(self, paths: tuple[tuple[str, ...], ...]) -> tuple[Any, Any]:
        """(the number, the text) of a flattened parameter on PostgreSQL, whose columns hold one
        type: where two paths flatten to one name, the one the flattening meets last wins."""
        number: Any = sa.null()
        text: Any = sa.null()
        for path in paths:  # in the order the page's flattening meets them
            kind, value = self._json(path)
            n = sa.case({"number": sa.cast(value, sa.Float),
                         "boolean": sa.case((value == "true", 1.0), else_=0.0)}, value=kind)
            t = sa.case({"string": value, "array": value, "object": sa.case((value == "{}", value))},
                        value=kind)
            if len(paths) == 1:
                return n, t
            leaf = sa.and_(kind.is_not(None), sa.or_(kind != "object", value == "{}"))
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
