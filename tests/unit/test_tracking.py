"""The tracking API against a real SQLite store in a temporary directory."""

from __future__ import annotations

import hashlib
import shutil
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

import cd4ml
from cd4ml import artifacts
from cd4ml.errors import DataError, SpecError, TrackedRunError
from cd4ml.spec import load_spec
from cd4ml.stages.data import file_hash
from cd4ml.stages.tracking import frame_hash, gate_run, logged_metrics, run_entry_point
from cd4ml.store import Store
from tests.helpers import entry_point_spec

TREE = """\
from sklearn.tree import DecisionTreeClassifier


def fit(run, data):
    model = DecisionTreeClassifier(random_state=data.seed, **data.params).fit(data.X, data.y)
    run.log_param("rows", len(data.frame))
    run.log_model(model, signature_from=data.X)


def no_model(run, data):
    run.log_metric("accuracy", 0.99)


def crash(run, data):
    raise ValueError("the learning rate is negative")
"""


@pytest.fixture
def store(isolated):
    with Store() as s:  # CD4ML_HOME points into the test's tmp directory
        yield s


@pytest.fixture
def wine(pipelines_dir) -> pd.DataFrame:
    return pd.read_csv(pipelines_dir / "data" / "wine.csv")


@pytest.fixture
def project(tmp_path, pipelines_dir, monkeypatch) -> Path:
    """A repository with pipelines/data/wine.csv and a module of entry points; sys.path and the
    module cache are restored afterwards."""
    root = tmp_path / "project"
    (root / "pipelines" / "data").mkdir(parents=True)
    shutil.copy(pipelines_dir / "data" / "wine.csv", root / "pipelines" / "data" / "wine.csv")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return root


def tiny_spec(project: Path, entry_point: str, source: str = TREE):
    """Write a spec whose entry point lives in a freshly named module (never a cached one)."""
    module = f"entry_{uuid.uuid4().hex[:8]}"
    (project / "pipelines" / f"{module}.py").write_text(source)
    ref = entry_point if entry_point.endswith(".py") else f"{module}:{entry_point}"
    path = project / "pipelines" / "tiny.yaml"
    gates = [{"metric": "accuracy", "min": 0.8}, {"metric": "f1_macro", "min": 0.8, "max_drop": 0.05}]
    path.write_text(entry_point_spec("tiny", ref, seed=3, data={"slices": ["alcohol_level"]},
                                     model={"params": {"max_depth": 4}}, split={"test_size": 0.3},
                                     gates=gates))
    return load_spec(path)


def xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return frame.drop(columns=["target", "alcohol_level"]), frame["target"]


# ------------------------------------------------------------------------------ runs


def test_a_run_records_itself_as_tracked_with_git_facts_and_times(store, monkeypatch):
    from cd4ml.integrations.git import git_info

    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    git = git_info(Path(__file__).parent)
    with cd4ml.start_run(pipeline="sweep", store=store, params={"lr": 0.1}, tags={"team": "ml"}) as run:
        assert store.run(run.id).status == "running"
    record = store.run(run.id)
    assert (record.kind, record.status, record.pipeline) == ("tracked", "succeeded", "sweep")
    assert record.params == {"lr": 0.1} and record.tags["team"] == "ml"
    assert (record.git_commit, record.branch) == (git.commit, git.branch)
    assert record.actor == "octocat"
    assert record.started_at <= record.ended_at
    # the code's identity is the source of the file that started the run: this one
    assert record.code_hash == hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    assert record.error is None


def test_a_run_that_raises_is_recorded_failed_and_the_error_goes_on(store):
    with pytest.raises(ZeroDivisionError), cd4ml.start_run(pipeline="sweep", store=store) as run:
        run.log_metric("loss", 0.5)
        1 / 0  # noqa: B018
    record = store.run(run.id)
    assert record.status == "failed"
    assert record.error == "ZeroDivisionError: division by zero"
    assert record.ended_at is not None
    assert [m.name for m in store.metrics(run.id)] == ["loss"]  # what was logged stays


def test_the_embedded_store_is_the_default_and_a_url_works_too(isolated):
    with cd4ml.start_run(pipeline="sweep") as run:
        pass
    assert (isolated / ".cd4ml" / "cd4ml.db").is_file()
    url = f"sqlite:///{isolated / 'other.db'}"
    with cd4ml.start_run(pipeline="sweep", store=url) as other:
        pass
    with Store() as default, Store(url) as explicit:
        assert default.run(run.id).status == "succeeded"
        assert explicit.run(other.id).status == "succeeded"
        assert [r.id for r in explicit.runs()] == [other.id]


