"""Entry points: ``model.entry_point`` called by ``cd4ml run`` as ``fn(run, data)`` with a handle
bound to the pipeline's own run, seeded, its errors pointed at the user's line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cd4ml
from cd4ml.errors import Cd4mlError, SpecError, TrackedRunError, TrainingFailed
from cd4ml.stages.tracking.handle import ActiveRun, TrainingData, describe_error

if TYPE_CHECKING:
    import pandas as pd

    from cd4ml.spec import Spec
    from cd4ml.store import ModelVersion, Store


def load_entry_point(spec: Spec) -> Any:
    """The callable ``model.entry_point`` names: ``module:function``, or a script's ``train``."""
    import runpy

    from cd4ml.spec import check_trainable, import_object

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
    check_trainable(spec, fn)
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

    from cd4ml.events import StageFailed, StageFinished, StageStarted, emit
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
    emit(StageStarted("train", f"training {spec.name} with "
                      f"{Path(ref).name if ref.endswith('.py') else ref}"))

    saved = random.getstate(), np.random.get_state()
    random.seed(spec.model.seed)
    np.random.seed(spec.model.seed)
    folder = str(Path(ref).parent) if ref.endswith(".py") else None
    added = folder is not None and folder not in sys.path
    if folder is not None and added:
        sys.path.insert(0, folder)  # so the script can import its sibling modules
    try:
        fn(handle, data)
    except Cd4mlError:
        raise
    except (Exception, SystemExit, KeyboardInterrupt) as e:
        # sys.exit(0) in a training script is not a successful run: CI must not go green on it
        where = _user_frame(e)
        what = (f"called sys.exit({e.code!r})" if isinstance(e, SystemExit) else
                "was interrupted" if isinstance(e, KeyboardInterrupt) else f"raised {describe_error(e)}")
        emit(StageFailed("train", what))
        raise TrainingFailed(f"entry point {ref} {what}{where}; the run failed"
                             + (" (return from the function instead)" if isinstance(e, SystemExit) else
                                "; run with --debug for the traceback")) from e
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        if added and folder in sys.path:
            sys.path.remove(folder)
        handle._ended = True  # the pipeline closes its run; the handle may not log after this
    if handle.model is None:
        emit(StageFailed("train", f"entry point {ref} logged no model"))
        raise TrackedRunError(f"entry point {ref} logged no model; call "
                            "run.log_model(estimator, signature_from=data.X) in it")
    emit(StageFinished("train", f"{handle.model.ref} logged by {ref} (sha256 "
                       f"{handle.model.sha256[:12]})"))
    return handle.model


def _user_frame(exc: BaseException) -> str:
    """`` at file:line`` of the innermost frame of the user's own code (not cd4ml, not an
    installed library, not the standard library), to point at the bug."""
    import sysconfig
    import traceback

    skip = (str(Path(cd4ml.__file__).parent), sysconfig.get_paths()["stdlib"], "site-packages", "dist-packages")
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not any(s in f.filename for s in skip) and not f.filename.startswith("<")]
    if not frames:
        return ""
    return f" at {frames[-1].filename}:{frames[-1].lineno}"
