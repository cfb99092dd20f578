"""``cd4ml runs | models | show | lineage | compare`` against a real SQLite store filled the way
the stages fill it: two wine model versions (the second blessed by an override), a cached run,
a failed diabetes run, an image and deployments to staging and production."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import pytest

from cd4ml.cli import main
from cd4ml.errors import DataError, StoreError
from cd4ml.reporting import lineage as lineage_mod
from cd4ml.store import Store
from tests.helpers import outcome

COLUMNS = ["alcohol", "malic_acid", "target", "alcohol_level"]
DATA_HASH = "d4" * 32
COMMIT_1 = "1a2b3c4d5e6f" + "0" * 28
COMMIT_2 = "9f8e7d6c5b4a" + "1" * 28


@dataclass
class Recorded:
    url: str
    run1: str
    run2: str
    cached: str
    failed: str
    v1_sha: str
    v2_sha: str


def _metrics(store, run_id, accuracy, high, low, production=None):
    rows = [{"name": "accuracy", "value": accuracy}, {"name": "f1_macro", "value": accuracy - 0.02},
            {"name": "roc_auc", "value": float("nan")},
            {"name": "accuracy", "value": high, "slice": "alcohol_level", "slice_value": "high"},
            {"name": "accuracy", "value": low, "slice": "alcohol_level", "slice_value": "low"}]
    if production:
        rows += [{"name": "accuracy", "value": production, "scope": "production", "model_version": 1},
                 {"name": "accuracy", "value": 0.95, "scope": "production", "model_version": 1,
                  "slice": "alcohol_level", "slice_value": "high"}]
    store.record_metrics(run_id, rows)


@pytest.fixture
def recorded(tmp_path, monkeypatch) -> Recorded:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("CD4ML_STORE_URL", url)
    with Store(url) as store:
        store.record_dataset(DATA_HASH, "/repo/pipelines/data/wine.csv", "csv", 178, COLUMNS)
        rules_ok = [outcome(observed=0.9, line=19)]
        rules_bad = [outcome(passed=False, observed=0.8, baseline=0.9, reason="0.8 < 0.85", line=19)]

        r1 = store.start_run("wine", git_commit=COMMIT_1, branch="main", actor="ana",
                             spec_hash="5" * 64, data_hash=DATA_HASH,
                             params={"n_estimators": 100, "max_depth": 8})
        store.record_validation(r1.id, "wine", False, [
            {"expectation": "expect_column_values_to_not_be_null", "column": "alcohol",
             "success": True, "observed": 0, "unexpected_count": 0, "unexpected_examples": []},
            {"expectation": "expect_column_values_to_be_between", "column": "malic_acid",
             "success": False, "observed": 7.2, "unexpected_count": 2, "unexpected_examples": [7.2, 9.1]},
        ], [{"feature": "alcohol", "method": "psi", "statistic": 0.31, "threshold": 0.25, "drifted": True}],
            baseline_version=None)
        _metrics(store, r1.id, 0.9, 0.95, 0.85)
        m1 = store.register_model("wine", r1.id, "classification", "/art/wine/1", "a1" * 32, {}, {})
        store.record_gate(r1.id, m1.id, True, rules_ok, None)
        store.finish_run(r1.id, "succeeded")

        r2 = store.start_run("wine", git_commit=COMMIT_2, branch="feature/deeper", actor="bo",
                             spec_hash="6" * 64, data_hash=DATA_HASH,
                             params={"n_estimators": 200, "max_depth": 8})
        _metrics(store, r2.id, 0.8, 0.9, 0.7, production=0.9)
        m2 = store.register_model("wine", r2.id, "classification", "/art/wine/2", "b2" * 32, {}, {})
        store.record_gate(r2.id, m2.id, False, rules_bad, 1, override_by="cy",
                          override_reason="label noise in March")
        store.finish_run(r2.id, "succeeded")

        r3 = store.start_run("wine", git_commit=COMMIT_2, branch="feature/deeper", actor="bo")
        store.finish_run(r3.id, "succeeded", reused_from=r2.id)
        r4 = store.start_run("diabetes", actor="ana")
        store.finish_run(r4.id, "failed", error="boom")

        img = store.record_image(m1.id, "sha256:" + "c" * 64, "cd4ml/wine:1", 250_000_000)
        store.update_image(img.id, infra_status="passed", digest="localhost:5000/cd4ml/wine@sha256:" + "e" * 64)
        store.record_image(m2.id, "sha256:" + "f" * 64, "cd4ml/wine:2", 251_000_000, "passed")
        for env, model, action in (("staging", m1, "deploy"), ("production", m1, "promote"),
                                   ("staging", m2, "deploy")):
            dep = store.start_deployment("wine", env, model.id, f"cd4ml/wine:{model.version}",
                                         "local", action, "ana" if action == "deploy" else "bo")
            store.finish_deployment(dep.id, "healthy", url=f"http://127.0.0.1:87{model.version}")
    return Recorded(url, r1.id, r2.id, r3.id, r4.id, m1.sha256, m2.sha256)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(capsys, *argv: str, match: str) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cd4ml: error: "), err
    assert match in lines[0], lines[0]


def _rows(table_text: str) -> dict[str, str]:
    """Table lines keyed by their first cell."""
    return {line.split()[0]: line for line in table_text.splitlines()[2:] if line.strip()}


# ----------------------------------------------------------------------------- runs


def test_runs_table(recorded, capsys):
    code, out, _ = cli(capsys, "runs")
    assert code == 0
    header, *_ = out.splitlines()
    for col in ("run", "pipeline", "status", "model", "commit", "branch", "actor", "started",
                "duration", "cached from"):
        assert col in header
    rows = _rows(out)
    assert set(rows) == {recorded.run1, recorded.run2, recorded.cached, recorded.failed}
    r1 = rows[recorded.run1].split()
    assert r1[:5] == [recorded.run1, "wine", "succeeded", "1", COMMIT_1[:8]]
    assert "main" in r1 and "ana" in r1 and COMMIT_1[:9] not in rows[recorded.run1]
    # a cached run shows the model of the run it reused, and which run that was
    cached = rows[recorded.cached].split()
    assert cached[3] == "2" and cached[-1] == recorded.run2
    assert "failed" in rows[recorded.failed].split()
    # newest first
    assert list(rows) == [recorded.failed, recorded.cached, recorded.run2, recorded.run1]


def test_runs_filters_and_limits(recorded, capsys, pipelines_dir):
    _, out, _ = cli(capsys, "runs", "-p", "wine", "--limit", "2")
    assert list(_rows(out)) == [recorded.cached, recorded.run2]
    # a spec path names its pipeline
    _, out, _ = cli(capsys, "runs", "-p", str(pipelines_dir / "diabetes.yaml"))
    assert list(_rows(out)) == [recorded.failed]
    # an unknown name is an error listing the known ones, not an empty list
    assert_usage_error(capsys, "runs", "-p", "nothing",
                       match="pipeline 'nothing': no spec pipelines/nothing.yaml, none whose name is "
                             "'nothing' and nothing recorded of it (known: diabetes ")


def test_runs_json(recorded, capsys):
    code, out, _ = cli(capsys, "runs", "--json", "--store", recorded.url)
    assert code == 0
    runs = {r["id"]: r for r in json.loads(out)}
    assert runs[recorded.run1]["model_version"] == 1 and runs[recorded.cached]["model_version"] == 2
    assert runs[recorded.cached]["reused_from"] == recorded.run2
    assert runs[recorded.run1]["params"] == {"n_estimators": 100, "max_depth": 8}
    assert runs[recorded.run1]["duration_seconds"] >= 0
    assert runs[recorded.failed]["model_version"] is None and runs[recorded.failed]["error"] == "boom"


def test_runs_on_an_empty_store(capsys, tmp_path):
    code, out, _ = cli(capsys, "runs", "--store", f"sqlite:///{tmp_path / 'empty.db'}")
    assert code == 0 and out.strip() == "no runs recorded"


# ----------------------------------------------------------------------------- models


def test_models_table(recorded, capsys):
    code, out, _ = cli(capsys, "models")
    assert code == 0
    assert "deployed now" in out.splitlines()[0]
    rows = _rows(out)
    assert list(rows) == ["wine:2", "wine:1"]
    v1, v2 = rows["wine:1"], rows["wine:2"]
    assert recorded.run1 in v1 and recorded.v1_sha[:12] in v1 and recorded.v1_sha[:13] not in v1
    assert v1.rstrip().endswith("production")  # staging moved on to v2
    assert v2.rstrip().endswith("staging")
    assert "yes (OVERRIDDEN by cy)" in v2  # a blessing by override is never shown as a plain yes


def test_models_json_and_filter(recorded, capsys):
    code, out, _ = cli(capsys, "models", "--json", "-p", "wine")
    assert code == 0
    models = {m["ref"]: m for m in json.loads(out)}
    assert set(models) == {"wine:1", "wine:2"}
    assert models["wine:1"]["deployed"] == ["production"] and models["wine:2"]["deployed"] == ["staging"]
    assert models["wine:2"]["gate"]["overridden"] and models["wine:2"]["gate"]["override_by"] == "cy"
    assert models["wine:2"]["blessed"] and models["wine:1"]["gate"]["blessed"]
    _, out, _ = cli(capsys, "models", "-p", "diabetes")
    assert out.strip() == "no model versions recorded for diabetes"


# ----------------------------------------------------------------------------- show


def test_show_run_shows_everything_recorded(recorded, capsys):
    code, out, _ = cli(capsys, "show", recorded.run2)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"run {recorded.run2}") and "pipeline wine" in lines[0]
    # the override is the second line, not buried under the tables
    assert lines[1] == "gate OVERRIDDEN by cy: label noise in March"
    assert COMMIT_2 in out and "feature/deeper" in out and "6" * 64 in out
    assert "params: max_depth=8, n_estimators=200" in out
    assert f"data: /repo/pipelines/data/wine.csv (csv, 178 rows, 4 columns) sha256 {DATA_HASH}" in out
    assert f"model: wine:2 (blessed) sha256 {recorded.v2_sha}" in out
    assert "deployed now: staging" in out
    metrics = {tuple(line.split()[:2]): line.split() for line in lines if line.startswith("accuracy")}
    assert metrics[("accuracy", "all")][2:] == ["0.8", "0.9", "-0.1"]
    assert metrics[("accuracy", "alcohol_level=high")][2:] == ["0.9", "0.95", "-0.05"]
    assert metrics[("accuracy", "alcohol_level=low")][2:] == ["0.7", "-", "-"]
    assert "roc_auc" in out and "NaN" not in out.replace("nan", "")  # NaN was stored as NULL
    assert "0.8 < 0.85" in out and "FAIL" in out
    assert out.count("OVERRIDDEN by cy: label noise in March") == 2  # banner and gate section


def test_show_validation_summary(recorded, capsys):
    _, out, _ = cli(capsys, "show", recorded.run1)
    assert "validation: 1/2 expectations passed; drift 1/1 features over threshold" in out
    assert "expect_column_values_to_be_between on malic_acid: observed 7.2, e.g. 7.2, 9.1" in out
    assert "drift alcohol: psi 0.31 > 0.25" in out
    assert "OVERRIDDEN" not in out and "gate: passed -> blessed" in out


def test_show_model_version_and_cached_run(recorded, capsys):
    code, out, _ = cli(capsys, "show", "wine:1")
    assert code == 0 and out.startswith(f"run {recorded.run1}")
    code, out, _ = cli(capsys, "show", "wine:latest")
    assert out.startswith(f"run {recorded.run2}")
    code, out, _ = cli(capsys, "show", recorded.cached[:8])
    assert code == 0 and out.startswith(f"run {recorded.cached}")
    assert f"results of run {recorded.run2}" in out and "model: wine:2" in out
    assert "OVERRIDDEN by cy" in out  # the reused results carry their override too


def test_show_failed_run_without_model(recorded, capsys):
    code, out, _ = cli(capsys, "show", recorded.failed)
    assert code == 0
    assert "status failed" in out and "error        boom" in out and "model: none" in out


def test_show_json(recorded, capsys):
    code, out, _ = cli(capsys, "show", "--json", recorded.cached)
    assert code == 0
    doc = json.loads(out)
    assert doc["cached"] and doc["source_run"]["id"] == recorded.run2 and doc["run"]["id"] == recorded.cached
    assert doc["model"]["version"] == 2 and doc["deployed"] == ["staging"]
    assert doc["gate"]["overridden"] and doc["gate"]["override_reason"] == "label noise in March"
    overall = next(m for m in doc["metrics"] if m["name"] == "accuracy" and not m["slice"])
    assert overall["candidate"] == 0.8 and overall["production"] == 0.9
    assert overall["delta"] == pytest.approx(-0.1)
    assert doc["dataset"]["hash"] == DATA_HASH  # the data of the results it reused
    _, out, _ = cli(capsys, "show", "--json", recorded.run1)
    doc = json.loads(out)
    assert doc["dataset"]["rows"] == 178 and doc["validation"]["success"] is False


@pytest.mark.parametrize("argv,match", [
    (["show", "nope"], "'nope': expected a run id (see 'cd4ml runs') or a model version: N, vN"),
    (["show", "abc123"], "no run 'abc123'"),
    (["show", "wine:99"], "no model version wine:99"),
    (["show", "wine:x"], "'wine:x': expected a run id (see 'cd4ml runs') or a model version: N"),
    (["show", "beer:latest"], "pipeline 'beer' has no model versions"),
    (["lineage", "wine:7"], "no model version wine:7"),
    (["lineage", "nope"], "model version 'nope': expected N, vN, PIPELINE:N"),
    (["lineage"], "give a model version"),
    (["compare", "wine:1", "wine:9"], "no model version wine:9"),
    (["compare", "zzz", "wine:1"], "'zzz': expected a run id"),
    (["compare", "fff", "wine:1"], "no run 'fff'"),
])
def test_unknown_references_exit_2_with_one_line(recorded, capsys, argv, match):
    assert_usage_error(capsys, *argv, match=match)


# ----------------------------------------------------------------------------- lineage


def test_lineage_walks_data_run_model_images_deployments(recorded, capsys):
    code, out, _ = cli(capsys, "lineage", "wine:1")
    assert code == 0
    order = [out.index(x) for x in ("\ndata ", "\nrun ", "\nmodel ", "\nimages", "\ndeployments")]
    assert order == sorted(order)
    assert f"sha256 {DATA_HASH}" in out and "/repo/pipelines/data/wine.csv" in out
    assert "178 rows, 4 columns: alcohol, malic_acid, target, alcohol_level" in out
    assert f"commit {COMMIT_1} on main by ana" in out and f"spec {'5' * 64}" in out
    assert f"sha256 {recorded.v1_sha}" in out and "artifact /art/wine/1" in out
    assert "gate passed" in out
    images = _rows(out[out.index("\nimages"):out.index("\n  ↓", out.index("\nimages"))].split("\n", 2)[2])
    assert list(images) == ["c" * 12]
    assert "cd4ml/wine:1" in images["c" * 12] and "@sha256:" + "e" * 64 in images["c" * 12]
    assert "passed" in images["c" * 12] and "250" in images["c" * 12]
    deployments = out[out.index("\ndeployments") + 1:].splitlines()[3:5]
    assert deployments[0].split()[:4] == ["staging", "deploy", "replaced", "local"]
    assert deployments[1].split()[:4] == ["production", "promote", "healthy", "CURRENT"]
    assert "bo" in deployments[1] and "http://127.0.0.1:871" in deployments[1]
    assert out.rstrip().endswith("serving now: production")


def test_lineage_shows_an_override(recorded, capsys):
    _, out, _ = cli(capsys, "lineage", "wine:2")
    assert "gate OVERRIDDEN by cy" in out and "gate OVERRIDDEN by cy: label noise in March" in out
    assert "serving now: staging" in out


def test_lineage_json(recorded, capsys):
    code, out, _ = cli(capsys, "lineage", "--json", "wine:1")
    assert code == 0
    doc = json.loads(out)
    assert doc["ref"] == "wine:1" and doc["dataset"]["hash"] == DATA_HASH
    assert doc["run"]["git_commit"] == COMMIT_1 and doc["model"]["sha256"] == recorded.v1_sha
    assert [i["reference"] for i in doc["images"]] == ["cd4ml/wine:1"]
    assert [(d["environment"], d["current"]) for d in doc["deployments"]] == [
        ("staging", False), ("production", True)]
    assert doc["environments"] == ["production"] and doc["gate"]["blessed"]


def test_lineage_library(recorded):
    with Store(recorded.url) as store:
        lin = lineage_mod.lineage(store, "wine:2")
        assert lin.model.version == 2 and lin.run.id == recorded.run2
        assert lin.dataset.rows == 178 and lin.gate.overridden
        assert [i.reference for i in lin.images] == ["cd4ml/wine:2"]
        assert lin.environments == ("staging",)
        assert lineage_mod.lineage(store, "wine:latest").model.version == 2
        assert lineage_mod.lineage(store, "v1", "wine").model.version == 1
        assert lineage_mod.lineage(store, "wine@production").model.version == 1
        with pytest.raises(StoreError):
            lineage_mod.lineage(store, "wine:3")


# ----------------------------------------------------------------------------- predictions


def _log(tmp_path, name: str, records: list) -> str:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


@pytest.fixture
def prediction_logs(tmp_path, recorded):
    first = _log(tmp_path, "a.jsonl", [
        "cd4ml.serve: listening on 0.0.0.0:8080",  # a container's other output
        {"time": "2024-05-01T10:00:00Z", "request_id": "req-1", "pipeline": "wine",
         "model_version": 1, "model_sha256": recorded.v1_sha, "inputs": [{"alcohol": 13.2}],
         "predictions": [0], "probabilities": [{"0": 0.9, "1": 0.1}]},
        "{not json but mentions req-2",
    ])
    second = _log(tmp_path, "b.jsonl", [
        {"time": "2024-05-01T11:00:00Z", "request_id": "req-2", "pipeline": "wine",
         "model_version": 2, "model_sha256": "0" * 64, "inputs": [{"alcohol": 12.0}],
         "predictions": [1], "probabilities": None},
        {"time": "2024-05-01T11:00:01Z", "request_id": "req-3", "model": "wine:1",
         "inputs": [{"alcohol": 14.0}], "output": [2]},
        {"time": "2024-05-01T11:00:02Z", "request_id": "req-4", "model": 2,
         "inputs": [{"alcohol": 14.0}], "output": [2]},
        # another project's server: its names say wine:2, its artifact is our wine:1
        {"time": "2024-05-01T11:00:03Z", "request_id": "req-5", "pipeline": "wine",
         "model_version": 2, "model_sha256": recorded.v1_sha, "inputs": [{"alcohol": 14.0}],
         "predictions": [0]},
    ])
    return first, second


def test_lineage_of_a_prediction(recorded, capsys, prediction_logs):
    first, second = prediction_logs
    code, out, _ = cli(capsys, "lineage", "--request-id", "req-1", "--log", first, "--log", second)
    assert code == 0
    head = out.split("\n\n")[0]
    assert head.startswith("prediction req-1  at 2024-05-01T10:00:00Z")
    assert f"found at   {first}:2" in head
    assert f"model      wine:1  (run {recorded.run1}, data {DATA_HASH[:12]}, commit {COMMIT_1[:8]})" in head
    assert 'inputs     [{"alcohol": 13.2}]' in head and "output     [0]" in head
    assert "image      cd4ml/wine:1 localhost:5000/cd4ml/wine@sha256:" in head
    assert "warning" not in out
    assert "lineage of wine:1" in out and "serving now: production" in out


def test_a_prediction_is_traced_by_its_sha256_not_its_names(recorded, capsys, prediction_logs):
    _, second = prediction_logs
    # an artifact this store never recorded: no lineage is made up for it
    code, _, err = cli(capsys, "lineage", "--request-id", "req-2", "--log", second)
    assert code == 2
    assert f"sha256 {'0' * 12} that this store does not record (the log names wine:2)" in err
    # the names say wine:2, the sha256 says wine:1: the sha256 wins, and the output says so
    code, out, _ = cli(capsys, "lineage", "--request-id", "req-5", "--log", second)
    assert code == 0 and "model      wine:1" in out and "lineage of wine:1" in out
    assert "the log line names wine:2, but its sha256 is wine:1's" in out


def test_prediction_model_key_forms(recorded, capsys, prediction_logs, monkeypatch):
    _, second = prediction_logs
    monkeypatch.setenv("CD4ML_PREDICTION_LOG", second)  # the default log
    code, out, _ = cli(capsys, "lineage", "--request-id", "req-3", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["prediction"]["output"] == [2] and doc["lineage"]["ref"] == "wine:1"
    assert doc["sha256_matches"] is None and doc["prediction"]["log_location"] == f"{second}:2"
    # a bare version and no pipeline: the one pipeline that has a version 2
    _, out, _ = cli(capsys, "lineage", "--request-id", "req-4")
    assert "model      wine:2" in out


def test_prediction_errors(recorded, capsys, prediction_logs, tmp_path):
    first, second = prediction_logs
    assert_usage_error(capsys, "lineage", "--request-id", "req-9", "--log", first, "--log", second,
                       match="no prediction with request id 'req-9'")
    assert_usage_error(capsys, "lineage", "--request-id", "req-1", "--log", str(tmp_path / "nope.jsonl"),
                       match="cannot read prediction log")
    assert_usage_error(capsys, "lineage", "--request-id", "req-1", match="no prediction log to search")
    assert_usage_error(capsys, "lineage", "wine:1", "--request-id", "req-1", match="not both")


def test_find_prediction_takes_the_newest_occurrence(tmp_path):
    path = _log(tmp_path, "dup.jsonl", [{"request_id": "r", "model_version": 1},
                                        {"request_id": "rr", "model_version": 5},
                                        {"request_id": "r", "model_version": 2}])
    found = lineage_mod.find_prediction("r", [path])
    assert found["model_version"] == 2 and found["log_location"] == f"{path}:3"
    with pytest.raises(DataError):
        lineage_mod.find_prediction("r", [])


@pytest.mark.parametrize("record,expected", [
    ({"pipeline": "wine", "model_version": 3}, ("wine", 3)),
    ({"model": "wine:4"}, ("wine", 4)),
    ({"model": "4"}, (None, 4)),
    ({"model_version": "5", "pipeline": "diabetes"}, ("diabetes", 5)),
])
def test_prediction_model(record, expected):
    assert lineage_mod.prediction_model(record) == expected


def test_prediction_model_refuses_records_without_a_version():
    for bad in ({"model_version": None}, {}, {"model": "wine:x"}, {"model_version": 2.5}):
        with pytest.raises(StoreError, match="names no model version"):
            lineage_mod.prediction_model({"request_id": "r", **bad})


# ----------------------------------------------------------------------------- compare


def test_compare_table(recorded, capsys):
    code, out, _ = cli(capsys, "compare", "wine:1", "wine:2")
    assert code == 0
    assert out.startswith(f"A: wine:1 (run {recorded.run1})   B: wine:2 (run {recorded.run2})")
    assert f"commit           {COMMIT_1[:12]} -> {COMMIT_2[:12]}" in out
    assert "branch           main -> feature/deeper" in out
    assert "data " not in out  # same data: not listed as a difference
    metrics = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()
               if line.startswith(("accuracy", "f1_macro", "roc_auc"))}
    assert metrics[("accuracy", "all")] == ["0.9", "0.8", "-0.1"]
    assert metrics[("accuracy", "alcohol_level=low")] == ["0.85", "0.7", "-0.15"]
    assert metrics[("f1_macro", "all")] == ["0.88", "0.78", "-0.1"]
    assert metrics[("roc_auc", "all")] == ["-", "-", "-"]
    params = [line.split() for line in out.splitlines() if line.startswith("n_estimators")]
    assert params == [["n_estimators", "100", "200"]]
    assert not any(line.startswith("max_depth") for line in out.splitlines())  # unchanged


def test_compare_runs_by_id_and_cached(recorded, capsys):
    code, out, _ = cli(capsys, "compare", recorded.run1[:7], recorded.cached)
    assert code == 0 and "B: wine:2" in out and "-0.1" in out
    _, out, _ = cli(capsys, "compare", "wine:2", "wine:2")
    assert "params: the same" in out and "+0" in out


def test_compare_csv_and_json(recorded, capsys, tmp_path):
    target = tmp_path / "cmp.csv"
    code, out, _ = cli(capsys, "compare", "wine:1", "wine:2", "--csv", str(target))
    assert code == 0 and "A: wine:1" in out  # the table is still printed
    rows = list(csv.DictReader(target.open()))
    assert list(rows[0]) == ["kind", "name", "slice", "slice_value", "wine:1", "wine:2", "delta"]
    acc = next(r for r in rows if r["name"] == "accuracy" and r["slice"] == "")
    assert float(acc["wine:1"]) == 0.9 and float(acc["delta"]) == pytest.approx(-0.1)
    high = next(r for r in rows if r["slice_value"] == "high")
    assert (high["slice"], float(high["wine:2"])) == ("alcohol_level", 0.9)
    nest = next(r for r in rows if r["name"] == "n_estimators")
    assert (nest["kind"], nest["wine:1"], nest["wine:2"], nest["delta"]) == ("param", "100", "200", "")

    code, out, _ = cli(capsys, "compare", "wine:1", "wine:2", "--csv", "-")
    assert code == 0 and list(csv.DictReader(io.StringIO(out))) == rows  # CSV only on stdout

    code, out, _ = cli(capsys, "compare", "--json", "wine:1", "wine:2")
    doc = json.loads(out)
    assert doc["a"]["ref"] == "wine:1" and doc["b"]["model"]["version"] == 2
    assert doc["changed_params"] == ["n_estimators"]
    acc = next(m for m in doc["metrics"] if m["name"] == "accuracy" and not m["slice"])
    assert (acc["a"], acc["b"]) == (0.9, 0.8) and acc["delta"] == pytest.approx(-0.1)
    assert {d["what"] for d in doc["differences"]} == {"commit", "branch", "spec", "artifact sha256"}


def test_compare_csv_to_an_unwritable_place(recorded, capsys, tmp_path):
    assert_usage_error(capsys, "compare", "wine:1", "wine:2", "--csv", str(tmp_path / "no" / "x.csv"),
                       match="cannot write")


def test_prediction_log_from_stdin(recorded, capsys, monkeypatch):
    line = json.dumps({"request_id": "req-s", "pipeline": "wine", "model_version": 1, "inputs": [],
                       "predictions": [1]})
    monkeypatch.setattr("sys.stdin", io.StringIO("noise\n" + line + "\n"))
    code, out, _ = cli(capsys, "lineage", "--request-id", "req-s", "--log", "-")
    assert code == 0 and "found at   -:2" in out and "model      wine:1" in out