def test_params_and_tags_merge_and_numpy_values_become_plain(store):
    import numpy as np

    with cd4ml.start_run(pipeline="sweep", store=store, params={"a": 1}) as run:
        run.log_params({"b": np.float64(0.5), "a": 2})
        run.log_param("layers", (np.int64(3), 4))
        run.set_tags({"stage": "try"})
        run.set_tag("stage", "final")
    record = store.run(run.id)
    assert record.params == {"a": 2, "b": 0.5, "layers": [3, 4]}
    assert record.tags["stage"] == "final"


def test_a_bad_pipeline_name_is_refused_before_anything_is_recorded(store):
    with pytest.raises(TrackedRunError, match="lower-case"):
        cd4ml.start_run(pipeline="My Pipeline", store=store)
    assert store.runs() == []


def test_an_ended_run_takes_no_more_logs(store):
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        pass
    with pytest.raises(TrackedRunError, match="has ended"):
        run.log_metric("loss", 1.0)


# ------------------------------------------------------------------------------ metrics


def test_metrics_with_steps_and_slices_last_logged_counts(store):
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        for step, loss in enumerate([0.9, 0.5, 0.3]):
            run.log_metric("loss", loss, step=step)
        run.log_metrics({"accuracy": 0.91, "f1_macro": float("nan")})
        run.log_metric("accuracy", 0.8, slice="alcohol_level", slice_value="low")
    rows = store.metrics(run.id)
    assert [(m.name, m.step) for m in rows if m.name == "loss"] == [("loss", 0), ("loss", 1), ("loss", 2)]
    assert all(m.scope == "candidate" for m in rows)
    nan = next(m for m in rows if m.name == "f1_macro")
    assert nan.value is None  # NaN is stored as "not a number"
    overall, slices = logged_metrics(store, run.id)
    assert overall["loss"] == 0.3 and overall["accuracy"] == 0.91
    assert slices == {"alcohol_level": {"low": {"accuracy": 0.8}}}


@pytest.mark.parametrize("call, message", [
    (lambda r: r.log_metric("accuracy", "high"), "not a number"),
    (lambda r: r.log_metric("", 1.0), "1-64 characters"),
    (lambda r: r.log_metric("x" * 65, 1.0), "1-64 characters"),
    (lambda r: r.log_metric("loss", 1.0, step=1.5), "step must be an integer"),
    (lambda r: r.log_metric("accuracy", 1.0, slice="alcohol_level"), "both slice"),
])
def test_bad_metrics_are_refused_with_the_fix(store, call, message):
    with cd4ml.start_run(pipeline="sweep", store=store) as run, \
            pytest.raises(TrackedRunError, match=message):
        call(run)
    assert store.metrics(run.id) == []


# ------------------------------------------------------------------------------ data sets


def test_a_file_is_identified_by_its_sha256_wherever_it_lies(store, tmp_path, pipelines_dir):
    source = pipelines_dir / "data" / "wine.csv"
    copy = tmp_path / "elsewhere.csv"
    shutil.copy(source, copy)
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        first = run.log_dataset("train", source)
        second = run.log_dataset("copy", copy)
    assert first.hash == second.hash == file_hash(source)
    assert (first.rows, first.format) == (178, "csv")
    assert first.columns[0] == "alcohol" and "target" in first.columns
    record = store.run(run.id)
    assert record.data_hash == first.hash
    assert record.tags["dataset.train"] == record.tags["dataset.copy"] == first.hash


def test_a_parquet_file_is_counted_from_its_metadata(store, tmp_path, wine):
    path = tmp_path / "wine.parquet"
    wine.to_parquet(path)
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        ds = run.log_dataset("train", path)
    assert (ds.format, ds.rows, len(ds.columns)) == ("parquet", 178, 15)
    assert ds.hash == file_hash(path)


def test_a_frame_hash_depends_on_content_not_on_the_index(wine):
    same = wine.sample(frac=1.0, random_state=1).sort_index()
    assert frame_hash(wine) == frame_hash(same)
    assert frame_hash(wine.iloc[10:20]) == frame_hash(wine.iloc[10:20].reset_index(drop=True))
    changed = wine.copy()
    changed.loc[5, "alcohol"] += 0.01
    assert frame_hash(changed) != frame_hash(wine)
    assert frame_hash(wine.rename(columns={"alcohol": "ethanol"})) != frame_hash(wine)
    assert frame_hash(wine.astype({"magnesium": "float32"})) != frame_hash(wine)
    assert frame_hash(wine.iloc[::-1]) != frame_hash(wine)  # row order is content


