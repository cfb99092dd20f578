"""The pipeline spec: every mistake is a SpecError that starts with ``file:line:`` and names the
field, before any work starts; and the CLI turns it into one line on stderr with exit code 2."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cd4ml.errors import SpecError
from cd4ml.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]

# Each case replaces one snippet of BASE; "#<" marks the line the error must point at.
BASE = """\
name: wine
data:
  path: data/wine.csv
  target: target
  slices: [alcohol_level]
expectations: expectations/wine.json
model:
  task: classification
  estimator: sklearn.ensemble:RandomForestClassifier
  params: {n_estimators: 10}
metrics: [accuracy, f1_macro]
gates:
  - metric: accuracy
    min: 0.8
environments:
  staging:
    port: 8701
  production:
    port: 8702
    requires_approval: true
"""
MODEL_BLOCK = """\
model:
  task: classification
  estimator: sklearn.ensemble:RandomForestClassifier
  params: {n_estimators: 10}
"""


@pytest.fixture
def spec_dir(tmp_path, pipelines_dir):
    (tmp_path / "data").mkdir()
    (tmp_path / "expectations").mkdir()
    shutil.copy(pipelines_dir / "data" / "wine.csv", tmp_path / "data" / "wine.csv")
    shutil.copy(pipelines_dir / "expectations" / "wine.json", tmp_path / "expectations" / "wine.json")
    return tmp_path


def _write(spec_dir: Path, text: str) -> Path:
    path = spec_dir / "spec.yaml"
    path.write_text(text)
    return path


def _marked_line(text: str) -> int:
    marked = [i for i, line in enumerate(text.splitlines(), start=1) if "#<" in line]
    assert len(marked) == 1, "a case marks exactly one line"
    return marked[0]


def _edit(old: str, new: str, base: str = BASE) -> str:
    assert base.count(old) == 1, f"snippet not in BASE exactly once: {old!r}"
    return base.replace(old, new)


def _error(spec_dir: Path, text: str) -> str:
    path = _write(spec_dir, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    msg = str(info.value)
    assert "\n" not in msg, "errors are one line"
    return msg


def assert_error(spec_dir: Path, text: str, *fragments: str, line: int | None = None) -> str:
    msg = _error(spec_dir, text)
    expected = line if line is not None else _marked_line(text)
    prefix = f"{spec_dir / 'spec.yaml'}:{expected}: "
    assert msg.startswith(prefix), f"{msg!r} does not start with {prefix!r}"
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def test_base_spec_loads(spec_dir):
    spec = load_spec(_write(spec_dir, BASE))
    assert spec.name == "wine" and spec.model.task == "classification"
    assert spec.data.slices == ("alcohol_level",) and spec.data.path == spec_dir / "data" / "wine.csv"
    assert spec.expectations == spec_dir / "expectations" / "wine.json"
    assert [g.metric for g in spec.gates] == ["accuracy"] and spec.gates[0].line == 13
    assert [e.name for e in spec.environments] == ["staging", "production"]
    assert spec.environments[0].line == 16 and spec.production.requires_approval
    assert spec.line_of("model") == 7 and spec.line_of("model", "estimator") == 9
    assert len(spec.spec_hash) == 64


def test_the_shipped_examples_load(pipelines_dir):
    paths = sorted(pipelines_dir.glob("*.yaml"))
    assert {"wine", "diabetes"} <= {p.stem for p in paths}
    for path in paths:
        assert load_spec(path).path == path.resolve()


# ------------------------------------------------------------------------------- malformed YAML


@pytest.mark.parametrize("old,new,fragment", [
    ("  target: target\n", " target: target  #<\n", "malformed YAML"),
    ("  target: target\n", "\ttarget: target  #<\n", "cannot start any token"),
    ("name: wine\n", "name: wine: red  #<\n", "mapping values are not allowed"),
    # an unclosed bracket is noticed on the next line; the message says where it started
    ("  slices: [alcohol_level]\nexpectations: expectations/wine.json\n",
     "  slices: [alcohol_level\nexpectations: expectations/wine.json  #<\n", "on line 5"),
], ids=["indent", "tab", "colon", "unclosed-bracket"])
def test_malformed_yaml_reports_the_line(spec_dir, old, new, fragment):
    assert_error(spec_dir, _edit(old, new), "malformed YAML", fragment)


@pytest.mark.parametrize("text,fragment", [
    ("", "the spec is empty"),
    ("# only a comment\n", "the spec is empty"),
    ("just a string\n", "expected a mapping, got a string"),
    ("- a\n- b\n", "expected a mapping, got a list"),
], ids=["empty", "comment", "scalar", "list"])
def test_not_a_mapping_at_the_top(spec_dir, text, fragment):
    assert_error(spec_dir, text, fragment, line=1)


def test_duplicate_keys_name_both_lines(spec_dir):
    msg = assert_error(spec_dir, BASE + "name: again  #<\n", "duplicate key 'name'")
    assert "first on line 1" in msg
    assert_error(spec_dir, _edit("  target: target\n", "  target: target\n  target: other  #<\n"),
                 "duplicate key 'data.target'", "first on line 4")
    assert_error(spec_dir, BASE + "  staging:  #<\n    port: 8703\n",
                 "duplicate key 'environments.staging'", "first on line 16")


def test_non_string_key(spec_dir):
    assert_error(spec_dir, BASE + "1: x  #<\n", "keys must be strings")


# ------------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize("old,new,field", [
    ("name: wine\n", "name: wine\nnmae: wine  #<\n", "nmae"),
    ("  target: target\n", "  target: target\n  taret: x  #<\n", "data.taret"),
    ("    min: 0.8\n", "    min: 0.8\n    minn: 0.9  #<\n", "gates[0].minn"),
    ("    port: 8701\n", "    port: 8701\n    replica: 2  #<\n", "environments.staging.replica"),
    ("  params: {n_estimators: 10}\n", "  params: {n_estimators: 10}\n  sed: 3  #<\n", "model.sed"),
], ids=["top", "data", "gate", "environment", "model"])
def test_unknown_keys_are_named_with_their_line(spec_dir, old, new, field):
    key = field.rsplit(".", 1)[-1]
    msg = assert_error(spec_dir, _edit(old, new), f"{field}: unknown key '{key}'")
    assert "known here:" in msg


@pytest.mark.parametrize("extra,field", [
    ("image:\n  budgets:\n    p95_ms: 3  #<\n", "image.budgets.p95_ms"),
    ("drift:\n  metod: psi  #<\n", "drift.metod"),
    ("split:\n  size: 0.2  #<\n", "split.size"),
], ids=["image-budgets", "drift", "split"])
def test_unknown_keys_in_optional_sections(spec_dir, extra, field):
    assert_error(spec_dir, BASE + extra, f"{field}: unknown key")


# ------------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize("text,fragment", [
    (BASE + "split:\n  test_size: '0.3'  #<\n", "split.test_size: expected a number, got a string '0.3'"),
    (BASE + "split:\n  test_size: true  #<\n", "split.test_size: expected a number, got a boolean"),
    (_edit("    min: 0.8\n", "    min: yes  #<\n"), "gates[0].min: expected a number, got a boolean"),
    (_edit("    min: 0.8\n", "    min: .nan  #<\n"), "gates[0].min: expected a finite number"),
    (_edit("  params: {n_estimators: 10}\n", "  params: {n_estimators: 10}\n  seed: 1.5  #<\n"),
     "model.seed: expected an integer, got a number 1.5"),
    (_edit("    port: 8701\n", "    port: '8701'  #<\n"), "environments.staging.port: expected an integer"),
    (_edit("name: wine\n", "name: 42  #<\n"), "name: expected a string, got a number 42"),
    (_edit("metrics: [accuracy, f1_macro]\n", "metrics: accuracy  #<\n"),
     "metrics: expected a list, got a string"),
    (_edit("metrics: [accuracy, f1_macro]\n", "metrics: [accuracy, 3]  #<\n"),
     "metrics[1]: expected a string, got a number 3"),
    (_edit("  params: {n_estimators: 10}\n", "  params: [1]  #<\n"), "model.params: expected a mapping, got a list"),
    (_edit(MODEL_BLOCK, "model: [a, b]  #<\n"), "model: expected a mapping, got a list"),
    (_edit("data:\n", "data: [a, b]  #<\n").replace(
        "  path: data/wine.csv\n  target: target\n  slices: [alcohol_level]\n", ""),
     "data: expected a mapping, got a list"),
    (_edit("gates:\n  - metric: accuracy\n    min: 0.8\n", "gates:  #<\n  metric: accuracy\n  min: 0.8\n"),
     "gates: expected a list, got a mapping"),
    (_edit("  - metric: accuracy\n    min: 0.8\n", "  - accuracy  #<\n"), "gates[0]: expected a mapping, got a string"),
    (_edit("  staging:\n    port: 8701\n", "  staging: local  #<\n"),
     "environments.staging: expected a mapping, got a string"),
    (_edit("    port: 8701\n", "    port: 8701\n    cpu: [1]  #<\n"), "environments.staging.cpu: expected a string"),
    (BASE + "allow_no_gates: 'yes'  #<\n", "allow_no_gates: expected a boolean"),
], ids=["str-for-number", "bool-for-number", "bool-for-min", "nan", "float-for-int", "str-for-port",
        "number-for-name", "str-for-list", "number-in-list", "list-for-params", "list-for-model",
        "list-for-data", "mapping-for-gates", "str-for-gate", "str-for-environment", "list-for-cpu",
        "str-for-bool"])
def test_wrong_types(spec_dir, text, fragment):
    assert_error(spec_dir, text, fragment)


# ------------------------------------------------------------------------------- missing things


@pytest.mark.parametrize("old,new,line,fragment", [
    ("name: wine\n", "", 1, "(top level): 'name' is required"),
    ("  target: target\n", "", 2, "data: 'target' is required"),
    ("  path: data/wine.csv\n", "  path:\n", 2, "data: 'path' is required"),
    ("  task: classification\n", "", 7, "model: 'task' is required"),
    (MODEL_BLOCK, "", 1, "(top level): 'model' is required"),
    ("  - metric: accuracy\n    min: 0.8\n", "  - min: 0.8\n", 13, "gates[0]: 'metric' is required"),
    ("    port: 8701\n", "    port: 8701\n    autoscale: {min_replicas: 1}\n", 18,
     "environments.staging.autoscale: 'max_replicas' is required"),
], ids=["name", "data.target", "data.path-null", "model.task", "model", "gate-metric", "autoscale-max"])
def test_missing_required_keys(spec_dir, old, new, line, fragment):
    assert_error(spec_dir, _edit(old, new), fragment, line=line)


@pytest.mark.parametrize("text,fragment", [
    (_edit("  path: data/wine.csv\n", "  path: data/nope.csv  #<\n"), "data.path: no such file 'data/nope.csv'"),
    (_edit("expectations: expectations/wine.json\n", "expectations: expectations/nope.json  #<\n"),
     "expectations: no such file 'expectations/nope.json'"),
    (BASE + "image:\n  dockerfile: Dockerfile.nope  #<\n", "image.dockerfile: no such file"),
    (_edit("  estimator: sklearn.ensemble:RandomForestClassifier\n", "  entry_point: train.py  #<\n"),
     "model.entry_point: no such script 'train.py'"),
], ids=["data", "expectations", "dockerfile", "script"])
def test_missing_files(spec_dir, text, fragment):
    msg = assert_error(spec_dir, text, fragment)
    assert str(spec_dir) in msg.split(": ", 1)[1], "the message shows where it looked"


def test_missing_spec_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such pipeline spec"):
        load_spec(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------------- the model


@pytest.mark.parametrize("ref,fragment", [
    ("sklearn.ensemble.RandomForestClassifier", "expected 'module:attr'"),
    ("RandomForestClassifier", "expected 'module:attr'"),
    ("'sklearn.ensemble:'", "expected 'module:attr'"),
    ("nosuchmodule_cd4ml:Thing", "cannot find module 'nosuchmodule_cd4ml'"),
    ("sklearn.nosuchsub:Thing", "cannot find module 'sklearn.nosuchsub'"),
], ids=["dots", "bare", "no-attr", "no-module", "no-submodule"])
def test_bad_estimator(spec_dir, ref, fragment):
    text = _edit("  estimator: sklearn.ensemble:RandomForestClassifier\n", f"  estimator: {ref}  #<\n")
    assert_error(spec_dir, text, "model.estimator: ", fragment)


def test_estimator_and_entry_point_are_exclusive(spec_dir):
    both = _edit("  params:", "  entry_point: train:main\n  params:")
    assert_error(spec_dir, both, "model: give exactly one of", line=7)
    neither = _edit("  estimator: sklearn.ensemble:RandomForestClassifier\n", "")
    assert_error(spec_dir, neither, "model: give exactly one of", line=7)
    nomod = _edit("  estimator: sklearn.ensemble:RandomForestClassifier\n",
                  "  entry_point: nosuchmodule_cd4ml:main  #<\n")
    assert_error(spec_dir, nomod, "model.entry_point: cannot find module")


def test_entry_point_module_next_to_the_spec(spec_dir):
    (spec_dir / "mytrain.py").write_text("def main(run):\n    pass\n")
    spec = load_spec(_write(spec_dir, _edit(
        "  estimator: sklearn.ensemble:RandomForestClassifier\n", "  entry_point: mytrain:main\n")))
    assert spec.model.entry_point == "mytrain:main" and spec.model.estimator is None


@pytest.mark.parametrize("text,fragment", [
    (_edit("  task: classification\n", "  task: clustering  #<\n"), "model.task: must be one of"),
    (_edit("  target: target\n", "  target: target\n  format: xlsx  #<\n"), "data.format: must be one of"),
    (BASE + "split:\n  test_size: 1.5  #<\n", "split.test_size: must be between 0 and 1"),
    (BASE + "drift:\n  method: chi2  #<\n", "drift.method: must be one of psi, ks"),
    (BASE + "drift:\n  features:\n    alcohol: -1  #<\n", "drift.features.alcohol: expected a positive number"),
    (_edit("name: wine\n", "name: Wine Model  #<\n"), "name: must be lower-case"),
    (_edit("  target: target\n", "  target: target\n  features: [alcohol, target]  #<\n"),
     "the target 'target' cannot also be a feature"),
    (_edit("    min: 0.8\n", "    max_drop: -0.1  #<\n"), "gates[0].max_drop: max_drop must be >= 0"),
    (_edit("  - metric: accuracy\n    min: 0.8\n", "  - metric: accuracy  #<\n    slice: alcohol_level\n"),
     "gates[0]: a gate needs at least one of min, max, max_drop"),
], ids=["task", "format", "test-size", "drift-method", "drift-threshold", "name", "target-feature",
        "max-drop", "gate-bound"])
def test_bad_values(spec_dir, text, fragment):
    assert_error(spec_dir, text, fragment)


# ------------------------------------------------------------------------------- metrics and gates


def test_gate_on_a_metric_not_computed(spec_dir):
    text = _edit("  - metric: accuracy\n", "  - metric: roc_auc  #<\n")
    assert_error(spec_dir, text, "gates[0].metric: metric 'roc_auc' is not computed",
                 "add it to metrics: (accuracy, f1_macro)")


def test_unknown_metric_for_the_task(spec_dir):
    text = _edit("metrics: [accuracy, f1_macro]\n", "metrics: [accuracy, rmse]  #<\n")
    assert_error(spec_dir, text, "metrics[1]: unknown classification metric 'rmse'")


def test_gate_slice_must_be_a_declared_slice(spec_dir):
    text = _edit("    min: 0.8\n", "    min: 0.8\n    slice: color  #<\n")
    assert_error(spec_dir, text, "gates[0].slice: 'color' is not a slice column; add it to data.slices")
    ok = load_spec(_write(spec_dir, _edit("    min: 0.8\n", "    min: 0.8\n    slice: alcohol_level\n")))
    assert ok.gates[0].slice == "alcohol_level"
    assert ok.gates[0].describe() == "accuracy per alcohol_level >= 0.8"


def test_no_gates_needs_allow_no_gates(spec_dir):
    no_gates = _edit("gates:\n  - metric: accuracy\n    min: 0.8\n", "")
    assert_error(spec_dir, no_gates, "gates: no gates", "allow_no_gates: true", line=1)
    empty = _edit("gates:\n  - metric: accuracy\n    min: 0.8\n", "gates: []  #<\n")
    assert_error(spec_dir, empty, "gates: no gates")
    allowed = load_spec(_write(spec_dir, no_gates + "allow_no_gates: true\n"))
    assert allowed.gates == () and allowed.allow_no_gates


# ------------------------------------------------------------------------------- environments


def test_environment_target_and_ports(spec_dir):
    assert_error(spec_dir, _edit("    port: 8701\n", "    port: 8701\n    target: ecs  #<\n"),
                 "environments.staging.target: must be one of local, swarm, kubernetes; got 'ecs'")
    assert_error(spec_dir, _edit("    port: 8702\n", "    port: 8701  #<\n"),
                 "environments.production.port: port 8701 is already used by environment 'staging'")
    assert_error(spec_dir, _edit("    port: 8702\n", "    port: 70000  #<\n"),
                 "environments.production.port: must be a TCP port")
    assert_error(spec_dir, _edit("    port: 8702\n", "    port: 8702\n    replicas: 0  #<\n"),
                 "environments.production.replicas: must be at least 1")
    assert_error(spec_dir, _edit("  staging:\n", "  Staging:  #<\n"),
                 "environments.Staging: environment names are lower-case")


def test_same_port_on_kubernetes_or_another_host_is_fine(spec_dir):
    k8s = _edit("    port: 8702\n", "    port: 8701\n    target: kubernetes\n")
    assert load_spec(_write(spec_dir, k8s)).environments[1].port == 8701
    other_host = _edit("    port: 8702\n", "    port: 8701\n    host: 0.0.0.0\n")
    assert load_spec(_write(spec_dir, other_host)).environments[1].host == "0.0.0.0"


def test_environment_defaults_and_an_empty_environment(spec_dir):
    text = _edit("  staging:\n    port: 8701\n", "  staging:\n")
    spec = load_spec(_write(spec_dir, text))
    staging, production = spec.environments
    assert (staging.target, staging.port, staging.replicas) == ("local", 8080, 1)
    assert staging.auto_deploy and not staging.requires_approval
    assert production.requires_approval and production.approver_not_author and not production.auto_deploy
    assert spec.environment("production") is production
    assert spec.previous_environment("production") is staging
    assert spec.previous_environment("staging") is None
    with pytest.raises(SpecError, match=r"spec.yaml: environments: no environment 'qa' \(known: staging, production\)"):
        spec.environment("qa")


# ------------------------------------------------------------------------------- the CSV header


@pytest.mark.parametrize("old,new,field,column", [
    ("  target: target\n", "  target: label  #<\n", "data.target", "label"),
    ("  target: target\n", "  target: target\n  features: [alcohol, colour]  #<\n", "data.features", "colour"),
    ("  slices: [alcohol_level]\n", "  slices: [region]  #<\n", "data.slices", "region"),
], ids=["target", "feature", "slice"])
def test_csv_header_names_the_missing_column(spec_dir, old, new, field, column):
    msg = assert_error(spec_dir, _edit(old, new), f"{field}: column {column!r} is not in wine.csv")
    assert "columns: alcohol, malic_acid" in msg


def test_features_default_to_every_other_column(spec_dir):
    spec = load_spec(_write(spec_dir, BASE))
    assert spec.data.features is None and spec.data.format == "csv"


def test_spec_hash_ignores_layout_but_not_meaning(spec_dir):
    a = load_spec(_write(spec_dir, BASE)).spec_hash
    b = load_spec(_write(spec_dir, "# a comment\n" + BASE.replace("    min: 0.8", "    min:    0.8"))).spec_hash
    c = load_spec(_write(spec_dir, BASE.replace("    min: 0.8", "    min: 0.9"))).spec_hash
    (spec_dir / "expectations" / "wine.json").write_text('{"expectations": []}')
    d = load_spec(_write(spec_dir, BASE)).spec_hash
    assert a == b and a != c and a != d


# ------------------------------------------------------------------------------- the CLI


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cd4ml", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("command", ["validate", "runs", "train"])
def test_cli_reports_a_spec_error_in_one_line(spec_dir, command):
    broken = _write(spec_dir, _edit("    min: 0.8\n", "    min: 0.8\n    minn: 0.9\n"))
    out = _cli([command, "-p", str(broken)], cwd=spec_dir)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert re.fullmatch(rf"cd4ml: error: {re.escape(str(broken))}:15: gates\[0\]\.minn: unknown key 'minn'.*",
                        lines[0]), lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


# ------------------------------------------------------------------------------- monitoring


@pytest.mark.parametrize("text,fragment", [
    (BASE + "monitoring:\n  drift:\n    method: chi2  #<\n", "monitoring.drift.method: must be one of"),
    (BASE + "monitoring:\n  min_rows: 0  #<\n", "monitoring.min_rows: must be at least 1"),
    (BASE + "monitoring:\n  max_refused_rate: 2  #<\n", "monitoring.max_refused_rate: must be a share"),
    (BASE + "monitoring:\n  rules:\n    - metric: rmse  #<\n      min: 1\n",
     "monitoring.rules[0].metric: metric 'rmse' is not computed"),
    (BASE + "monitoring:\n  rules:\n    - metric: accuracy  #<\n", "monitoring.rules[0]: a rule needs"),
    (BASE + "monitoring:\n  windows: 3  #<\n", "monitoring.windows: unknown key 'windows'"),
], ids=["method", "min-rows", "refused-rate", "rule-metric", "rule-bound", "unknown-key"])
def test_bad_monitoring(spec_dir, text, fragment):
    assert_error(spec_dir, text, fragment)


def test_monitoring_defaults_to_drift_and_gates_and_leaves_the_run_cache_alone(spec_dir):
    plain = load_spec(_write(spec_dir, BASE + "drift:\n  method: ks\n"))
    assert plain.monitoring.drift == plain.drift and plain.monitoring.rules == plain.gates
    tuned = load_spec(_write(spec_dir, BASE + "drift:\n  method: ks\n" + (
        "monitoring:\n  drift:\n    threshold: 0.3\n  prediction_threshold: 0.5\n"
        "  rules:\n    - metric: accuracy\n      max_drop: 0.05\n")))
    assert tuned.monitoring.drift.method == "ks" and tuned.monitoring.drift.threshold == 0.3
    assert tuned.monitoring.prediction_drift_threshold == 0.5
    assert [r.max_drop for r in tuned.monitoring.rules] == [0.05]
    assert tuned.training_hash == plain.training_hash  # how a model is watched: no retraining
