"""The compiled model served by a real ``python -m cd4ml.serve`` process, as its image runs it:
scikit-learn, scipy and pandas cannot be imported, only numpy and onnxruntime. No Docker: the
folder is laid out as the onnx image's model folder (model.pkl, model.json, model.onnx,
compiled.json). Infra validation's answer check runs against it under the parity rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cd4ml import artifacts
from cd4ml.release.infraval import _predictions
from cd4ml.serve import compiled
from cd4ml.serve.compile import compile_model
from cd4ml.serve.compiled import TOLERANCE, Tolerance
from cd4ml.serve.schema import fields_of
from tests.integration.test_serve import ROOT, Server, serve_argv
from tests.unit.test_serve_compiled import mixed_pipeline, penguins
from tests.unit.test_serve_predictor import rows_of

HIDDEN = ("sklearn", "scipy", "pandas", "joblib", "threadpoolctl")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    """The penguins-like pipeline (text one-hot encoded, numbers scaled), compiled."""
    from cd4ml.stages.drift import feature_stats
    from cd4ml.stages.train import input_signature

    X, y = penguins()
    model = mixed_pipeline().fit(X, y)
    root = tmp_path_factory.mktemp("onnx")
    directory, sha = artifacts.save(root, "penguins", model)
    signature = input_signature(X, "species", sorted(y.unique().tolist()))
    stats = feature_stats(X, list(X.columns))
    artifacts.write_meta(directory, artifacts.ArtifactMeta(
        pipeline="penguins", task="classification", sha256=sha, signature=signature,
        stats=stats, version=3))
    result = compile_model(model, fields_of(signature), "classification", stats,
                           rows_of(X.head(300)), sha)
    assert result.passed, result.report["reason"]
    (directory / compiled.ONNX_FILE).write_bytes(result.graph)
    (directory / compiled.REPORT_FILE).write_text(json.dumps(result.report))
    return model, X, directory


def image_env(tmp: Path) -> dict[str, str]:
    """What the onnx image has: neither scikit-learn nor its friends."""
    for name in HIDDEN:
        (tmp / name).mkdir(parents=True, exist_ok=True)
        (tmp / name / "__init__.py").write_text(f"raise ImportError('{name} is not in the image')\n")
    return {"PYTHONPATH": f"{tmp}:{ROOT}"}


def test_the_compiled_model_serves_without_scikit_learn(onnx_dir, tmp_path):
    model, X, directory = onnx_dir
    s = Server(serve_argv(directory), env=image_env(tmp_path / "hide")).ready()
    try:
        assert "(ONNX Runtime)" in s.wait_for("ready in")
        import requests

        # /metadata says what serves the model and the parity rule the build held it to
        server = requests.get(f"{s.url}/metadata", timeout=10).json()["server"]
        assert server["runtime"] == "onnx" and not server["forest_shortcut"]
        assert server["parity"]["tolerance"] == {"rtol": TOLERANCE.rtol, "atol": TOLERANCE.atol}
        assert server["parity"]["rule"] == str(TOLERANCE)
        assert 0 <= server["parity"]["max_abs_diff"] <= 1e-5
        assert server["parity"]["rows_checked"] > 300
        rows = X.sample(200, random_state=5).to_dict("records")
        # scikit-learn's own answers, as infra validation's reference container gives them
        frame = X.loc[X.sample(200, random_state=5).index]
        expected = {"task": "classification", "predictions": model.predict(frame).tolist(),
                    "probabilities": model.predict_proba(frame).tolist()}
        check = _predictions(s.url, rows, expected, None, TOLERANCE)
        assert check.passed, check.detail
        assert "within the parity rule" in check.detail
        # the rule bites: held to exact equality, float32 probabilities are not scikit-learn's
        exact = _predictions(s.url, rows, expected, None, Tolerance(0.0, 0.0))
        assert not exact.passed and "probabilities" in exact.detail
        # a row the server refuses is still a 422 naming the field, not a crash
        bad = requests.post(f"{s.url}/predict", json={"instances": [{**rows[0], "island": 3}]},
                            timeout=10)
        assert bad.status_code == 422 and "island" in bad.text
    finally:
        assert s.stop() == 0


def test_a_compiled_json_for_another_model_keeps_the_server_from_starting(onnx_dir, tmp_path):
    _, _, directory = onnx_dir
    copy = tmp_path / "model"
    copy.mkdir()
    for f in directory.iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    report = json.loads((copy / compiled.REPORT_FILE).read_text())
    (copy / compiled.REPORT_FILE).write_text(json.dumps({**report, "model_sha256": "e" * 64}))
    s = Server(serve_argv(copy), env=image_env(tmp_path / "hide"))
    line = s.wait_for("error", timeout=60)
    assert "compiled from model sha256 eeeeeeeeeeee" in line and "rebuild the image" in line
    assert s.stop() != 0