def test_log_dataset_of_a_frame_records_rows_and_columns(store, wine):
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        ds = run.log_dataset("train", wine.iloc[:100])
        again = run.log_dataset("train-again", wine.iloc[:100].copy())
    assert ds.hash == again.hash == frame_hash(wine.iloc[:100])
    assert (ds.rows, ds.format, len(ds.columns)) == (100, "frame", 15)
    assert store.dataset(ds.hash) == ds


def test_the_first_dataset_is_the_runs_data_unless_another_says_training(store, wine):
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        first = run.log_dataset("raw", wine)
        run.log_dataset("eval", wine.iloc[:50])
    assert store.run(run.id).data_hash == first.hash
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        run.log_dataset("raw", wine)
        chosen = run.log_dataset("clean", wine.dropna().iloc[:150], training=True)
    assert store.run(run.id).data_hash == chosen.hash


def test_log_dataset_refuses_what_it_cannot_count(store, tmp_path):
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\0" * 10)
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        with pytest.raises(DataError, match="pass a DataFrame"):
            run.log_dataset("w", blob)
        with pytest.raises(DataError, match="no such data file"):
            run.log_dataset("w", tmp_path / "missing.csv")
        with pytest.raises(TrackedRunError, match="expected a file path or a pandas DataFrame"):
            run.log_dataset("w", [1, 2, 3])


# ------------------------------------------------------------------------------ models


def test_log_model_writes_a_verified_artifact_with_the_input_signature(store, wine):
    from sklearn.tree import DecisionTreeClassifier

    X, y = xy(wine)
    X = X.assign(premium=X["proline"] > 1000, grade=(X["magnesium"]).astype("int64"))
    estimator = DecisionTreeClassifier(random_state=0).fit(X, y)
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        run.log_dataset("train", wine)
        model = run.log_model(estimator, signature_from=X, y=y)
    assert (model.pipeline, model.version, model.run_id, model.task) == ("sweep", 1, run.id, "classification")
    inputs = {i["name"]: i["dtype"] for i in model.signature["inputs"]}
    assert list(inputs) == list(X.columns)
    assert (inputs["alcohol"], inputs["premium"], inputs["grade"]) == ("float", "bool", "int")
    assert model.signature["target"] == "target" and model.signature["classes"] == [0, 1, 2]
    assert model.stats["alcohol"]["kind"] == "numeric" and len(model.stats["alcohol"]["edges"]) == 11
    loaded, meta = artifacts.load(model.artifact_uri, expected_sha256=model.sha256)
    assert artifacts.sha256_file(Path(model.artifact_uri) / "model.pkl") == model.sha256
    assert (meta.version, meta.run_id, meta.data_hash) == (1, run.id, store.run(run.id).data_hash)
    assert list(loaded.predict(X.iloc[:3])) == list(estimator.predict(X.iloc[:3]))


def test_log_model_tells_the_task_and_numbers_versions_per_pipeline(store, wine):
    from sklearn.linear_model import Ridge

    X, y = xy(wine)
    for expected in (1, 2):
        with cd4ml.start_run(pipeline="reg", store=store) as run:
            model = run.log_model(Ridge(alpha=expected).fit(X, y), signature_from=X, target="target")
        assert (model.version, model.task, model.signature["classes"]) == (expected, "regression", None)


def test_log_model_needs_what_it_cannot_guess(store, wine):
    from sklearn.linear_model import Ridge
    from sklearn.tree import DecisionTreeClassifier

    X, y = xy(wine)
    with cd4ml.start_run(pipeline="sweep", store=store) as run:
        with pytest.raises(TrackedRunError, match="signature_from=X"):
            run.log_model(DecisionTreeClassifier().fit(X, y))
        with pytest.raises(TrackedRunError, match="target column is unknown"):
            run.log_model(Ridge().fit(X, y), signature_from=X)
        with pytest.raises(TrackedRunError, match="no fit/predict"):
            run.log_model(object(), signature_from=X)
        with pytest.raises(TrackedRunError, match="task must be one of"):
            run.log_model(Ridge().fit(X, y), signature_from=X, y=y, task="ranking")
        first = run.log_model(Ridge().fit(X, y), signature_from=X, y=y)
        with pytest.raises(TrackedRunError, match=f"already logged {first.ref}"):
            run.log_model(Ridge().fit(X, y), signature_from=X, y=y)
    assert [m.version for m in store.models("sweep")] == [1]


