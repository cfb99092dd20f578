"""``python -m cd4ml.serve.reference``: the model's own predictions, as infra validation gets them
from a throwaway container of the image (here run as a plain process on an artifact)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cd4ml import artifacts
from tests.helpers import small_tree

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
    tree = small_tree(spec, tmp_path / "a")
    artifacts.write_meta(tree.directory, artifacts.ArtifactMeta(
        pipeline=spec.name, task="classification", sha256=tree.sha256, signature=tree.signature))
    head = tree.frame[tree.features].head(40)
    got = _reference(tree.directory, head.to_dict("records"), tmp_path, tree.sha256)
    assert got == {"task": "classification",
                   "predictions": [int(v) for v in tree.estimator.predict(head)],
                   "probabilities": tree.estimator.predict_proba(head).tolist()}
    # not the pinned model
    assert "error" in _reference(tree.directory, head.to_dict("records"), tmp_path, "0" * 64)
