"""The web view over PostgreSQL: the runs table (its pages sorted and filtered by PostgreSQL as
the straightforward computation does them), a change seen at once, and the JSON routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cd4ml.store import Store
from cd4ml.ui.api import Api
from cd4ml.ui.runs import RunsQuery
from tests.unit.test_ui_runs_sql import SORTS, check_against_reference, fill

pytestmark = pytest.mark.postgres


def test_runs_table_and_api_over_postgresql(postgres_url, tmp_path):
    with Store(postgres_url) as store:
        api = Api(store, Path(tmp_path))
        run = store.start_run("wine", actor="ana", params={"model": {"max_depth": 3}})
        store.record_metrics(run.id, [{"name": "accuracy", "value": 0.9}])
        model = store.register_model("wine", run.id, "classification", "/a", "a" * 64, {}, {})
        before = store.fingerprint()
        page = api.runs.page(RunsQuery())
        assert [(r["id"], r["status"], r["model_version"]) for r in page["rows"]] == [(run.id, "running", 1)]

        store.finish_run(run.id, "succeeded")  # an update only: the table must still see it
        assert store.fingerprint() != before
        assert api.runs.page(RunsQuery())["rows"][0]["status"] == "succeeded"
        store.set_model_flags(model.id, blessed=True)
        assert api.runs.page(RunsQuery(blessed="yes"))["total"] == 1

        shown = json.loads(api.handle("/api/show/wine:1", {}).body)
        assert shown["run"]["id"] == run.id and shown["metrics"][0]["candidate"] == 0.9
        assert api.handle("/api/lineage/wine:1", {}).status == 200
        assert api.handle("/api/runs.csv", {}).body.decode().count("\n") == 2


def test_runs_pages_sorted_and_filtered_by_postgresql_equal_the_reference(postgres_url):
    with Store(postgres_url) as store:
        fill(store)
        assert check_against_reference(store) == len(SORTS) * 2 + 4 * 2 * 11