def test_a_pipeline_name_brings_its_spec_task_and_target(store, project, monkeypatch, wine):
    from sklearn.tree import DecisionTreeRegressor

    spec = tiny_spec(project, "fit")
    monkeypatch.chdir(project)
    X, y = xy(wine)
    with cd4ml.start_run(pipeline="tiny", store=store) as run:
        with pytest.raises(TrackedRunError, match="differs from the spec"):
            run.log_model(DecisionTreeRegressor().fit(X, y), signature_from=X, task="regression")
        # a regressor fitted on class labels: the spec says classification, and it wins
        model = run.log_model(DecisionTreeRegressor(random_state=0).fit(X, y), signature_from=X, y=y)
    assert (model.task, model.signature["target"]) == ("classification", "target")
    assert store.run(run.id).spec_hash == spec.spec_hash


# ------------------------------------------------------------------------------ entry points


def test_an_entry_point_trains_on_the_training_rows_in_the_pipelines_run(store, project):
    spec = tiny_spec(project, "fit")
    run = store.start_run("tiny", params={"model": {"max_depth": 4}})
    model = run_entry_point(spec, store, run.id)
    after = store.run(run.id)
    assert model.run_id == run.id and model.ref == "tiny:1"
    assert (after.kind, after.status) == ("pipeline", "running")  # the pipeline closes it
    assert after.params["rows"] == 124  # 178 rows less the 30% held out
    assert after.params["model"] == {"max_depth": 4}


def test_an_entry_point_is_deterministic(store, project):
    spec = tiny_spec(project, "fit", TREE.replace("random_state=data.seed, ", ""))
    # no seed of its own: the global generators are seeded for it
    source = (project / "pipelines").glob("entry_*.py")
    assert "random_state" not in next(source).read_text()
    first = run_entry_point(spec, store, store.start_run("tiny").id)
    second = run_entry_point(spec, store, store.start_run("tiny").id)
    assert first.sha256 == second.sha256 and first.version != second.version


def test_a_script_entry_point_defines_train_and_its_main_block_does_not_run(store, project):
    script = project / "pipelines" / "my_train.py"
    script.write_text(TREE.replace("def fit(", "def train(") + "\nif __name__ == '__main__':\n"
                      "    raise SystemExit('the main block ran')\n")
    spec = tiny_spec(project, "my_train.py")
    model = run_entry_point(spec, store, store.start_run("tiny").id)
    assert model.version == 1


def test_a_script_without_train_is_a_spec_error(store, project):
    (project / "pipelines" / "my_train.py").write_text("x = 1\n")
    spec = tiny_spec(project, "my_train.py")
    with pytest.raises(SpecError, match=r"defines no function train\(run, data\)"):
        run_entry_point(spec, store, store.start_run("tiny").id)


def test_an_entry_point_that_logs_no_model_is_an_error_naming_it(store, project):
    spec = tiny_spec(project, "no_model")
    with pytest.raises(TrackedRunError, match=r"entry point entry_\w+:no_model logged no model"):
        run_entry_point(spec, store, store.start_run("tiny").id)


def test_an_entry_point_that_crashes_says_where(store, project):
    spec = tiny_spec(project, "crash")
    with pytest.raises(TrackedRunError) as caught:
        run_entry_point(spec, store, store.start_run("tiny").id)
    message = str(caught.value)
    assert "raised ValueError: the learning rate is negative" in message
    line = TREE.splitlines().index('    raise ValueError("the learning rate is negative")') + 1
    assert f".py:{line};" in message  # the raise in the user's module
    assert isinstance(caught.value.__cause__, ValueError)


# ------------------------------------------------------------------------------ gating


def _tracked(store, spec, wine, log: dict, slices: dict | None = None):
    from sklearn.tree import DecisionTreeClassifier

    X, y = xy(wine)
    with cd4ml.start_run(pipeline=spec, store=store) as run:
        run.log_model(DecisionTreeClassifier(random_state=0).fit(X, y), signature_from=X, y=y)
        run.log_metrics(log)
    return run


def test_a_run_that_logged_what_the_gates_read_passes_and_is_blessed(store, project, wine):
    spec = tiny_spec(project, "fit")
    run = _tracked(store, spec, wine, {"accuracy": 0.93, "f1_macro": 0.92})
    result = gate_run(spec, run.id, store)
    assert result.passed and result.blessed
    assert [o.kind for o in result.outcomes] == ["min", "min", "max_drop"]
    assert store.model_for_run(run.id).blessed
    assert store.gate(run.id).passed and store.run(run.id).status == "succeeded"


