"""The handle on one tracked run (:class:`ActiveRun`) and what an entry point trains on
(:class:`TrainingData`): parameters, tags, metrics, data sets and the model, logged to the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from cd4ml.errors import DataError, TrackedRunError
from cd4ml.stages.data import file_hash, file_shape, frame_hash
from cd4ml.states import MetricScope, RunStatus

if TYPE_CHECKING:
    from types import TracebackType

    import pandas as pd

    from cd4ml.spec import Spec
    from cd4ml.store import Dataset, ModelVersion, Run, Store


@dataclass(frozen=True)
class TrainingData:
    """What an entry point trains on: ``frame`` holds the training rows only (the held-out rows
    are kept back for evaluation), with the spec's feature and target columns."""

    frame: pd.DataFrame
    features: tuple[str, ...]
    target: str
    task: str
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    slices: tuple[str, ...] = ()

    @property
    def X(self) -> pd.DataFrame:
        return self.frame[list(self.features)]

    @property
    def y(self) -> pd.Series:
        return self.frame[self.target]


def plain(v: Any) -> Any:
    """numpy scalars and paths as plain JSON values, recursively."""
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if hasattr(v, "tolist") and callable(v.tolist):  # numpy scalars and arrays
        return plain(v.tolist())
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


class ActiveRun:
    """A handle on one run in the store. Made by :func:`start_run` (a run of its own) or by
    :func:`run_entry_point` (bound to the pipeline's run, which the pipeline finishes)."""

    def __init__(self, store: Store, record: Run, *, spec: Spec | None = None,
                 owns_store: bool = False, owns_run: bool = True,
                 data: TrainingData | None = None):
        self.store = store
        self.id = record.id
        self.pipeline = record.pipeline
        self.spec = spec
        self.model: ModelVersion | None = None
        self._data = data
        self._params = dict(record.params)
        self._tags = dict(record.tags)
        self._data_hash = record.data_hash
        self._git_commit = record.git_commit
        self._spec_hash = record.spec_hash
        self._owns_store = owns_store
        self._owns_run = owns_run
        self._ended = False
        from cd4ml.store.liveness import Heartbeat

        # a run of its own beats while the script works, so that another host can tell a
        # long training from a killed one (a pipeline's run beats in the pipeline)
        self._heartbeat = Heartbeat(store, record.id) if owns_run else None
        if self._heartbeat is not None:
            self._heartbeat.start()

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} pipeline={self.pipeline!r}>"

    @property
    def record(self) -> Run:
        """The run as the store has it now."""
        return self.store.run(self.id)

    def _check_open(self) -> None:
        if self._ended:
            raise TrackedRunError(f"run {self.id} has ended; start a new run to log more")

    # ---- parameters and tags

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Merge ``params`` into the run's parameters (a later value for a key replaces it)."""
        self._check_open()
        self._params.update(plain(dict(params)))
        self.store.update_run(self.id, params=self._params)

    def log_param(self, name: str, value: Any) -> None:
        self.log_params({name: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Merge free-form labels into the run (``cd4ml show`` lists them)."""
        self._check_open()
        self._tags.update(plain(dict(tags)))
        self.store.update_run(self.id, tags=self._tags)

    def set_tag(self, name: str, value: Any) -> None:
        self.set_tags({name: value})

    # ---- metrics

    def log_metric(self, name: str, value: float, step: int | None = None, *,
                   slice: str | None = None, slice_value: Any = None) -> None:
        """Record one value of a metric (scope candidate). Log the same name with increasing
        ``step`` for a curve; the last one logged is the one gates and summaries read. A value
        for one slice of the data names the slice column and its value."""
        self.log_metrics({name: value}, step=step, slice=slice, slice_value=slice_value)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, *,
                    slice: str | None = None, slice_value: Any = None) -> None:
        """Record several metrics at once, in one transaction."""
        self._check_open()
        if (slice is None) != (slice_value is None):
            raise TrackedRunError("log_metric: give both slice (the column) and slice_value, or neither")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise TrackedRunError(f"log_metric: step must be an integer, got {step!r}")
        rows = []
        for name, value in metrics.items():
            if not isinstance(name, str) or not 0 < len(name) <= 64:
                raise TrackedRunError(f"log_metric: metric name {name!r} must be text of 1-64 characters")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise TrackedRunError(f"log_metric: {name} = {value!r} is not a number; log a "
                                    "float (a NaN is recorded as 'not a number')") from None
            rows.append({"name": name, "value": number, "scope": MetricScope.CANDIDATE, "step": step,
                         "slice": slice or "", "slice_value": "" if slice_value is None else str(slice_value)})
        self.store.record_metrics(self.id, rows)

    # ---- data

    def log_dataset(self, name: str, data: str | Path | pd.DataFrame, *,
                    training: bool | None = None) -> Dataset:
        """Record a data set by content hash (sha256 of a file's bytes, or of a frame's columns,
        dtypes and values), with its rows and columns. The first data set logged, or one logged
        with ``training=True``, becomes the run's ``data_hash`` (its lineage); a run bound to a
        pipeline keeps the pipeline's data file as its data set unless ``training=True``."""
        self._check_open()
        if not isinstance(name, str) or not name:
            raise TrackedRunError(f"log_dataset: name must be non-empty text, got {name!r}")
        if isinstance(data, (str, Path)):
            path = Path(data).resolve()
            if not path.is_file():
                raise DataError(f"{data}: no such data file; pass a file path or a DataFrame")
            digest = file_hash(path)
            fmt, rows, columns = file_shape(path)
            where = str(path)
        elif hasattr(data, "dtypes") and hasattr(data, "columns"):
            digest = frame_hash(data)
            fmt, rows, columns, where = "frame", len(data), [str(c) for c in data.columns], f"<frame {name}>"
        else:
            raise TrackedRunError(f"log_dataset: {name}: expected a file path or a pandas DataFrame, "
                                f"got {type(data).__name__}")
        record = self.store.record_dataset(digest, where, fmt, rows, columns)
        self._tags[f"dataset.{name}"] = digest
        values: dict[str, Any] = {"tags": self._tags}
        if training or (training is None and self._data_hash is None):
            self._data_hash = digest
            values["data_hash"] = digest
        self.store.update_run(self.id, **values)
        return record

    # ---- the model

    def log_model(self, estimator: Any, signature_from: pd.DataFrame | None = None, *,
                  task: str | None = None, y: Any = None, target: str | None = None) -> ModelVersion:
        """Register ``estimator`` as the pipeline's next model version: a content-addressed
        artifact with its sha256, the input signature and training statistics of
        ``signature_from`` (a frame of the columns the model takes, e.g. the training X).

        ``task`` (classification|regression) defaults to the spec's, else what scikit-learn says
        the estimator is; ``target`` to the spec's target, else ``y``'s name. One model per run.
        """
        self._check_open()
        from cd4ml.stages.drift import feature_stats
        from cd4ml.stages.train import classes_of, input_signature, register_artifact

        if self.model is not None:
            raise TrackedRunError(f"run {self.id} already logged {self.model.ref}; a run logs one "
                                "model: start a new run for another")
        if not (hasattr(estimator, "predict") and hasattr(estimator, "fit")):
            raise TrackedRunError(f"log_model: a {type(estimator).__name__} has no fit/predict; "
                                "log a fitted scikit-learn estimator or pipeline")
        if signature_from is None and self._data is not None:
            signature_from = self._data.X
        if signature_from is None or not hasattr(signature_from, "columns"):
            raise TrackedRunError("log_model: pass signature_from=X (a DataFrame of the columns the "
                                "model takes, e.g. the training features): it defines the input "
                                "signature the model server checks")
        if y is None and self._data is not None and len(self._data.frame) == len(signature_from):
            y = self._data.y
        task = self._task(estimator, task)
        target = target or (self.spec.data.target if self.spec else None) or getattr(y, "name", None)
        if not target:
            raise TrackedRunError("log_model: the target column is unknown; pass target='column' "
                                "(or y=..., or start the run with a pipeline spec)")

        import pandas as pd

        classes = None
        if task == "classification" and (y is not None or hasattr(estimator, "classes_")):
            classes = classes_of(estimator, pd.Series(y) if y is not None else pd.Series([], dtype=object), task)
        signature = input_signature(signature_from, str(target), classes)
        stats = feature_stats(signature_from, [str(c) for c in signature_from.columns])

        model, _ = register_artifact(
            self.store, pipeline=self.pipeline, run_id=self.id, task=task, estimator=estimator,
            signature=signature, stats=stats, data_hash=self._data_hash,
            git_commit=self._git_commit, spec_hash=self._spec_hash)
        self.model = model
        return model

    def _task(self, estimator: Any, task: str | None) -> str:
        from cd4ml.spec import TASKS

        expected = self.spec.model.task if self.spec else None
        if task is not None and task not in TASKS:
            raise TrackedRunError(f"log_model: task must be one of {', '.join(TASKS)}; got {task!r}")
        if task and expected and task != expected:
            raise TrackedRunError(f"log_model: task {task!r} differs from the spec's model.task "
                                f"{expected!r} ({self.spec.path if self.spec else ''}); they must agree")
        if task or expected:
            return task or expected  # type: ignore[return-value]
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(estimator):
            return "classification"
        if is_regressor(estimator):
            return "regression"
        raise TrackedRunError(f"log_model: cannot tell whether a {type(estimator).__name__} "
                            "classifies or regresses; pass task='classification' or 'regression'")

    # ---- the end

    def end(self, status: RunStatus = RunStatus.SUCCEEDED, error: str | None = None) -> None:
        """Close the run (once). A bound run is left for its pipeline to close."""
        if self._ended:
            return
        self._ended = True
        if self._heartbeat is not None:
            self._heartbeat.stop()
        try:
            if self._owns_run:
                self.store.finish_run(self.id, status, error=error)
        finally:
            if self._owns_store:
                self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # returns None: the exception goes on, recording a failure must not swallow it
        if exc is None:
            self.end(RunStatus.SUCCEEDED)
        else:
            self.end(RunStatus.FAILED, error=describe_error(exc))


def describe_error(exc: BaseException) -> str:
    """``Type: message``, the message's first line only (tracebacks belong in the logs)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def open_store(store: Store | str | None) -> tuple[Store, bool]:
    """The store to record in, and whether the caller opened it (and so must close it)."""
    from cd4ml.store import Store

    if store is None or isinstance(store, str):
        return Store(store), True
    return store, False
