"""``python -m cd4ml.serve.reference``: the model's own answers on rows, computed inside the image.

Infra validation compares what the server answers with what the model itself predicts. The model
is a pickle, and unpickling runs code: so the reference is computed here, in a throwaway
container of the same image, as its unprivileged user, with no network and a read-only root —
never on the build host. Rows come as ``{"instances": [...]}`` in the file named by the first
argument; the answer is one JSON line on stdout: ``{"predictions": [...]}`` or ``{"error": ...}``.
The prediction is the estimator's plain ``predict`` (and for classifiers ``predict_proba``,
as ``"probabilities"``: rows in ``classes_`` order) on the server's input matrix, bypassing the
server's shortcuts, its compiled model and HTTP layer, which are what is being checked.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from cd4ml import artifacts
    from cd4ml.serve.predictor import Predictor
    from cd4ml.serve.schema import RequestError, fields_of, parse

    try:
        model_dir = Path(os.environ["CD4ML_MODEL_DIR"])
        estimator, meta = artifacts.load(model_dir, expected_sha256=os.environ.get("CD4ML_MODEL_SHA256"))
        fields = fields_of(meta.signature)
        batch = parse(json.loads(Path(argv[0]).read_text()), fields, max_rows=1_000_000)
        predictor = Predictor(estimator, fields, meta.task, meta.stats)
        X = predictor.matrix(batch.rows)
        labels = estimator.predict(X)
        proba = (estimator.predict_proba(X).tolist() if meta.task == "classification"
                 and predictor.classes is not None and hasattr(estimator, "predict_proba")
                 else None)
    except (KeyError, artifacts.ArtifactMismatch, RequestError, OSError, ValueError, IndexError) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"[:500]}))
        return 1
    print(json.dumps({"task": meta.task, "predictions": [_native(v) for v in labels.tolist()],
                      "probabilities": proba}))
    return 0


def _native(v: object) -> object:
    return v.item() if hasattr(v, "item") else v


if __name__ == "__main__":
    sys.exit(main())
