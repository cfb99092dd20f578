"""The tracking API: record runs from any training script in cd4ml's own store.

    import cd4ml

    with cd4ml.start_run(pipeline="wine-custom", params={"n_estimators": 200}) as run:
        run.log_dataset("train", "pipelines/data/wine.csv")
        model = RandomForestClassifier(n_estimators=200).fit(X, y)
        run.log_metric("accuracy", accuracy_score(y_test, model.predict(X_test)))
        run.log_model(model, signature_from=X)

A run records itself as ``kind="tracked"`` with git commit, branch, actor, start and end; one
that raises is recorded as failed with the error, and the exception goes on. The store is the
embedded one by default (``$CD4ML_STORE_URL``, else ``.cd4ml/cd4ml.db``), which is safe from
several processes at once, so a parallel sweep loses no run.

A pipeline spec may name a training entry point instead of an estimator
(``model.entry_point: module:function`` or ``path/to/script.py``, whose ``train`` is called):
``cd4ml run`` calls it as ``fn(run, data)`` with a handle bound to the pipeline's own run and
the training rows (:class:`TrainingData`), then evaluates and gates the model it logged exactly
as for a declared estimator. :func:`gate_run` gates a tracked run on the metrics it logged.

The package: ``start.py`` (``start_run``), ``handle.py`` (the run handle), ``entry_point.py``
(``model.entry_point`` under ``cd4ml run``) and ``gating.py`` (``gate_run``); data-set hashing
is ``cd4ml.stages.data``'s, and which spec a run belongs to is :mod:`cd4ml.refs`' (the
pipeline resolver ``-p`` uses too).
"""

from __future__ import annotations

from cd4ml.refs import find_spec
from cd4ml.stages.data import frame_hash
from cd4ml.stages.tracking.entry_point import load_entry_point, run_entry_point, training_data
from cd4ml.stages.tracking.gating import gate_run, logged_metrics
from cd4ml.stages.tracking.handle import ActiveRun, TrainingData, describe_error
from cd4ml.stages.tracking.start import start_run

__all__ = ["ActiveRun", "TrainingData", "describe_error", "find_spec", "frame_hash", "gate_run",
           "load_entry_point", "logged_metrics", "run_entry_point", "start_run", "training_data"]