def test_a_run_missing_a_gated_metric_fails_closed_naming_it(store, project, wine):
    from cd4ml.events import StageWarning, listening

    spec = tiny_spec(project, "fit")
    run = _tracked(store, spec, wine, {"accuracy": 0.93, "train_loss": 0.1})
    heard = []
    with listening(heard.append):
        result = gate_run(spec, run.id, store)
    assert not result.passed and not result.blessed
    failed = {o.metric: o.reason for o in result.failures}
    assert set(failed) == {"f1_macro"} and "f1_macro was not computed" in failed["f1_macro"]
    assert any("logged no f1_macro" in e.message for e in heard if isinstance(e, StageWarning))
    assert store.run(run.id).status == "gate_failed"
    assert not store.model_for_run(run.id).blessed


def test_max_drop_compares_with_what_the_production_run_logged(store, project, wine):
    spec = tiny_spec(project, "fit")
    spec.path.write_text(spec.path.read_text() + "environments:\n  production: {}\n")
    spec = load_spec(spec.path)
    good = _tracked(store, spec, wine, {"accuracy": 0.95, "f1_macro": 0.95})
    assert gate_run(spec, good.id, store).blessed  # the first: nothing to compare with
    # production is what serves in the last environment, not merely the newest blessed version
    serving = store.model_for_run(good.id)
    dep = store.start_deployment(spec.name, spec.production.name, serving.id, "img:1", "local",
                                 "deploy", "ana")
    store.finish_deployment(dep.id, "healthy")
    worse = _tracked(store, spec, wine, {"accuracy": 0.95, "f1_macro": 0.85})
    result = gate_run(spec, worse.id, store)
    drop = next(o for o in result.outcomes if o.kind == "max_drop")
    assert not drop.passed and drop.baseline == 0.95 and result.baseline_version == 1
    production = [m for m in store.metrics(worse.id) if m.scope == "production"]
    assert {(m.name, m.value, m.model_version) for m in production} == {
        ("accuracy", 0.95, 1), ("f1_macro", 0.95, 1)}


def test_a_slow_slide_is_blocked_once_production_exists(store, project, wine):
    """Each run a little worse than the one before (f1 0.95 -> 0.92 -> 0.89, max_drop 0.05):
    compared with the newest blessed version every step passes; compared with what serves in
    production the slide is caught."""
    spec = tiny_spec(project, "fit")
    spec.path.write_text(spec.path.read_text() + "environments:\n  staging: {}\n  production: {}\n")
    spec = load_spec(spec.path)
    first = _tracked(store, spec, wine, {"accuracy": 0.95, "f1_macro": 0.95})
    assert gate_run(spec, first.id, store).blessed
    # blessed, but nothing serves in production: the relative rule passes and says so
    second = gate_run(spec, _tracked(store, spec, wine, {"accuracy": 0.95, "f1_macro": 0.92}).id, store)
    drop = next(o for o in second.outcomes if o.kind == "max_drop")
    assert second.blessed and second.baseline_version is None
    assert drop.reason == "no production model to compare with"
    # v1 serves in production (staging does not count): the third step is one too many
    v1 = store.model_for_run(first.id)
    for env in ("staging", "production"):
        dep = store.start_deployment(spec.name, env, v1.id, "img:1", "local", "deploy", "ana")
        store.finish_deployment(dep.id, "healthy")
    third = gate_run(spec, _tracked(store, spec, wine, {"accuracy": 0.95, "f1_macro": 0.89}).id, store)
    drop = next(o for o in third.outcomes if o.kind == "max_drop")
    assert not third.passed and third.baseline_version == 1
    assert "0.89 vs production 0.95" in drop.reason and "more than the 0.05 allowed" in drop.reason


def test_only_a_finished_run_with_a_model_of_the_same_pipeline_is_gated(store, project, wine):
    spec = tiny_spec(project, "fit")
    with cd4ml.start_run(pipeline=spec, store=store) as no_model:
        no_model.log_metric("accuracy", 0.99)
    with pytest.raises(TrackedRunError, match="logged no model"):
        gate_run(spec, no_model.id, store)
    with pytest.raises(ValueError), cd4ml.start_run(pipeline=spec, store=store) as failed:
        raise ValueError("diverged")
    with pytest.raises(TrackedRunError, match=r"failed \(ValueError: diverged\)"):
        gate_run(spec, failed.id, store)
    with cd4ml.start_run(pipeline="other", store=store) as other:
        pass
    with pytest.raises(TrackedRunError, match="is of pipeline 'other', not 'tiny'"):
        gate_run(spec, other.id, store)
