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
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from cd4ml.errors import Cd4mlError, DataError, SpecError, TrackedRunError

if TYPE_CHECKING:
    from types import TracebackType

    import pandas as pd

    from cd4ml.spec import Spec
    from cd4ml.stages.gate import GateResult
    from cd4ml.store import Dataset, ModelVersion, Run, Store

__all__ = ["ActiveRun", "TrainingData", "frame_hash", "gate_run", "logged_metrics",
           "run_entry_point", "start_run"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_READERS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
            ".json": "json", ".jsonl": "jsonl"}


# ------------------------------------------------------------------------------- hashing data


def frame_hash(frame: pd.DataFrame) -> str:
    """sha256 of a DataFrame's content: column names and dtypes, then every row's values in
    order. The index is left out, so a filtered-and-reset copy hashes like the original rows."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    try:
        rows = pd.util.hash_pandas_object(frame, index=False)
    except TypeError as e:
        raise DataError(f"cannot hash the frame: {e}; columns must hold scalars "
                        "(numbers, text, booleans, dates), not lists or dicts") from None
    h.update(rows.to_numpy().tobytes())
    return h.hexdigest()


def _file_shape(path: Path) -> tuple[str, int, list[str]]:
    """Format, row count and column names of a data file, read as cheaply as the format allows."""
    import pandas as pd

    fmt = _READERS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot count the rows of a {path.suffix or 'suffix-less'} file; "
                        "log a .csv, .tsv, .parquet or .json(l) file, or pass a DataFrame")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            return fmt, int(meta.num_rows), [str(n) for n in meta.schema.names]
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
        else:
            frame = pd.read_json(path, lines=fmt == "jsonl")
    except Exception as e:  # noqa: BLE001 - each reader raises its own types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot read as {fmt}: {first}") from None
    return fmt, len(frame), [str(c) for c in frame.columns]


# ------------------------------------------------------------------------------- the run handle


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


def _plain(v: Any) -> Any:
    """numpy scalars and paths as plain JSON values, recursively."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist") and callable(v.tolist):  # numpy scalars and arrays
        return _plain(v.tolist())
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
        self._params.update(_plain(dict(params)))
        self.store.update_run(self.id, params=self._params)

    def log_param(self, name: str, value: Any) -> None:
        self.log_params({name: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Merge free-form labels into the run (``cd4ml show`` lists them)."""
        self._check_open()
        self._tags.update(_plain(dict(tags)))
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
            rows.append({"name": name, "value": number, "scope": "candidate", "step": step,
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
            from cd4ml.stages.data import file_hash

            path = Path(data).resolve()
            if not path.is_file():
                raise DataError(f"{data}: no such data file; pass a file path or a DataFrame")
            digest = file_hash(path)
            fmt, rows, columns = _file_shape(path)
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

    def end(self, status: str = "succeeded", error: str | None = None) -> None:
        """Close the run (once). A bound run is left for its pipeline to close."""
        if self._ended:
            return
        self._ended = True
        try:
            if self._owns_run:
                self.store.finish_run(self.id, status, error=error)
        finally:
            if self._owns_store:
                self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is None:
            self.end("succeeded")
        else:
            self.end("failed", error=describe_error(exc))
        return False  # the exception goes on: recording a failure must not swallow it


def describe_error(exc: BaseException) -> str:
    """``Type: message``, the message's first line only (tracebacks belong in the logs)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


# ------------------------------------------------------------------------------- starting runs


def _open_store(store: Store | str | None) -> tuple[Store, bool]:
    from cd4ml.store import Store

    if store is None or isinstance(store, str):
        return Store(store), True
    return store, False


def _caller_file(depth: int = 2) -> Path | None:
    """The source file that called :func:`start_run`: the training code."""
    try:
        path = Path(sys._getframe(depth).f_code.co_filename)
    except ValueError:
        return None
    return path if path.is_file() else None


def start_run(pipeline: str | Path | Spec, store: Store | str | None = None, *,
              params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None) -> ActiveRun:
    """Start a tracked run of ``pipeline`` and return its handle; use it as a context manager
    so that the run is closed as succeeded, or as failed with the error when the block raises.

    ``pipeline`` is a name (model versions are numbered per name), a spec path or a Spec; a
    spec found for it supplies the task, target and spec hash. ``store`` is a Store, a URL, or
    None for the embedded store (``$CD4ML_STORE_URL``, else ``.cd4ml/cd4ml.db``).
    """
    from cd4ml.integrations.git import git_info
    from cd4ml.refs import find_spec

    spec = find_spec(pipeline)
    name = spec.name if spec else str(pipeline)
    if not _NAME.match(name):
        raise TrackedRunError(f"start_run: pipeline name {name!r} must be lower-case letters, digits, "
                            "'-' or '_' (it names images and services)")
    caller = _caller_file()
    opened, owns = _open_store(store)
    try:
        # the code's repository is where the training script lives, wherever it is run from
        git = git_info(caller.parent if caller else spec.root if spec else None)
        run_tags = {**({"dirty": True} if git.dirty else {}), **_plain(dict(tags or {}))}
        record = opened.start_run(
            name, kind="tracked", git_commit=git.commit, branch=git.branch, actor=git.actor,
            spec_hash=spec.spec_hash if spec else None,
            code_hash=hashlib.sha256(caller.read_bytes()).hexdigest() if caller else None,
            params=_plain(dict(params or {})), tags=run_tags)
    except BaseException:
        if owns:
            opened.close()
        raise
    return ActiveRun(opened, record, spec=spec, owns_store=owns)


# ------------------------------------------------------------------------------- entry points


def load_entry_point(spec: Spec) -> Any:
    """The callable ``model.entry_point`` names: ``module:function``, or a script's ``train``."""
    import runpy

    from cd4ml.spec import import_object

    ref = spec.model.entry_point
    assert ref is not None
    where = f"{spec.path}:{spec.line_of('model', 'entry_point')}: model.entry_point"
    if ref.endswith(".py"):
        try:
            # not "__main__": the script's own command-line block must not run here
            namespace = runpy.run_path(ref, run_name="cd4ml_entry_point")
        except FileNotFoundError:
            raise SpecError(f"{where}: no such script {ref}") from None
        except SyntaxError as e:
            raise SpecError(f"{where}: {ref}:{e.lineno}: syntax error: {e.msg}") from None
        fn = namespace.get("train")
        if not callable(fn):
            raise SpecError(f"{where}: {ref} defines no function train(run, data); add one "
                            "(see README 'Tracking API')")
        return fn
    try:
        fn = import_object(ref, spec.root)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None
    if not callable(fn):
        raise SpecError(f"{where}: {ref} is not a function; name a function fn(run, data)")
    return fn


def training_data(spec: Spec, frame: pd.DataFrame) -> TrainingData:
    """The training rows of ``frame`` by the spec's split (the held-out rows stay out)."""
    from cd4ml.stages.data import feature_columns, split

    features = tuple(feature_columns(spec.data, frame))
    train_frame = frame.iloc[split(spec, frame).train_index]
    return TrainingData(frame=train_frame, features=features, target=spec.data.target,
                        task=spec.model.task, seed=spec.model.seed,
                        params=dict(spec.model.params), slices=tuple(spec.data.slices))


def run_entry_point(spec: Spec, store: Store, run_id: str,
                    frame: pd.DataFrame | None = None) -> ModelVersion:
    """Call the spec's entry point as ``fn(run, data)`` with a handle bound to the pipeline's
    run ``run_id``, and return the model version it logged.

    Python's and numpy's global random generators are seeded with ``model.seed`` for the call
    (and restored after), so an entry point that does not seed its own estimator still trains
    the same model from the same inputs, which the run cache relies on.
    """
    import random

    import numpy as np

    from cd4ml.events import emit
    from cd4ml.stages.data import load_frame

    ref = spec.model.entry_point
    if ref is None:
        raise SpecError(f"{spec.path}:{spec.line_of('model')}: model: no entry_point to run; "
                        "'cd4ml train' trains a declared estimator")
    fn = load_entry_point(spec)
    if frame is None:
        frame = load_frame(spec.data)
    data = training_data(spec, frame)
    handle = ActiveRun(store, store.run(run_id), spec=spec, owns_run=False, data=data)
    emit("stage_started", "train", f"training {spec.name} with {Path(ref).name if ref.endswith('.py') else ref}")

    saved = random.getstate(), np.random.get_state()
    random.seed(spec.model.seed)
    np.random.seed(spec.model.seed)
    folder = str(Path(ref).parent) if ref.endswith(".py") else None
    added = folder is not None and folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # so the script can import its sibling modules
    try:
        fn(handle, data)
    except Cd4mlError:
        raise
    except Exception as e:
        where = _user_frame(e)
        emit("stage_failed", "train", describe_error(e))
        raise TrackedRunError(f"entry point {ref} raised {describe_error(e)}{where}; "
                            "run with --debug for the traceback") from e
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        if added and folder in sys.path:
            sys.path.remove(folder)
        handle._ended = True  # the pipeline closes its run; the handle may not log after this
    if handle.model is None:
        emit("stage_failed", "train", f"entry point {ref} logged no model")
        raise TrackedRunError(f"entry point {ref} logged no model; call "
                            "run.log_model(estimator, signature_from=data.X) in it")
    emit("stage_finished", "train", f"{handle.model.ref} logged by {ref} (sha256 "
         f"{handle.model.sha256[:12]})", version=handle.model.version, sha256=handle.model.sha256,
         train_rows=len(data.frame), artifact_dir=handle.model.artifact_uri)
    return handle.model


def _user_frame(exc: BaseException) -> str:
    """`` at file:line`` of the innermost frame of the user's own code (not cd4ml, not an
    installed library, not the standard library), to point at the bug."""
    import sysconfig
    import traceback

    skip = (str(Path(__file__).parents[1]), sysconfig.get_paths()["stdlib"], "site-packages", "dist-packages")
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not any(s in f.filename for s in skip) and not f.filename.startswith("<")]
    if not frames:
        return ""
    return f" at {frames[-1].filename}:{frames[-1].lineno}"


# ------------------------------------------------------------------------------- gating


def logged_metrics(store: Store, run_id: str, scope: str = "candidate") -> tuple[
        dict[str, float], dict[str, dict[str, dict[str, float]]]]:
    """A run's logged metrics as an evaluation reads them: overall ``{metric: value}`` and
    ``{slice: {value: {metric: value}}}``; of a metric logged several times the last one counts."""
    overall: dict[str, float] = {}
    slices: dict[str, dict[str, dict[str, float]]] = {}
    for m in store.metrics(run_id):  # in logging order, so a later value replaces an earlier one
        if m.scope != scope:
            continue
        value = float("nan") if m.value is None else float(m.value)
        if m.slice:
            slices.setdefault(m.slice, {}).setdefault(m.slice_value, {})[m.name] = value
        else:
            overall[m.name] = value
    return overall, slices


def gate_run(spec: Spec | str | Path, run_id: str, store: Store | str | None = None, *,
             override_by: str | None = None, reason: str | None = None) -> GateResult:
    """Gate a tracked run's model on the metrics the run logged, with ``spec``'s rules.

    The rules are :func:`cd4ml.stages.gate.gate`'s, failing closed the same way: a metric a rule reads
    that the run did not log fails that rule, naming it. ``max_drop`` rules compare with the
    metrics the production version's own run recorded (there are no shared held-out rows here).
    The decision is recorded, blesses the model when it passes, and a failed gate marks the run
    ``gate_failed``. Runs of ``cd4ml run`` are gated by the pipeline on held-out rows instead.
    """
    from cd4ml.events import emit
    from cd4ml.refs import load_pipeline
    from cd4ml.stages.evaluate import EvaluationResult
    from cd4ml.stages.gate import gate

    spec = load_pipeline(spec)
    opened, owns = _open_store(store)
    try:
        run = opened.run(run_id)
        if run.pipeline != spec.name:
            raise TrackedRunError(f"run {run.id} is of pipeline {run.pipeline!r}, not {spec.name!r} "
                                f"({spec.path}); gate it with its own spec")
        if run.status == "running":
            raise TrackedRunError(f"run {run.id} is still running; gate it once it has ended")
        if run.status == "failed":
            raise TrackedRunError(f"run {run.id} failed ({run.error}); there is nothing to gate")
        model = opened.model_for_run(run.id)
        if model is None:
            raise TrackedRunError(f"run {run.id} logged no model, so there is nothing to bless; "
                                "call run.log_model(estimator, signature_from=X) in the run")
        metrics, slices = logged_metrics(opened, run.id)
        needed = sorted({r.metric for r in spec.gates if r.slice is None} - set(metrics))
        needed += sorted({f"{r.metric} per {r.slice}" for r in spec.gates
                          if r.slice is not None and not any(r.metric in v for v in slices.get(r.slice, {}).values())})
        if needed:
            emit("warning", "gate", f"run {run.id} logged no {', '.join(needed)}; the gate fails "
                 "closed on it: log it with run.log_metric(name, value)")

        production = opened.production_model(spec.name, spec.production.name if spec.production else None)
        prod_metrics = prod_slices = None
        if production is not None and production.id != model.id:
            prod_metrics, prod_slices = logged_metrics(opened, production.run_id)
            rows = [{"name": k, "value": v, "scope": "production", "model_version": production.version}
                    for k, v in prod_metrics.items() if k in spec.metrics]
            rows += [{"name": k, "value": v, "scope": "production", "slice": col, "slice_value": val,
                      "model_version": production.version}
                     for col, values in prod_slices.items() for val, ms in values.items()
                     for k, v in ms.items() if k in spec.metrics]
            opened.record_metrics(run.id, rows)
        else:
            production = None
        evaluation = EvaluationResult(
            model_version=model.version, metrics=metrics, slices=slices,
            production_version=production.version if production else None,
            production_metrics=prod_metrics, production_slices=prod_slices,
            confusion_matrix=None, labels=None, test_rows=0)
        result = gate(spec, opened, evaluation, run.id, model, override_by=override_by, reason=reason)
        status = "succeeded" if result.blessed else "gate_failed"
        if run.status != status:
            opened.update_run(run.id, status=status)
        return result
    finally:
        if owns:
            opened.close()
