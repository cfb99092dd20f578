"""The validate stage end to end: real great-expectations on the example data, a real SQLite
store holding the production model's training statistics, and the ``cd4ml validate`` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd4ml import cli
from cd4ml.errors import SpecError
from cd4ml.events import ExpectationFailed, StageFailed, StageFinished, StageStarted, listening
from cd4ml.spec import load_spec
from cd4ml.stages.data import file_hash, load_frame
from cd4ml.stages.drift import feature_stats
from cd4ml.stages.validate import validate
from cd4ml.store import Store

WINE_FEATURES = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
                 "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
                 "od280_od315", "proline"]


@pytest.fixture
def pipelines(tmp_path, pipelines_dir) -> Path:
    """A copy of the example pipelines, so a test may corrupt its data or suite."""
    dst = tmp_path / "pipelines"
    shutil.copytree(pipelines_dir, dst)
    return dst


@pytest.fixture
def events():
    seen = []
    with listening(seen.append):
        yield seen


def _register(store: Store, pipeline: str, stats: dict, blessed: bool = True):
    """A model version; a blessed one serves in production (the baseline drift is checked
    against is what serves in the last environment)."""
    run = store.start_run(pipeline)
    model = store.register_model(pipeline, run.id, "classification", "file:///nowhere", "0" * 64,
                                 {"inputs": [], "target": "target", "classes": None}, stats)
    if not blessed:
        return model
    dep = store.start_deployment(pipeline, "production", model.id, "img", "local", "deploy", "ana")
    store.finish_deployment(dep.id, "healthy")
    return store.set_model_flags(model.id, blessed=True)


@pytest.mark.parametrize(("name", "count"), [("wine", 15), ("diabetes", 14)])
def test_example_data_passes_and_is_recorded(pipelines, store, events, name, count):
    spec = load_spec(pipelines / f"{name}.yaml")
    run = store.start_run(name)
    result = validate(spec, store, run.id)
    assert result.success, [e for e in result.expectations if not e.success]
    assert len(result.expectations) == count and result.failures == ()
    assert result.suite == name and result.rows == len(load_frame(spec.data))
    assert result.data_hash == file_hash(spec.data.path)
    assert result.drift == () and result.baseline_version is None
    recorded = store.validation(run.id)
    assert recorded.success and recorded.suite == name and recorded.baseline_version is None
    assert [e["expectation"] for e in recorded.expectations] == [e.expectation for e in result.expectations]
    kinds = [(type(e), e.stage) for e in events]
    assert kinds[0] == (StageStarted, "validate") and kinds[-1] == (StageFinished, "validate")
    assert any("no production model yet" in e.message for e in events)


def test_corrupted_values_fail_naming_expectation_and_examples(pipelines, store, events):
    spec = load_spec(pipelines / "wine.yaml")
    frame = pd.read_csv(spec.data.path)
    frame.loc[[3, 10, 20], "magnesium"] = [-5.0, -7.0, -9.0]
    frame.loc[[1, 2], "alcohol"] = np.nan
    frame.loc[7, "target"] = 7
    frame.to_csv(spec.data.path, index=False)

    run = store.start_run("wine")
    result = validate(spec, store, run.id)
    assert not result.success
    failed = {(e.expectation, e.column): e for e in result.failures}
    assert set(failed) == {("expect_column_values_to_be_between", "magnesium"),
                           ("expect_column_values_to_not_be_null", "alcohol"),
                           ("expect_column_values_to_be_in_set", "target")}
    magnesium = failed["expect_column_values_to_be_between", "magnesium"]
    assert magnesium.unexpected_count == 3 and magnesium.unexpected_examples == [-5.0, -7.0, -9.0]
    assert failed["expect_column_values_to_not_be_null", "alcohol"].unexpected_count == 2
    assert failed["expect_column_values_to_be_in_set", "target"].unexpected_examples == [7]
    assert len(result.expectations) == 15  # the passing ones are reported too
    failed = [e for e in events if isinstance(e, ExpectationFailed)]
    assert len(failed) == 3 and all(not e.outcome.success for e in failed)
    assert isinstance(events[-1], StageFailed)
    assert not store.validation(run.id).success


def test_a_frame_passed_in_is_what_is_validated(pipelines, store):
    spec = load_spec(pipelines / "diabetes.yaml")
    frame = load_frame(spec.data)
    frame.loc[:9, "bmi"] = None
    result = validate(spec, store, frame=frame)
    [failure] = result.failures
    assert (failure.expectation, failure.column, failure.unexpected_count) == \
        ("expect_column_values_to_not_be_null", "bmi", 10)
    assert failure.unexpected_examples == [None] * 5


def test_a_missing_column_fails_its_expectations_with_a_clear_message(pipelines, store):
    spec = load_spec(pipelines / "wine.yaml")
    pd.read_csv(spec.data.path).drop(columns=["proline"]).to_csv(spec.data.path, index=False)
    result = validate(spec, store)
    failed = [(e.expectation, e.column, e.observed) for e in result.failures]
    assert ("expect_column_values_to_be_between", "proline",
            "column 'proline' is missing from the data") in failed
    assert ("expect_column_values_to_be_of_type", "proline",
            "column 'proline' is missing from the data") in failed
    assert failed[0][0] == "expect_table_columns_to_match_set" and "proline" not in failed[0][2]
    assert len(failed) == 3


def test_drift_against_the_production_models_training_statistics(pipelines, store, events):
    spec = load_spec(pipelines / "wine.yaml")
    frame = load_frame(spec.data)
    shifted = frame.assign(alcohol=frame["alcohol"] + 1.5, magnesium=frame["magnesium"] * 1.4)
    model = _register(store, "wine", feature_stats(shifted, WINE_FEATURES))

    run = store.start_run("wine")
    result = validate(spec, store, run.id)
    assert result.baseline_version == model.version
    assert all(e.success for e in result.expectations) and not result.success
    assert [d.feature for d in result.drift] == WINE_FEATURES  # not the target, not the slice
    drifted = {d.feature for d in result.drift if d.drifted}
    assert drifted == {"alcohol", "magnesium"}
    alcohol = next(d for d in result.drift if d.feature == "alcohol")
    assert alcohol.method == "psi" and alcohol.threshold == 0.25 and alcohol.statistic > 1
    recorded = store.validation(run.id)
    assert recorded.baseline_version == model.version and not recorded.success
    assert {d["feature"] for d in recorded.drift if d["drifted"]} == drifted
    assert isinstance(events[-1], StageFailed) and "drift in alcohol, magnesium" in events[-1].message

    # a named person accepts the drift with a reason: recorded with each drifted feature
    accepted = validate(spec, store, store.start_run("wine").id, override_by="rita",
                        reason="new harvest, expected shift")
    assert accepted.success and accepted.drift_override["features"] == ["alcohol", "magnesium"]
    rows = [d for d in store.validation(store.runs("wine", limit=1)[0].id).drift if d["drifted"]]
    assert {(d["accepted_by"], d["accepted_reason"]) for d in rows} == {
        ("rita", "new harvest, expected shift")}


def test_no_drift_against_statistics_of_the_same_data(pipelines, store):
    spec = load_spec(pipelines / "diabetes.yaml")  # KS, threshold 0.2
    frame = load_frame(spec.data)
    features = [c for c in frame.columns if c not in ("target", "age_band")]
    _register(store, "diabetes", feature_stats(frame, features))
    result = validate(spec, store)
    assert result.success and len(result.drift) == len(features)
    assert {d.method for d in result.drift} == {"ks"}
    assert all(d.statistic == pytest.approx(0.0, abs=1e-12) for d in result.drift)


def test_only_a_blessed_model_is_a_baseline(pipelines, store, events):
    spec = load_spec(pipelines / "wine.yaml")
    frame = load_frame(spec.data)
    _register(store, "wine", feature_stats(frame.assign(alcohol=frame["alcohol"] + 5), WINE_FEATURES),
              blessed=False)
    result = validate(spec, store)
    assert result.success and result.baseline_version is None and result.drift == ()
    assert any("no production model yet" in e.message for e in events)


def test_drift_disabled_skips_the_check(pipelines, store, events):
    path = pipelines / "wine.yaml"
    path.write_text(path.read_text().replace("drift:\n  method: psi", "drift:\n  enabled: false\n  method: psi"))
    spec = load_spec(path)
    assert not spec.drift.enabled
    frame = load_frame(spec.data)
    _register(store, "wine", feature_stats(frame.assign(alcohol=frame["alcohol"] + 5), WINE_FEATURES))
    result = validate(spec, store)
    assert result.success and result.drift == () and result.baseline_version is None
    assert any("drift check disabled" in e.message for e in events)


def test_a_broken_suite_is_a_spec_error_and_a_failed_stage(pipelines, store, events):
    suite = pipelines / "expectations" / "wine.json"
    raw = json.loads(suite.read_text())
    raw["expectations"][4]["type"] = "expect_column_values_to_be_tasty"
    suite.write_text(json.dumps(raw))
    with pytest.raises(SpecError, match=r"wine\.json: expectations\[4\] \(expect_column_values_to_be_tasty\)"):
        validate(load_spec(pipelines / "wine.yaml"), store)
    assert isinstance(events[-1], StageFailed) and "wine.json" in events[-1].message


# ----------------------------------------------------------------------------- the command


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_passes_with_a_table_of_every_expectation(pipelines, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, err = _cli(capsys, "validate", "-p", str(pipelines / "wine.yaml"), "--store", url)
    assert code == 0, err
    assert out.count("\npass ") == 15 and "FAIL" not in out
    assert "validation passed: 15/15 expectations passed" in out
    assert "drift: not checked" in out
    assert "✓ validate" in err


def test_cli_fails_with_exit_1_and_shows_failures_and_drift(pipelines, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    spec = load_spec(pipelines / "wine.yaml")
    frame = load_frame(spec.data)
    with Store(url) as s:
        _register(s, "wine", feature_stats(frame.assign(hue=frame["hue"] * 2), WINE_FEATURES))
    frame.loc[[0, 1], "malic_acid"] = [-1.0, 99.0]
    frame.to_csv(spec.data.path, index=False)
    code, out, _ = _cli(capsys, "validate", "-p", str(spec.path), "--store", url)
    assert code == 1
    line = next(x for x in out.splitlines() if "malic_acid" in x and "FAIL" in x)
    assert "expect_column_values_to_be_between" in line and "-1, 99" in line
    assert "drift against model version 1:" in out
    # a failed expectation is never accepted by an override: only drift is
    code, out, _ = _cli(capsys, "validate", "-p", str(spec.path), "--store", url, "--override",
                        "--reason", "known", "--by", "rita")
    assert code == 1 and "ACCEPTED" not in out
    assert next(x for x in out.splitlines() if " hue " in x).startswith("FAIL")
    assert "validation FAILED: 14/15 expectations passed, 1/13 features drifted" in out

    code, out, _ = _cli(capsys, "validate", "-p", str(spec.path), "--store", url, "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["success"] is False and doc["baseline_version"] == 1
    assert [e["column"] for e in doc["expectations"] if not e["success"]] == ["malic_acid"]
    assert [d["feature"] for d in doc["drift"] if d["drifted"]] == ["hue"]


def test_cli_exit_2_with_one_line_for_a_malformed_suite(pipelines, tmp_path):
    (pipelines / "expectations" / "wine.json").write_text('{"name": "wine", "expectations": [\n')
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-m", "cd4ml", "validate", "-p", str(pipelines / "wine.yaml"),
                           "--store", f"sqlite:///{tmp_path / 'cli.db'}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("cd4ml: error:")]
    assert len(errors) == 1 and "wine.json:2: malformed JSON" in errors[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
