"""``python -m cd4ml.serve.reference``: the model's own predictions, as infra validation gets them
from a throwaway container of the image (here run as a plain process on an artifact)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cd4ml import artifacts

ROOT = Path(__file__).resolve().parents[2]


def _reference(model_dir: Path, rows: list[dict], tmp_path: Path, sha: str | None = None) -> dict:
    body = tmp_path / "rows.json"
    body.write_text(json.dumps({"instances": rows}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CD4ML_MODEL_DIR": str(model_dir)}
    if sha:
        env["CD4ML_MODEL_SHA256"] = sha
    out = subprocess.run([sys.executable, "-m", "cd4ml.serve.reference", str(body)],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_reference_predictions_are_the_models_own(tmp_path, spec):
    from sklearn.tree import DecisionTreeClassifier

    from cd4ml.stages.data import feature_columns, load_frame

    frame = load_frame(spec.data)
    features = feature_columns(spec.data, frame)
    est = DecisionTreeClassifier(max_depth=3, random_state=0).fit(frame[features], frame["target"])
    directory, sha = artifacts.save(tmp_path / "a", spec.name, est)
    signature = {"inputs": [{"name": f, "dtype": "float", "nullable": False} for f in features],
                 "target": "target", "classes": [int(c) for c in est.classes_]}
    artifacts.write_meta(directory, artifacts.ArtifactMeta(pipeline=spec.name, task="classification",
                                                           sha256=sha, signature=signature))
    rows = frame[features].head(40).to_dict("records")
    got = _reference(directory, rows, tmp_path, sha)
    X = frame[features].head(40)
    assert got == {"task": "classification", "predictions": [int(v) for v in est.predict(X)],
                   "probabilities": est.predict_proba(X).tolist()}
    assert "error" in _reference(directory, rows, tmp_path, "0" * 64)  # not the pinned model
