"""`cd4ml run` end to end on real great-expectations, scikit-learn and SQLite: stages, the run
cache, and the failure paths."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from cd4ml.cli import main
from cd4ml.spec import load_spec
from cd4ml.stages import pipeline


@pytest.fixture
def work(tmp_path, pipelines_dir, monkeypatch) -> Path:
    shutil.copytree(pipelines_dir, tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    wine = tmp_path / "pipelines" / "wine.yaml"
    wine.write_text(wine.read_text().replace("n_estimators: 100", "n_estimators: 10"))
    return tmp_path / "pipelines"


def test_run_passes_every_stage_then_is_served_from_cache(work, store):
    spec = load_spec(work / "wine.yaml")
    first = pipeline.run(spec, store)
    assert first.status == "succeeded" and not first.cached and first.model.blessed
    assert [(s, o) for s, o, _ in first.stages] == [
        ("validate", "passed"), ("train", "passed"), ("evaluate", "passed"), ("gate", "passed")]

    t = time.perf_counter()
    second = pipeline.run(load_spec(work / "wine.yaml"), store)
    assert time.perf_counter() - t < 1.0
    assert second.cached and second.source_run.id == first.run.id
    assert second.model.id == first.model.id and second.run.reused_from == first.run.id
    assert len(store.models("wine")) == 1

    forced = pipeline.run(spec, store, force=True)
    assert not forced.cached and forced.model.version == 2
    assert forced.model.sha256 == first.model.sha256  # deterministic


def test_changed_data_retrains(work, store):
    pipeline.run(load_spec(work / "wine.yaml"), store)
    data = work / "data" / "wine.csv"
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:-3]) + "\n")  # three rows fewer
    again = pipeline.run(load_spec(work / "wine.yaml"), store)
    assert not again.cached and again.model.version == 2


def test_a_new_production_model_invalidates_the_cache(work, store):
    spec = load_spec(work / "wine.yaml")
    first = pipeline.run(spec, store)
    other = pipeline.run(spec, store, force=True)
    assert other.model.version == 2
    # blessed but not serving: still no baseline, so the cached run stands
    assert pipeline.run(spec, store).cached
    # v2 serves in production: now the baseline; the cached run (v2's own) is reusable
    dep = store.start_deployment("wine", "production", other.model.id, "img", "local", "deploy", "ana")
    store.finish_deployment(dep.id, "healthy")
    third = pipeline.run(spec, store)
    assert third.cached and third.model.version == 2
    assert first.model.version == 1


def test_a_cached_model_gated_against_another_baseline_is_not_reused(work, store):
    wine, data = work / "wine.yaml", work / "data" / "wine.csv"
    original = data.read_text()
    first = pipeline.run(load_spec(wine), store)  # v1, gated against no production model
    data.write_text("\n".join(original.splitlines()[:-3]) + "\n")
    second = pipeline.run(load_spec(wine), store)
    assert second.model.version == 2 and second.model.blessed
    # v2 serves in production: the baseline now
    dep = store.start_deployment("wine", "production", second.model.id, "img", "local", "deploy", "ana")
    store.finish_deployment(dep.id, "healthy")
    data.write_text(original)  # v1's inputs again: its run has this very cache key
    third = pipeline.run(load_spec(wine), store)
    # but v1's gate never compared it with v2, which a max_drop rule must: judge it again
    assert first.run.cache_key == third.run.cache_key
    assert not third.cached and third.model.version == 3


def test_where_the_model_is_served_does_not_retrain_how_it_is_judged_does(work, store):
    wine = work / "wine.yaml"
    first = pipeline.run(load_spec(wine), store)
    wine.write_text(wine.read_text().replace("port: 8701", "port: 8799")
                    .replace("base: python:3.11-slim", "base: python:3.12-slim"))
    moved = pipeline.run(load_spec(wine), store)
    assert moved.cached and moved.model.id == first.model.id
    assert moved.run.spec_hash != first.run.spec_hash  # the run records the spec it ran with
    wine.write_text(wine.read_text().replace("min: 0.85\n  - metric: f1_macro", "min: 0.8\n  - metric: f1_macro"))
    regated = pipeline.run(load_spec(wine), store)
    assert not regated.cached and regated.model.version == 2


def test_failed_gate_is_a_result_and_exit_1(work, store, capsys):
    wine = work / "wine.yaml"
    wine.write_text(wine.read_text().replace("min: 0.85\n  - metric: f1_macro", "min: 1.01\n  - metric: f1_macro"))
    result = pipeline.run(load_spec(wine), store)
    assert result.status == "gate_failed" and not result.model.blessed
    assert main(["run", "-p", str(wine), "--store", store.url]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "not blessed" in out


def test_override_blesses_and_is_shown(work, store, capsys):
    wine = work / "wine.yaml"
    wine.write_text(wine.read_text().replace("min: 0.85\n  - metric: f1_macro", "min: 1.01\n  - metric: f1_macro"))
    assert main(["run", "-p", str(wine), "--store", store.url, "--override"]) == 2
    assert "--reason" in capsys.readouterr().err
    code = main(["run", "-p", str(wine), "--store", store.url, "--override",
                 "--reason", "hotfix for outage", "--by", "alice"])
    out = capsys.readouterr().out
    assert code == 0 and "OVERRIDDEN by alice: hotfix for outage" in out


def test_validation_failure_trains_nothing(work, store):
    data = work / "data" / "wine.csv"
    text = data.read_text().splitlines()
    cols = text[1].split(",")
    cols[4] = "-50"  # magnesium far below its expected range
    data.write_text("\n".join([text[0], ",".join(cols), *text[2:]]) + "\n")
    result = pipeline.run(load_spec(work / "wine.yaml"), store)
    assert result.status == "validation_failed" and result.model is None
    assert store.models("wine") == []
    assert store.run(result.run.id).status == "validation_failed"


def test_entry_point_pipeline_stage_table(work, store):
    result = pipeline.run(load_spec(work / "wine_custom.yaml"), store)
    assert result.status == "succeeded"
    assert all(outcome == "passed" for _, outcome, _ in result.stages)


def test_bad_import_fails_before_any_stage(work, store, capsys):
    wine = work / "wine.yaml"
    wine.write_text(wine.read_text().replace("RandomForestClassifier", "NoSuchForest"))
    assert main(["run", "-p", str(wine), "--store", store.url]) == 2
    err = capsys.readouterr().err
    assert "NoSuchForest" in err and "Traceback" not in err
    assert store.runs() == []


def test_run_with_report_posts_pending_then_the_verdict(work, store, github_env, capsys):
    from tests.integration.test_github import STATUSES

    assert main(["run", "-p", str(work / "wine.yaml"), "--store", store.url, "--report"]) == 0
    states = [c.json["state"] for c in github_env.calls("POST", STATUSES)]
    # pending from the start of the run, then the verdict last
    assert states[0] == "pending" and states[-1] == "success" and set(states) == {"pending", "success"}
    comments = github_env.calls("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
    assert len(comments) == 1 and "<!-- cd4ml:wine -->" in comments[0].json["body"]
    assert github_env.token not in capsys.readouterr().out
