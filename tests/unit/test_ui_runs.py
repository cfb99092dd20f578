"""The web view's runs table: one row per run with every parameter and metric as a column,
filtered, sorted and paged on the server, exported as CSV, and rebuilt when the store changes."""

from __future__ import annotations

import csv
import io

import pytest

from cd4ml.ui.runs import RunsQuery, RunsTable


@pytest.fixture
def store(file_store):  # the web view's threads share it
    return file_store


@pytest.fixture
def table(store):
    specs = [("wine", "ana", {"model": {"max_depth": 3}, "seed": 1}, 0.9, True),
             ("wine", "ben", {"model": {"max_depth": 8}, "seed": 2}, 0.95, False),
             ("diabetes", "rita", {"alpha": "=cmd|' /C calc'!A0"}, None, None)]
    for pipeline, actor, params, accuracy, blessed in specs:
        run = store.start_run(pipeline, actor=actor, params=params, git_commit="c0ffee" + actor)
        if accuracy is not None:
            store.record_metrics(run.id, [{"name": "accuracy", "value": accuracy},
                                          {"name": "accuracy", "value": 0.1, "slice": "s", "slice_value": "x"}])
        if blessed is not None:
            m = store.register_model(pipeline, run.id, "classification", "/a", "a" * 64, {}, {})
            store.set_model_flags(m.id, blessed=blessed)
        store.finish_run(run.id, "succeeded" if pipeline == "wine" else "failed")
    return RunsTable(store)


def _page(table, **q) -> dict:
    return table.page(RunsQuery(**q))


def test_every_parameter_and_metric_is_a_column(table):
    page = _page(table)
    assert page["columns"]["params"] == ["alpha", "model.max_depth", "seed"]
    assert page["columns"]["metrics"] == ["accuracy"]  # the overall value, not the slice's
    assert page["total"] == page["all"] == 3
    assert [r["actor"] for r in page["rows"]] == ["rita", "ben", "ana"]  # newest first
    assert page["rows"][1]["param_values"] == {"model.max_depth": 8, "seed": 2}
    assert page["rows"][1]["metrics"] == {"accuracy": 0.95}
    assert page["pipelines"] == ["diabetes", "wine"] and page["statuses"] == ["failed", "succeeded"]


def test_filters(table):
    assert [r["actor"] for r in _page(table, pipeline="wine")["rows"]] == ["ben", "ana"]
    assert [r["actor"] for r in _page(table, status="failed")["rows"]] == ["rita"]
    assert [r["actor"] for r in _page(table, blessed="yes")["rows"]] == ["ana"]
    assert [r["actor"] for r in _page(table, blessed="no")["rows"]] == ["rita", "ben"]
    assert [r["actor"] for r in _page(table, text="MAX_DEPTH\": 8")["rows"]] == ["ben"]
    assert [r["actor"] for r in _page(table, text="c0ffeeana")["rows"]] == ["ana"]
    assert _page(table, text="nothing like it")["total"] == 0


def test_sorting_by_metric_and_parameter_keeps_missing_values_last(table):
    by = lambda key, desc: [r["actor"] for r in _page(table, sort=key, descending=desc)["rows"]]
    assert by("metric.accuracy", True) == ["ben", "ana", "rita"]
    assert by("metric.accuracy", False) == ["ana", "ben", "rita"]
    assert by("param.model.max_depth", False) == ["ana", "ben", "rita"]
    assert by("actor", False) == ["ana", "ben", "rita"]
    assert by("no.such.column", True) == ["rita", "ben", "ana"]  # all missing: stable


def test_paging_and_query_parsing(table):
    q = RunsQuery.from_query({"page": ["2"], "per_page": ["2"], "order": ["asc"], "sort": ["actor"]})
    page = table.page(q)
    assert (page["page"], page["total"], [r["actor"] for r in page["rows"]]) == (2, 3, ["rita"])
    bad = RunsQuery.from_query({"page": ["x"], "per_page": ["100000"], "blessed": [" yes "]})
    assert (bad.page, bad.per_page, bad.blessed) == (1, 500, "yes")


def test_csv_has_chosen_columns_every_matching_row_and_no_formulas(table):
    text = table.csv(RunsQuery(per_page=1), ["pipeline", "actor", "param.alpha", "metric.accuracy"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["pipeline", "actor", "param.alpha", "metric.accuracy"]
    assert len(rows) == 4  # every match, not one page
    assert rows[1] == ["diabetes", "rita", "'=cmd|' /C calc'!A0", ""]
    assert rows[2][3] == "0.95"


def test_a_change_shows_on_the_next_page(table, store):
    assert _page(table)["all"] == 3
    run = store.start_run("wine", actor="zoe", params={"new": 1})
    page = _page(table)
    assert page["all"] == 4 and page["rows"][0]["actor"] == "zoe"
    assert "new" in page["columns"]["params"] and "running" in page["statuses"]
    store.update_run(run.id, params={"newer": {"x": 2}})  # its old text's column goes with it
    assert _page(table)["columns"]["params"] == ["alpha", "model.max_depth", "newer.x", "seed"]
