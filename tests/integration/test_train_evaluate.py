"""train -> evaluate -> gate with real scikit-learn, a real SQLite store file and the real CLI.

The example pipelines are copied with fewer trees, so that each fit takes a few milliseconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cd4ml import artifacts
from cd4ml.cli import main
from cd4ml.errors import ArtifactError, DataError, SpecError
from cd4ml.events import StageFinished, StageStarted, listening
from cd4ml.paths import artifacts_root
from cd4ml.spec import load_spec
from cd4ml.stages.data import file_hash
from cd4ml.stages.evaluate import evaluate
from cd4ml.stages.gate import gate
from cd4ml.stages.train import train
from cd4ml.store import Store
from tests.helpers import serve_in_production

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pipelines(tmp_path):
    """A copy of pipelines/ with small ensembles; ``write(name, old, new)`` edits a spec."""
    target = tmp_path / "pipelines"
    shutil.copytree(ROOT / "pipelines", target)
    for name, old, new in (("wine", "n_estimators: 100", "n_estimators: 8"),
                           ("diabetes", "n_estimators: 150", "n_estimators: 40")):
        path = target / f"{name}.yaml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def fresh_run(store, spec):
    return store.start_run(spec.name).id


# ----------------------------------------------------------------------------- train


def test_retraining_gives_the_same_artifact_and_the_next_version(pipelines, store, tmp_path):
    spec = load_spec(pipelines / "wine.yaml")
    events = []
    with listening(events.append):
        first = train(spec, store, fresh_run(store, spec))
    second = train(spec, store, fresh_run(store, spec))

    assert (first.model.version, second.model.version) == (1, 2)
    assert first.sha256 == second.sha256 == first.model.sha256
    # each version has its own directory and description; the bytes are one hard-linked blob
    assert first.artifact_dir != second.artifact_dir
    assert (first.artifact_dir / "model.pkl").stat().st_ino == (second.artifact_dir / "model.pkl").stat().st_ino
    assert first.model.artifact_uri == str(first.artifact_dir)
    assert first.artifact_dir.is_relative_to(artifacts_root())
    assert artifacts_root() == tmp_path / ".cd4ml" / "artifacts"  # CD4ML_HOME of the test
    assert first.train_rows == 124 and first.seconds > 0  # 70% of 178 rows

    model, meta = artifacts.load(first.artifact_dir, first.sha256)
    assert meta.version == 1 and meta.run_id == first.model.run_id  # not overwritten by v2
    assert artifacts.read_meta(second.artifact_dir).version == 2
    assert meta.data_hash == file_hash(spec.data.path) and meta.spec_hash == spec.spec_hash
    assert model.get_params()["random_state"] == 42 and model.n_estimators == 8

    sig = first.model.signature
    assert sig["target"] == "target" and sig["classes"] == [0, 1, 2]
    assert [i["name"] for i in sig["inputs"]][:2] == ["alcohol", "malic_acid"]
    assert "alcohol_level" not in {i["name"] for i in sig["inputs"]}  # a slice, not a feature
    assert {i["dtype"] for i in sig["inputs"]} == {"float"}
    stats = first.model.stats["alcohol"]
    assert stats["kind"] == "numeric" and stats["count"] == 124 and len(stats["edges"]) == 11

    dataset = store.dataset(file_hash(spec.data.path))
    assert dataset is not None and dataset.rows == 178
    kinds = [(type(e), e.stage) for e in events]
    assert kinds == [(StageStarted, "train"), (StageFinished, "train")]


def test_training_in_another_process_gives_the_same_bytes(pipelines, store, tmp_path):
    """Pickles must not depend on the interpreter's hash seed or anything else of the process."""
    spec = load_spec(pipelines / "wine.yaml")
    here = train(spec, store, fresh_run(store, spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"}
    out = subprocess.run(
        [sys.executable, "-m", "cd4ml", "train", "-p", "pipelines/wine.yaml", "--json",
         "--store", f"sqlite:///{tmp_path / 'other.db'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    there = json.loads(out.stdout)
    assert there["sha256"] == here.sha256
    assert there["model"]["version"] == 1 and there["run_id"]


def test_text_features_are_one_hot_encoded_inside_the_model(pipelines, store):
    data = pd.read_csv(pipelines / "data" / "wine.csv")
    data["colour"] = ["red" if i % 3 else "white" for i in range(len(data))]
    data.loc[::10, "colour"] = None
    data.to_csv(pipelines / "data" / "wine.csv", index=False)
    spec = load_spec(pipelines / "wine.yaml")
    result = train(spec, store, fresh_run(store, spec))

    colour = next(i for i in result.model.signature["inputs"] if i["name"] == "colour")
    assert colour == {"name": "colour", "dtype": "str", "nullable": True}
    assert result.model.stats["colour"]["kind"] == "categorical"
    model, _ = artifacts.load(result.artifact_dir)
    rows = data.drop(columns=["target", "alcohol_level"]).head(3).copy()
    rows["colour"] = ["red", "never seen", None]
    assert len(model.predict(rows)) == 3
    ev = evaluate(spec, store, result.model, result.model.run_id)
    assert ev.metrics["accuracy"] > 0.8


def test_a_pipeline_estimator_that_cannot_take_text_names_the_column(pipelines, store):
    (pipelines / "plain_factory_for_text.py").write_text(
        "from sklearn.pipeline import Pipeline\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "def make():\n    return Pipeline([('m', LogisticRegression())])\n")
    data = pd.read_csv(pipelines / "data" / "wine.csv")
    data["colour"] = "red"
    data.to_csv(pipelines / "data" / "wine.csv", index=False)
    edit(pipelines / "wine.yaml", "sklearn.ensemble:RandomForestClassifier", "plain_factory_for_text:make")
    edit(pipelines / "wine.yaml", "    n_estimators: 8\n    max_depth: 8\n", "    {}\n")
    edit(pipelines / "wine.yaml", "  params:\n", "  params:")
    spec = load_spec(pipelines / "wine.yaml")
    with pytest.raises(DataError, match="'colour'"):
        train(spec, store, fresh_run(store, spec))
    assert store.models("wine") == []


def test_bad_params_missing_labels_and_entry_points_are_clear_errors(pipelines, store):
    spec_path = pipelines / "wine.yaml"
    edit(spec_path, "max_depth: 8", "max_dept: 8")
    spec = load_spec(spec_path)
    with pytest.raises(SpecError, match=r"wine\.yaml:\d+: model\.params: .*max_dept"):
        train(spec, store, fresh_run(store, spec))
    edit(spec_path, "max_dept: 8", "max_depth: 8")

    data = pd.read_csv(pipelines / "data" / "wine.csv")
    data.loc[[3, 5], "target"] = None
    data.to_csv(pipelines / "data" / "wine.csv", index=False)
    with pytest.raises(DataError, match="target column 'target' has 2 missing value"):
        train(load_spec(spec_path), store, fresh_run(store, spec))

    (pipelines / "train_entry_for_test.py").write_text("def main(run):\n    pass\n")
    edit(spec_path, "estimator: sklearn.ensemble:RandomForestClassifier",
         "entry_point: train_entry_for_test:main")
    with pytest.raises(SpecError, match="entry points are run by 'cd4ml run'"):
        train(load_spec(spec_path), store, fresh_run(store, spec))


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_wine(pipelines, store):
    spec = load_spec(pipelines / "wine.yaml")
    trained = train(spec, store, fresh_run(store, spec))
    ev = evaluate(spec, store, trained.model, trained.model.run_id)

    assert ev.model_version == 1 and ev.test_rows == 54
    assert list(ev.metrics) == list(spec.metrics)
    assert all(0.8 <= v <= 1.0 for v in ev.metrics.values()), ev.metrics
    assert set(ev.slices) == {"alcohol_level"} and set(ev.slices["alcohol_level"]) == {"high", "low"}
    assert ev.labels == [0, 1, 2]
    assert sum(map(sum, ev.confusion_matrix)) == 54
    diagonal = sum(ev.confusion_matrix[i][i] for i in range(3))
    assert diagonal / 54 == pytest.approx(ev.metrics["accuracy"])
    assert ev.production_version is None and ev.production_metrics is None

    recorded = store.metrics(trained.model.run_id)
    assert {(m.scope, m.slice, m.slice_value) for m in recorded} == {
        ("candidate", "", ""), ("candidate", "alcohol_level", "high"),
        ("candidate", "alcohol_level", "low")}
    assert len(recorded) == 3 * len(spec.metrics)
    assert all(m.model_version == 1 for m in recorded)


def test_evaluate_diabetes(pipelines, store):
    spec = load_spec(pipelines / "diabetes.yaml")
    trained = train(spec, store, fresh_run(store, spec))
    ev = evaluate(spec, store, trained.model, trained.model.run_id)

    assert set(ev.metrics) == {"rmse", "mae", "r2"} and ev.test_rows == 111
    assert 30 < ev.metrics["mae"] < ev.metrics["rmse"] < 80
    assert 0.2 < ev.metrics["r2"] < 0.8
    assert set(ev.slices["age_band"]) == {"50_plus", "under_50"}
    assert ev.confusion_matrix is None and ev.labels is None
    assert trained.model.signature["classes"] is None


def test_the_candidate_is_compared_with_production_on_the_same_rows(pipelines, store):
    spec = load_spec(pipelines / "wine.yaml")
    v1 = train(spec, store, fresh_run(store, spec)).model
    ev1 = evaluate(spec, store, v1, v1.run_id)
    assert gate(spec, store, ev1, v1.run_id, v1).blessed
    serve_in_production(store, spec, v1)

    edit(pipelines / "wine.yaml", "n_estimators: 8", "n_estimators: 3")
    spec2 = load_spec(pipelines / "wine.yaml")
    v2 = train(spec2, store, fresh_run(store, spec2)).model
    assert v2.version == 2 and v2.sha256 != v1.sha256
    ev2 = evaluate(spec2, store, v2, v2.run_id)

    assert ev2.production_version == 1
    # production scored on the very rows v1 was evaluated on gives v1's own numbers
    assert ev2.production_metrics == ev1.metrics
    assert ev2.production_slices == ev1.slices
    prod_rows = [m for m in store.metrics(v2.run_id) if m.scope == "production"]
    assert len(prod_rows) == 3 * len(spec.metrics) and {m.model_version for m in prod_rows} == {1}

    decision = gate(spec2, store, ev2, v2.run_id, v2)
    assert decision.baseline_version == 1
    drop = next(o for o in decision.outcomes if o.kind == "max_drop")
    assert drop.baseline == ev1.metrics["f1_macro"] and "vs production" in drop.reason


def test_production_is_not_compared_with_itself(pipelines, store):
    spec = load_spec(pipelines / "wine.yaml")
    v1 = train(spec, store, fresh_run(store, spec)).model
    gate(spec, store, evaluate(spec, store, v1, v1.run_id), v1.run_id, v1)
    again = evaluate(spec, store, store.model_by_id(v1.id), v1.run_id)
    assert again.production_version is None and again.production_slices is None


def test_a_tampered_production_artifact_is_refused(pipelines, store, tmp_path):
    spec = load_spec(pipelines / "wine.yaml")
    v1 = train(spec, store, fresh_run(store, spec)).model
    store.set_model_flags(v1.id, blessed=True)
    serve_in_production(store, spec, v1)
    # v1's artifact is replaced by another model's bytes under the same name
    edit(pipelines / "wine.yaml", "n_estimators: 8", "n_estimators: 2")
    spec2 = load_spec(pipelines / "wine.yaml")
    v2 = train(spec2, store, fresh_run(store, spec2))
    shutil.copy(v2.artifact_dir / "model.pkl", Path(v1.artifact_uri) / "model.pkl")
    with pytest.raises(ArtifactError, match=r"wine:1: .*does not match"):
        evaluate(spec2, store, v2.model, v2.model.run_id)


# ----------------------------------------------------------------------------- gate


def test_a_failed_gate_is_not_blessed_until_a_person_overrides_it(pipelines, store):
    edit(pipelines / "diabetes.yaml", "min: 0.3", "min: 0.95")
    spec = load_spec(pipelines / "diabetes.yaml")
    model = train(spec, store, fresh_run(store, spec)).model
    ev = evaluate(spec, store, model, model.run_id)

    refused = gate(spec, store, ev, model.run_id, model)
    assert not refused.blessed
    [failure] = refused.failures
    assert failure.rule == "r2 >= 0.95" and failure.line == spec.gates[0].line
    assert not store.model_by_id(model.id).blessed
    assert store.latest_model("diabetes", blessed=True) is None

    allowed = gate(spec, store, ev, model.run_id, model, override_by="carol", reason="data fix pending")
    assert allowed.blessed and allowed.overridden
    decision = store.gate(model.run_id)
    assert (decision.override_by, decision.override_reason) == ("carol", "data fix pending")
    assert store.latest_model("diabetes", blessed=True).id == model.id


# ----------------------------------------------------------------------------- the CLI


def test_cli_exit_codes_and_output(pipelines, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    common = ["-p", "wine", "--store", url]

    assert main(["evaluate", *common]) == 2
    assert "no model version yet" in capsys.readouterr().err
    assert main(["train", *common]) == 0
    assert "trained wine:1" in capsys.readouterr().out
    assert main(["gate", *common]) == 2
    assert "cd4ml evaluate --model 1" in capsys.readouterr().err
    assert main(["evaluate", *common, "--model", "1"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "alcohol_level=low" in out and "confusion matrix" in out
    assert main(["gate", *common]) == 0
    out = capsys.readouterr().out
    assert "rule" in out and "baseline" in out and "gate passed: wine:1 blessed" in out
    with Store(url) as s:  # v1 serves in production: the baseline from now on
        serve_in_production(s, load_spec(pipelines / "wine.yaml"), s.model("wine", 1))

    edit(pipelines / "wine.yaml", "min: 0.85\n  - metric: f1_macro", "min: 1.01\n  - metric: f1_macro")
    assert main(["train", *common, "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["evaluate", *common, "--model", "wine:2", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["production_version"] == 1 and evaluated["run_id"] == run_id

    assert main(["gate", *common]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "wine.yaml:" in out and "accuracy >= 1.01" in out
    with Store(url) as s:
        assert s.run(run_id).status == "gate_failed"

    assert main(["gate", *common, "--override"]) == 2
    assert "--reason" in capsys.readouterr().err
    assert main(["gate", *common, "--reason", "why"]) == 2
    capsys.readouterr()

    monkeypatch.setenv("GITHUB_ACTOR", "dana")
    assert main(["gate", *common, "--run", run_id, "--override", "--reason", "accepted risk",
                 "--json"]) == 0
    decided = json.loads(capsys.readouterr().out)
    assert decided["overridden"] and decided["override_by"] == "dana" and not decided["passed"]
    assert decided["blessed"] and decided["baseline_version"] == 1
    assert main(["gate", *common, "--run", run_id, "--override", "--reason", "r", "--by", "erin"]) == 0
    assert "OVERRIDDEN by erin: r" in capsys.readouterr().out
    with Store(url) as s:
        assert s.run(run_id).status == "succeeded"
        assert s.model("wine", 2).blessed
        assert s.gate(run_id).override_by == "erin"
