"""The runs page gives what the straightforward computation gives (every run read with
``run_rows``, filtered and sorted in Python) as the database answers it (filtered, sorted and
paged by cd4ml.store.runtable). The reference here is the definition of the page's order and filters; the store below
holds what makes them hard: parameters of mixed types, nested, null, empty or flattened to one
name from two paths; metrics missing, not finite or logged twice; cached runs standing on another
run's model and metrics; several model versions of one run; runs left running by a process that
is gone; ties in time; text with LIKE's wildcards in it."""

from __future__ import annotations

import itertools
import json
import random
import socket

from cd4ml.reporting.api import run_rows
from cd4ml.ui.runs import FIXED, RunsQuery, RunsTable, _row, value

SORTS = [k for k, _ in FIXED] + ["ended_at", "error", "no.such.key", "param.model.depth",
                                  "param.lr", "param.name", "param.a.b", "param.flag",
                                  "param.empty", "param.nothing", "metric.accuracy",
                                  "metric.f1", "metric.never"]


def fill(store, n: int = 48, seed: int = 5) -> None:
    rng = random.Random(seed)
    made = []
    for i in range(n):
        params = rng.choice([
            {"model": {"depth": rng.randint(1, 4)}, "lr": rng.choice([0.1, 0.01, 1])},
            {"model": {"depth": rng.choice(["deep", "2", None])}, "name": rng.choice(["x_1", "X%2", "b"])},
            {"lr": rng.choice(["fast", True, False, 0.5]), "flag": rng.choice([True, False])},
            {"a": {"b": rng.randint(0, 3)}, "a.b": rng.choice([7, None, "z"]), "empty": {}},
            {"model": 3, "empty": rng.choice([{}, 1]), "a": {"b": rng.choice([2, "y"])}},
            {},
        ])
        run = store.start_run(rng.choice(["wine", "diabetes"]), params=params,
                              actor=rng.choice(["ana", "Ben", "rita", None, "50%_off"]),
                              branch=rng.choice(["main", "exp/trees", None]),
                              git_commit=f"{rng.getrandbits(40):010x}",
                              tags=rng.choice([{}, {"team": "Blue"}]))
        if made and rng.random() < 0.2:  # a cached run: its model and metrics are the source's
            store.update_run(run.id, reused_from=rng.choice(made))
        else:
            made.append(run.id)
            for name in rng.sample(["accuracy", "f1"], rng.randint(0, 2)):
                rows = [{"name": name, "value": rng.choice([rng.random(), float("inf"), None, 0.5])}
                        for _ in range(rng.randint(1, 2))]  # a second step: the last one counts
                rows.append({"name": name, "value": 9.0, "slice": "s", "slice_value": "v"})
                store.record_metrics(run.id, rows)
            for _ in range(rng.choice([0, 1, 1, 2])):
                m = store.register_model("wine", run.id, "classification", "/a", "a" * 64, {}, {})
                store.set_model_flags(m.id, blessed=rng.random() < 0.5)
        status = rng.choice(["succeeded", "failed", "gate_failed", "running", "dead"])
        if status == "dead":  # left running by a process that is gone: shown abandoned
            store.update_run(run.id, holder=f"{socket.gethostname()}:999999999:1")
        elif status != "running":
            store.finish_run(run.id, status, error=rng.choice([None, "boom_1"]))
        stamp = f"2026-01-{1 + i % 5:02d}T00:00:00.000000Z"  # many ties
        store.update_run(run.id, started_at=stamp,
                         ended_at=f"2026-01-{1 + i % 5:02d}T00:{i:02d}:0{i % 10}.000000Z")


def reference(rows: list[dict], q: RunsQuery) -> list[str]:
    """The ids of every matching run in page order, computed the obvious way from every row
    of the table (``everything``)."""
    text = q.text.lower()
    blessed = {"yes": True, "no": False}.get(q.blessed)

    def fields(r: dict) -> list[str]:
        stored = [json.dumps(r["params"], sort_keys=True), json.dumps(r["tags"], sort_keys=True)]
        return [str(v).lower() for v in (r["id"], r["git_commit"], r["actor"], r["branch"],
                                         r["pipeline"], r["status"], r["error"], *stored)
                if v is not None]

    rows = [r for r in rows
            if (not q.pipeline or r["pipeline"] == q.pipeline)
            and (not q.status or r["status"] == q.status)
            and (blessed is None or bool(r["blessed"]) == blessed)
            and (not text or any(text in f for f in fields(r)))]
    rows.sort(key=lambda r: (r["started_at"], r["id"]), reverse=True)  # ties: newest first
    key = q.sort if q.sort in {k for k, _ in FIXED} | {"ended_at", "error"} \
        or q.sort.startswith(("param.", "metric.")) else None
    if key is None or key == "started_at":
        ordered = rows if key is None or q.descending else \
            sorted(rows, key=lambda r: r["started_at"])
        return [r["id"] for r in ordered]

    def sort_key(r: dict) -> tuple:
        v = value(r, key)
        if isinstance(v, (bool, int, float)):
            return (0, float(v))
        return (1, json.dumps(v) if isinstance(v, (dict, list)) else str(v))

    present = [r for r in rows if value(r, key) is not None]
    missing = [r for r in rows if value(r, key) is None]
    return [r["id"] for r in sorted(present, key=sort_key, reverse=q.descending) + missing]


