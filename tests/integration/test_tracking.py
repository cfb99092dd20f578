"""The tracking API as users run it: training scripts in their own processes against the
embedded SQLite store, a parallel sweep of eight, and entry points inside ``cd4ml run``."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest

from cd4ml.errors import TrackedRunError
from cd4ml.spec import load_spec
from cd4ml.stages import pipeline
from cd4ml.store import Store
from tests.helpers import entry_point_spec, run_workers

ROOT = Path(__file__).resolve().parents[2]

# A user's training script: trains on the wine data, logs what it is told to, then gates the
# run on the metrics it logged (exit 1 when the gate fails).
SCRIPT = textwrap.dedent("""\
    import sys
    import pandas as pd
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    import cd4ml
    from cd4ml.stages.tracking import gate_run

    SPEC, DATA, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
    depth = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    frame = pd.read_csv(DATA)
    X, y = frame.drop(columns=["target", "alcohol_level"]), frame["target"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)

    with cd4ml.start_run(pipeline=SPEC, params={"max_depth": depth}, tags={"mode": MODE}) as run:
        run.log_dataset("wine", DATA)
        model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X_train, y_train)
        if MODE == "crash":
            raise RuntimeError("out of memory in epoch 3")
        for step in range(1, 4):
            run.log_metric("train_loss", 1.0 / step, step=step)
        predicted = model.predict(X_test)
        run.log_metric("accuracy", accuracy_score(y_test, predicted))
        if MODE != "no-metric":
            run.log_metric("f1_macro", f1_score(y_test, predicted, average="macro"))
        run.log_model(model, signature_from=X_train)
    print(run.id)
    result = gate_run(SPEC, run.id)
    for o in result.failures:
        print(f"{o.rule}: {o.reason}", file=sys.stderr)
    sys.exit(0 if result.passed else 1)
