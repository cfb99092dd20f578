"""The model server: a cd4ml model artifact behind HTTP, with nothing else of cd4ml.

Run it as ``python -m cd4ml.serve --model-dir DIR [--host H] [--port P] [--workers N]`` (or
``cd4ml serve PIPELINE:VERSION``). The image installs this package, ``cd4ml/artifacts.py``,
numpy and scikit-learn; pandas only matters for models that select columns by name. An image
built with ``image.runtime: onnx`` installs numpy and onnxruntime instead, and serves the
compiled model (:mod:`cd4ml.serve.compiled`).

Endpoints (described by ``GET /openapi.json``):

- ``POST /predict``: rows as ``{"instances": [{...}, ...]}``, ``{"inputs": {...}}`` (one row,
  or one list per feature), or ``{"columns": [...], "data": [[...], ...]}``; checked against
  the model's signature (422 naming the row and field otherwise). Answers
  ``{"predictions", "probabilities" (classifiers, keyed by class label), "pipeline",
  "model_version", "request_id"}``; the request id is the client's ``X-Request-ID`` or a new
  one, echoed in the ``X-Request-ID`` response header.
- ``GET /health`` (alive), ``GET /ready`` (model loaded, else 503), ``GET /metadata`` (model,
  lineage, ``CD4ML_BUILD_TIME``/``CD4ML_IMAGE``), ``GET /metrics`` (Prometheus).

Environment: ``CD4ML_PREDICTION_LOG`` (file for the JSON-lines prediction log; standard output
otherwise), ``CD4ML_MODEL_SHA256`` (refuse to start unless model.pkl has this sha256).

This package imports only the standard library, numpy, scikit-learn (pandas when the model
needs it) or onnxruntime, and :mod:`cd4ml.artifacts` (:mod:`cd4ml.serve.compile`, run only in
the build's compile stage, imports skl2onnx); the server modules load lazily so ``import cd4ml.serve``
is cheap.
"""

from __future__ import annotations

__all__ = ["main", "serve"]


def __getattr__(name: str):
    # the server modules are only imported when used, so `import cd4ml.serve` stays cheap
    if name == "serve":
        from cd4ml.serve.server import serve

        return serve
    if name == "main":
        from cd4ml.serve.__main__ import main

        return main
    raise AttributeError(f"module 'cd4ml.serve' has no attribute {name!r}")