def everything(store) -> list[dict]:
    return [_row(r.json()) for r in run_rows(store)]


def check_against_reference(store) -> int:
    """Every sort in both directions; each filter under sorts of each kind; paged: the ids
    the reference gives. The number of queries checked."""
    table = RunsTable(store)
    rows = everything(store)
    filters = [{}, {"pipeline": "wine"}, {"status": "abandoned"}, {"status": "running"},
               {"blessed": "yes"}, {"blessed": "no"}, {"text": "50%_"}, {"text": "X_1"},
               {"text": "TEAM"}, {"text": '"depth": 2'}, {"text": "boom"},
               {"pipeline": "diabetes", "blessed": "no", "text": "a"}]
    checked = 0
    queries = [*itertools.product(SORTS, (True, False), [{}]),
               *itertools.product(["param.lr", "metric.accuracy", "actor", "status"], (True, False),
                                  filters[1:])]
    for sort, descending, where in queries:
        q = RunsQuery(sort=sort, descending=descending, per_page=500, **where)
        want = reference(rows, q)
        page = table.page(q)
        assert page["total"] == len(want), (sort, descending, where)
        assert [r["id"] for r in page["rows"]] == want, (sort, descending, where)
        checked += 1
    # pages are slices of the same order
    want = reference(rows, RunsQuery(sort="metric.accuracy", descending=False, per_page=7))
    got = [r["id"] for p in range(1, 9)
           for r in table.page(RunsQuery(sort="metric.accuracy", descending=False, per_page=7,
                                         page=p))["rows"]]
    assert got == want
    # past the last match, counted all the same (a sorted, filtered page counts as it reads)
    q = RunsQuery(sort="metric.accuracy", pipeline="wine", page=99)
    assert (table.page(q)["total"], table.page(q)["rows"]) == (len(reference(rows, q)), [])
    return checked


def test_sql_pages_equal_the_straightforward_computation(file_store):
    fill(file_store)
    assert check_against_reference(file_store) == len(SORTS) * 2 + 4 * 2 * 11


def test_the_page_shows_what_the_whole_table_shows(file_store):
    import sqlalchemy as sa

    fill(file_store, n=30, seed=9)
    with file_store.tx() as conn:  # as an older writer stored a parameter that was no number
        conn.execute(sa.text("UPDATE runs SET params = '{\"x\": NaN, \"y\": -Infinity}' "
                             "WHERE id = (SELECT min(id) FROM runs)"))
    run = file_store.start_run("wine")  # metrics of a slice or of production are no columns
    file_store.record_metrics(run.id, [{"name": "a_slice", "value": 1.0, "slice": "s", "slice_value": "v"},
                                       {"name": "z_prod", "value": 1.0, "scope": "production"}])
    every = {r["id"]: r for r in everything(file_store)}
    page = RunsTable(file_store).page(RunsQuery(per_page=500))
    assert {r["id"]: r for r in page["rows"]} == every  # row by row, field by field
    assert page["columns"]["params"] == sorted({k for r in every.values()
                                                for k in r["param_values"]})
    assert page["columns"]["metrics"] == sorted({k for r in every.values() for k in r["metrics"]})
    assert page["statuses"] == sorted({r["status"] for r in every.values()})
    assert "abandoned" in page["statuses"]


def test_pages_read_the_indexes_not_every_row(file_store):
    """SQLite's plan of each page's queries (EXPLAIN QUERY PLAN): newest first is read in the
    order of an index, a metric's last value and a run's newest model are one seek each in an
    index that holds them (migration 0006), and the rows of a page still find their metrics by
    run (a new index must not lure the planner into reading every run's metrics)."""
    import sqlalchemy as sa

    fill(file_store, n=6)
    table = RunsTable(file_store)
    table.warm()
    plans: list[str] = []

    def explain(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            plan = cursor.connection.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            plans.append(" | ".join(row[-1] for row in plan))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", explain)
    try:
        for q in (RunsQuery(), RunsQuery(sort="metric.accuracy"), RunsQuery(blessed="yes")):
            table.page(q)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", explain)
    text = "\n".join(plans)
    assert "SCAN runs USING COVERING INDEX ix_runs_started_at" in text  # newest first
    assert "SEARCH m USING COVERING INDEX ix_metrics_last_value (name=? AND scope=? AND slice=? AND run_id=?)" in text
    assert "USING COVERING INDEX ix_model_versions_newest (run_id=?)" in text
    assert "SEARCH metrics USING INDEX ix_metrics_run_id (run_id=?)" in text  # a page's rows
    assert not [p for p in plans if "SCAN metrics" in p or "SCAN model_versions" in p], text
