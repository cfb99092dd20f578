"""A trained, evaluated wine model in a store, and prediction logs written by the server's own
log writer (:class:`cd4ml.serve.predlog.PredictionLog`), for the monitoring tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import train_version

#: two features cut to a third: much of it below what training saw, and enough to move the
#: forest's answers (most rows then look like cultivar 1)
SHIFTED = {"proline": lambda x: x * 0.3, "color_intensity": lambda x: x * 0.3}


@dataclass
class World:
    spec: Any
    store: Any
    models: dict  # version -> ModelVersion
    frame: Any  # the wine data

    def estimator(self, version: int) -> Any:
        from cd4ml.stages.evaluate import load_model

        return load_model(self.models[version])

    def log(self, path: Path, version: int, rows: Any, start: float = 0.0,
            ids: list[str] | None = None) -> list[str]:
        """One single-row request per row of ``rows``, answered by ``version``, a second
        apart from ``start`` (Unix time; default: a minute ago); their request ids."""
        import time

        from cd4ml.serve.predlog import PredictionLog
        from cd4ml.serve.schema import label_key

        model = self.models[version]
        names = [i["name"] for i in model.signature["inputs"]]
        est = self.estimator(version)
        X = rows[names]
        labels, proba = est.predict(X), est.predict_proba(X)
        keys = [label_key(c.item()) for c in est.classes_]
        writer = PredictionLog(str(path), {"pipeline": model.pipeline,
                                           "model_version": model.version,
                                           "model_sha256": model.sha256})
        start = start or time.time() - 60
        ids = ids or [uuid.uuid4().hex for _ in range(len(X))]
        for i, values in enumerate(X.itertuples(index=False)):
            writer.record(start + i * 1e-3, ids[i], names, [[float(v) for v in values]],
                          [labels[i].item()], [dict(zip(keys, proba[i].tolist()))])
        writer.close()
        return ids


def make_world(spec: Any, store: Any, versions: tuple[int, ...] = (1,)) -> World:
    import pandas as pd

    from cd4ml.stages.evaluate import evaluate

    models = {}
    for seed in versions:
        model = train_version(spec, store, seed)
        evaluate(spec, store, model, model.run_id)
        models[model.version] = model
    return World(spec, store, models, pd.read_csv(spec.data.path))


def shifted(frame: Any) -> Any:
    out = frame.copy()
    for name, move in SHIFTED.items():
        out[name] = move(out[name])
    return out