""")

@pytest.fixture
def project(tmp_path, pipelines_dir) -> Path:
    """A copy of the example pipelines, with the training script above beside them."""
    root = tmp_path / "project"
    shutil.copytree(pipelines_dir, root / "pipelines")
    (root / "train.py").write_text(SCRIPT)
    return root


def spec_file(project: Path, entry_point: str = "custom_train.py") -> Path:
    path = project / "pipelines" / "tracked.yaml"
    path.write_text(entry_point_spec("tracked", entry_point, seed=1))
    return path


def python(project: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # CD4ML_HOME comes from the isolation fixture
    return subprocess.Popen([sys.executable, *args], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def script(project: Path, mode: str, *extra: str) -> tuple[int, str, str]:
    proc = python(project, "train.py", str(spec_file(project)),
                  str(project / "pipelines" / "data" / "wine.csv"), mode, *extra)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_a_script_that_logs_what_the_gates_read_passes_and_its_model_is_blessed(project):
    code, out, err = script(project, "good")
    assert code == 0, err
    with Store() as store:
        run = store.run(out.strip())
        model = store.model_for_run(run.id)
        assert (run.kind, run.status, run.pipeline) == ("tracked", "succeeded", "tracked")
        assert run.params == {"max_depth": 4} and run.tags["mode"] == "good"
        assert run.data_hash == run.tags["dataset.wine"] and store.dataset(run.data_hash).rows == 178
        assert model.blessed and store.gate(run.id).passed
        assert [m.step for m in store.metrics(run.id) if m.name == "train_loss"] == [1, 2, 3]


def test_a_script_that_logs_no_metric_a_gate_needs_fails_closed_naming_it(project):
    code, out, err = script(project, "no-metric")
    assert code == 1
    assert "f1_macro >= 0.8: f1_macro was not computed; failing closed" in err
    with Store() as store:
        run = store.run(out.strip())
        assert run.status == "gate_failed"
        assert not store.model_for_run(run.id).blessed
        decision = store.gate(run.id)
    assert [r.metric for r in decision.rules if not r.passed] == ["f1_macro"]
    # the CLI gates a tracked run on what it logged, too
    from cd4ml.cli import main

    assert main(["gate", "-p", str(spec_file(project)), "--run", out.strip()]) == 1


def test_a_script_that_crashes_is_recorded_failed_with_its_error(project):
    code, _, err = script(project, "crash")
    assert code == 1 and "RuntimeError: out of memory in epoch 3" in err  # Python's traceback
    with Store() as store:
        [run] = store.runs("tracked")
        assert run.status == "failed" and run.ended_at is not None
        assert run.error == "RuntimeError: out of memory in epoch 3"
        assert store.model_for_run(run.id) is None


def _sweep_worker(spec: str, data: str, depth: int, barrier, results) -> None:
    """One trial of a hyper-parameter sweep, in its own process, started with the others."""
    try:
        import pandas as pd
        from sklearn.metrics import accuracy_score
        from sklearn.tree import DecisionTreeClassifier

        import cd4ml

        frame = pd.read_csv(data)
        X, y = frame.drop(columns=["target", "alcohol_level"]), frame["target"]
        barrier.wait(timeout=60)
        with cd4ml.start_run(pipeline=spec, params={"max_depth": depth}) as run:
            run.log_dataset("wine", data)
            model = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X, y)
            for step in range(1, 4):
                run.log_metric("train_loss", 1.0 / step, step=step)
            run.log_metrics({"accuracy": accuracy_score(y, model.predict(X)), "f1_macro": 0.9})
            logged = run.log_model(model, signature_from=X)
        results.put((run.id, logged.version, None))
    except BaseException:  # noqa: BLE001 -- the parent reports it; a child's traceback is lost otherwise
        results.put((None, None, traceback.format_exc()))


def test_a_parallel_sweep_of_eight_processes_loses_no_run(project):
    # forked from this process, whose pandas and scikit-learn are already imported: eight
    # processes racing on one SQLite file without paying eight interpreter start-ups
    import pandas  # noqa: F401
    import sklearn.metrics
    import sklearn.tree  # noqa: F401

    import cd4ml.stages.drift
    import cd4ml.stages.train  # noqa: F401

    ctx = multiprocessing.get_context("fork")
    depths = range(1, 9)
    barrier, results = ctx.Barrier(len(depths)), ctx.Queue()
    spec, data = str(spec_file(project)), str(project / "pipelines" / "data" / "wine.csv")
    procs = [ctx.Process(target=_sweep_worker, args=(spec, data, d, barrier, results)) for d in depths]
    outcomes = run_workers(procs, results)
    assert not [err for _, _, err in outcomes if err], [err for _, _, err in outcomes if err]
    ids = [run_id for run_id, _, _ in outcomes]
    assert len(set(ids)) == 8
    with Store() as store:
        runs = store.runs("tracked")
        assert sorted(r.id for r in runs) == sorted(ids)
        assert all(r.status == "succeeded" and r.kind == "tracked" for r in runs)
        assert sorted(r.params["max_depth"] for r in runs) == list(depths)
        models = store.models("tracked")
        assert sorted(m.version for m in models) == list(range(1, 9))
        assert sorted(v for _, v, _ in outcomes) == list(range(1, 9))  # what each was told
        assert sorted(m.run_id for m in models) == sorted(ids)
        for run in runs:  # every metric of every run arrived
            names = sorted(m.name for m in store.metrics(run.id))
            assert names == ["accuracy", "f1_macro", "train_loss", "train_loss", "train_loss"]


def test_the_example_script_runs_and_records_a_gated_run(tmp_path, repo_root):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "pipelines/custom_train.py", "--gate"], cwd=repo_root,
                         env=env, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr
    assert "gate passed" in out.stdout
    run_id = out.stdout.split()[1].rstrip(":")
    with Store() as store:  # CD4ML_HOME: the test's own store, not the repository's
        run = store.run(run_id)
        assert (run.pipeline, run.kind, run.status) == ("wine-custom", "tracked", "succeeded")
        assert store.model_for_run(run_id).blessed
        assert {"accuracy", "f1_macro", "train_accuracy"} <= {m.name for m in store.metrics(run_id)}


# ------------------------------------------------------------------------------ cd4ml run


def test_cd4ml_run_trains_with_the_entry_point_then_evaluates_gates_and_caches(project):
    spec = load_spec(project / "pipelines" / "wine_custom.yaml")
    with Store() as store:
        first = pipeline.run(spec, store)
        assert first.status == "succeeded" and not first.cached
        model = store.model_for_run(first.run.id)
        assert model.blessed and model.ref == "wine-custom:1"
        names = {(m.name, m.slice) for m in store.metrics(first.run.id)}
        assert ("train_accuracy", "") in names  # logged by the script
        assert ("accuracy", "alcohol_level") in names  # measured on held-out rows by evaluate
        assert store.run(first.run.id).params["n_estimators"] == 100

        again = pipeline.run(spec, store)
        assert again.cached and again.source_run.id == first.run.id

        # the entry point's source is part of the cache key: an edit retrains
        script = project / "pipelines" / "custom_train.py"
        script.write_text(script.read_text() + "\n# tuned\n")
        edited = pipeline.run(load_spec(project / "pipelines" / "wine_custom.yaml"), store)
        assert not edited.cached and edited.model.version == 2
        assert edited.model.sha256 == model.sha256  # same code path, same seed: same model


def test_cd4ml_run_records_a_crashing_entry_point_as_failed(project):
    (project / "pipelines" / "broken.py").write_text(
        "def train(run, data):\n    raise KeyError('learning_rate')\n")
    spec = load_spec(spec_file(project, "broken.py"))
    with Store() as store:
        with pytest.raises(TrackedRunError, match=r"broken.py raised KeyError: 'learning_rate'"):
            pipeline.run(spec, store)
        [run] = store.runs("tracked")
        assert run.status == "failed" and "KeyError: 'learning_rate' at " in run.error
        assert store.models("tracked") == []


# ------------------------------------------------------------------------------ read commands


def test_tracked_runs_appear_in_runs_show_compare_and_lineage(project, capsys):
    import json

    import pandas as pd
    from sklearn.tree import DecisionTreeClassifier

    import cd4ml
    from cd4ml.cli import main

    data = project / "pipelines" / "data" / "wine.csv"
    frame = pd.read_csv(data)
    X, y = frame.drop(columns=["target", "alcohol_level"]), frame["target"]
    ids = []
    for depth in (2, 4):
        with cd4ml.start_run(pipeline="sweep", params={"max_depth": depth}) as run:
            run.log_dataset("wine", data)
            run.log_metric("accuracy", 0.8 + depth / 100)
            run.log_model(DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X, y),
                          signature_from=X, y=y)
        ids.append(run.id)

    def cli(*argv: str) -> dict | list:
        capsys.readouterr()
        assert main([*argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    listed = {r["id"]: r for r in cli("runs")}
    assert set(ids) <= set(listed) and listed[ids[0]]["kind"] == "tracked"
    shown = cli("show", ids[1])
    assert shown["run"]["kind"] == "tracked" and shown["model"]["version"] == 2
    assert shown["dataset"]["hash"] == shown["run"]["data_hash"]
    compared = cli("compare", "sweep:1", "sweep:2")
    assert compared["changed_params"] and json.dumps(compared).count("accuracy") >= 1
    lineage = cli("lineage", "sweep:2")
    assert lineage["run"]["id"] == ids[1] and lineage["dataset"]["rows"] == 178
