"""The train stage: fit the spec's estimator on the training split and register a model version.

Training is deterministic: the same data, spec and seed give the same pickled bytes, hence the
same artifact sha256 (the artifact directory is content-addressed, so a retrain to an identical
model writes no new file). The seed goes to every ``random_state`` the estimator exposes unless
``model.params`` sets it explicitly.

Text (categorical) feature columns are one-hot encoded inside a scikit-learn pipeline wrapped
around the estimator, so the pickled model takes the raw columns the signature lists and the
model server needs nothing but scikit-learn. An estimator that is already a ``Pipeline`` or a
``ColumnTransformer`` is trusted to do its own preprocessing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml import artifacts
from cd4ml.errors import DataError, SpecError
from cd4ml.events import StageFailed, StageFinished, StageStarted, emit
from cd4ml.paths import artifacts_root

if TYPE_CHECKING:
    import pandas as pd

    from cd4ml.spec import Spec
    from cd4ml.store import ModelVersion, Store


@dataclass(frozen=True)
class TrainResult:
    """A trained, registered model version and where its artifact lives."""

    model: ModelVersion
    artifact_dir: Path
    sha256: str
    train_rows: int
    seconds: float


def train(spec: Spec, store: Store, run_id: str, frame: pd.DataFrame | None = None) -> TrainResult:
    """Fit ``spec.model.estimator`` on the training rows and register the next model version.

    ``frame`` is the already-loaded data of ``spec.data.path`` (loaded here when None); the
    data set's identity is always the hash of that file.
    """
    emit(StageStarted("train", f"training {spec.name}"))
    try:
        result = _train(spec, store, run_id, frame)
    except Exception as e:
        emit(StageFailed("train", str(e).splitlines()[0] if str(e) else type(e).__name__))
        raise
    emit(StageFinished("train", f"{result.model.ref} on {result.train_rows} rows (sha256 {result.sha256[:12]})"))
    return result


def _train(spec: Spec, store: Store, run_id: str, frame: pd.DataFrame | None) -> TrainResult:
    from cd4ml.integrations.git import git_info
    from cd4ml.stages.data import feature_columns, file_hash, load_frame, split
    from cd4ml.stages.drift import feature_stats

    started = time.perf_counter()
    if spec.model.estimator is None:
        raise SpecError(f"{spec.path}:{spec.line_of('model', 'entry_point')}: model.entry_point: "
                        "entry points are run by 'cd4ml run' (the tracking API), not 'cd4ml train'")
    data_hash = file_hash(spec.data.path)
    if frame is None:  # 'cd4ml train' alone; 'cd4ml run' checked the frame it passes
        from cd4ml.stages import sanity

        frame = load_frame(spec.data)
        sanity.check(spec, frame)
    features = feature_columns(spec.data, frame)
    check_target(spec, frame)
    rows = split(spec, frame).train_index
    train_frame = frame.iloc[rows]
    X, y = train_frame[features], train_frame[spec.data.target]
    categorical = categorical_columns(X)

    estimator = build_estimator(spec, categorical)
    fit(spec, estimator, X, y, categorical)

    signature = input_signature(X, spec.data.target, classes_of(estimator, y, spec.model.task))
    stats = feature_stats(train_frame, features)
    store.record_dataset(data_hash, str(spec.data.path), spec.data.format, len(frame),
                         [str(c) for c in frame.columns])

    model, directory = register_artifact(
        store, pipeline=spec.name, run_id=run_id, task=spec.model.task, estimator=estimator,
        signature=signature, stats=stats, data_hash=data_hash,
        git_commit=git_info(spec.root).commit, spec_hash=spec.spec_hash)
    return TrainResult(model=model, artifact_dir=directory, sha256=model.sha256, train_rows=len(rows),
                       seconds=time.perf_counter() - started)


def register_artifact(store: Store, *, pipeline: str, run_id: str, task: str, estimator: Any,
                      signature: dict, stats: dict, data_hash: str | None,
                      git_commit: str | None, spec_hash: str | None) -> tuple[ModelVersion, Path]:
    """Save the fitted estimator, give it the pipeline's next version, and publish the artifact
    directory of that version; returns the version (with its final artifact_uri) and the dir."""
    signature = {**signature, "frame": _needs_frame(estimator, signature, task, stats)}
    blob, digest = artifacts.save(artifacts_root(), pipeline, estimator)
    model = store.register_model(pipeline, run_id, task, str(blob), digest, signature, stats)
    directory = artifacts.publish(blob, artifacts.ArtifactMeta(
        pipeline=pipeline, task=task, sha256=digest, signature=signature, stats=stats,
        version=model.version, run_id=run_id, data_hash=data_hash, git_commit=git_commit,
        spec_hash=spec_hash, created_at=model.created_at))
    return store.set_artifact_uri(model.id, str(directory)), directory


def _needs_frame(estimator: Any, signature: dict, task: str, stats: dict) -> bool:
    """Ask the server's own predictor, while the fitted model is in memory, whether it will
    feed the model a DataFrame: recorded, so that a build never unpickles the model to know."""
    from cd4ml.serve.predictor import Predictor
    from cd4ml.serve.schema import fields_of

    try:
        return bool(Predictor(estimator, fields_of(signature), task, stats).needs_frame)
    except Exception:  # noqa: BLE001 -- a model the predictor balks at: carry pandas, to be safe
        return True


def check_target(spec: Spec, frame: pd.DataFrame) -> None:
    """A missing label cannot be learnt from nor scored against: refuse it up front."""
    target = frame[spec.data.target]
    missing = target.isna()
    if missing.any():
        where = ", ".join(str(i) for i in frame.index[missing][:5])
        raise DataError(f"{spec.data.path}: target column {spec.data.target!r} has "
                        f"{int(missing.sum())} missing value(s) (row index {where}); "
                        "drop or fill them")


def categorical_columns(X: pd.DataFrame) -> list[str]:
    """Columns holding text or categories, which numeric estimators cannot take as they are."""
    import pandas as pd

    out = []
    for name in X.columns:
        s = X[name]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            continue
        kinds = {type(v).__name__ for v in s.dropna()}
        if kinds - {"str"}:
            raise DataError(f"feature column {name!r} mixes {', '.join(sorted(kinds))} values; "
                            "make it all text or all numbers")
        out.append(str(name))
    return out


def build_estimator(spec: Spec, categorical: list[str]) -> Any:
    """Instantiate ``model.estimator`` (a class or a factory) with ``model.params`` and the seed."""
    from cd4ml.spec import check_trainable, import_object

    ref = spec.model.estimator
    assert ref is not None
    where = f"{spec.path}:{spec.line_of('model', 'estimator')}: model.estimator"
    try:
        factory = import_object(ref, spec.root)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None
    check_trainable(spec, factory)
    params = dict(spec.model.params)
    try:
        estimator = factory(**params)
    except TypeError as e:
        raise SpecError(f"{spec.path}:{spec.line_of('model', 'params')}: model.params: {ref} "
                        f"does not take these parameters: {e}; fix model.params") from None
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise SpecError(f"{where}: {ref}(...) returned a {type(estimator).__name__}, which has "
                        "no fit/predict; name a scikit-learn estimator or a factory returning one")
    _seed(estimator, spec.model.seed, params)
    if categorical and not _preprocesses(estimator):
        estimator = _with_encoder(estimator, categorical)
    return estimator


def _seed(estimator: Any, seed: int, params: dict[str, Any]) -> None:
    # nested estimators (a pipeline's steps, a bagging base) get the seed too, so that "same
    # seed, same model" holds however the estimator is composed
    if not hasattr(estimator, "get_params"):
        return
    keys = [k for k in estimator.get_params(deep=True)
            if (k == "random_state" or k.endswith("__random_state")) and k not in params]
    if keys:
        estimator.set_params(**{k: seed for k in keys})


def _preprocesses(estimator: Any) -> bool:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    return isinstance(estimator, (Pipeline, ColumnTransformer))


def _with_encoder(estimator: Any, categorical: list[str]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    # unknown categories at serving time encode as all zeros rather than failing the request;
    # missing values are a category of their own
    encode = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
        remainder="passthrough", verbose_feature_names_out=False)
    return Pipeline([("encode", encode), ("model", estimator)])


def fit(spec: Spec, estimator: Any, X: pd.DataFrame, y: pd.Series, categorical: list[str]) -> None:
    """Fit, turning the estimator's complaints about the data into a :class:`DataError`."""
    import warnings

    if len(X) == 0:
        raise DataError(f"{spec.data.path}: no training rows after the split; add data or "
                        "lower split.test_size")
    try:
        with warnings.catch_warnings():
            # convergence and similar warnings are the estimator's business, not a failure
            warnings.simplefilter("ignore")
            estimator.fit(X, y)
    except (ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "check the feature columns' types and missing values"
        if "string" in first and categorical:
            hint = f"text column(s) {', '.join(map(repr, categorical))} need encoding in your pipeline"
        elif "NaN" in first:
            missing = [str(c) for c in X.columns if X[c].isna().any()]
            hint = (f"feature(s) {', '.join(map(repr, missing))} have missing values; fill them or "
                    "use an estimator that accepts NaN")
        raise DataError(f"{spec.data.path}: {spec.model.estimator} could not fit: {first}; "
                        f"{hint}") from None


def classes_of(estimator: Any, y: pd.Series, task: str) -> list | None:
    if task != "classification":
        return None
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        classes = sorted(y.dropna().unique())
    return [_native(c) for c in classes]


def _native(v: Any) -> Any:
    """A numpy scalar as the plain Python value, so that signatures are JSON."""
    return v.item() if hasattr(v, "item") else v


def input_signature(X: pd.DataFrame, target: str, classes: list | None) -> dict:
    """What the model takes: each feature's name, dtype (float|int|bool|str) and nullability."""
    import pandas as pd

    inputs = []
    for name in X.columns:
        s = X[name]
        if pd.api.types.is_bool_dtype(s):
            dtype = "bool"
        elif pd.api.types.is_integer_dtype(s):
            dtype = "int"
        elif pd.api.types.is_float_dtype(s):
            dtype = "float"
        else:
            dtype = "str"
        inputs.append({"name": str(name), "dtype": dtype, "nullable": bool(s.isna().any())})
    return {"inputs": inputs, "target": target, "classes": classes}
