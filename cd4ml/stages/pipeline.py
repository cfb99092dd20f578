"""``cd4ml run``: validate, train, evaluate and gate in one pass, skipping work whose inputs did
not change.

The cache key is the data's content hash, the spec's training hash (every section but where and
how the model is served, ``environments`` and ``image``; the expectation suite's content too) and
the training code's identity: cd4ml's stage package as a whole with the spec reader and the
artifact writer, and the estimator's library version or the user's entry-point source. A cached result is reused only while the baseline it
was gated against still stands (or is the cached model itself), since a relative gate against
another production model could decide differently. None of this imports pandas or
scikit-learn, so a no-op run costs little more than opening the store.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cd4ml import __version__
from cd4ml.errors import Cd4mlError, SpecError
from cd4ml.events import StageSkipped, StageWarning, emit
from cd4ml.integrations.git import git_info
from cd4ml.spec import Spec, check_imports, find_module
from cd4ml.stages.data import file_hash
from cd4ml.states import RunKind, RunStatus, StageOutcome
from cd4ml.store import ModelVersion, Run, Store
from cd4ml.store.liveness import Heartbeat

# import names whose distribution is named differently
_DIST_ALIASES = {"sklearn": "scikit-learn"}


@dataclass(frozen=True)
class PipelineResult:
    """What ``run`` did. ``source_run`` is the run whose results stand (itself unless cached)."""

    run: Run
    source_run: Run
    cached: bool
    status: RunStatus  # succeeded | validation_failed | gate_failed
    model: ModelVersion | None
    seconds: float
    stages: tuple[tuple[str, StageOutcome, float], ...]  # (stage, outcome, seconds)

    @property
    def passed(self) -> bool:
        return self.status is RunStatus.SUCCEEDED


def _library_version(top: str) -> str | None:
    for name in (_DIST_ALIASES.get(top, top), top.replace("_", "-")):
        try:
            return f"{name}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    dists = importlib.metadata.packages_distributions().get(top)
    if dists:
        return f"{dists[0]}=={importlib.metadata.version(dists[0])}"
    return None


def code_hash(spec: Spec) -> str:
    """Identity of the training code: cd4ml's stage package, the spec reader (its defaults
    decide what a spec means) and the artifact writer, plus the estimator's library version (an
    installed distribution) or the source file of the user's estimator or entry point."""
    h = hashlib.sha256(f"cd4ml=={__version__}".encode())
    # the package as a whole: a new, renamed or moved stage module changes the identity too
    here = Path(__file__).parent
    for path in [*sorted(here.rglob("*.py")), here.parent / "spec.py", here.parent / "artifacts.py"]:
        h.update(path.relative_to(here.parent).as_posix().encode() + b"\0" + path.read_bytes())
    ref = spec.model.estimator or spec.model.entry_point or ""
    if ref.endswith(".py"):
        h.update(Path(ref).read_bytes())
        return h.hexdigest()
    module = ref.split(":")[0]
    found = find_module(module, extra=[spec.root])
    origin = Path(found.origin) if found is not None and found.origin else None
    installed = origin is not None and any(p in ("site-packages", "dist-packages") for p in origin.parts)
    version = _library_version(module.split(".")[0]) if installed else None
    if version:
        h.update(version.encode())
    elif origin is not None and origin.is_file():
        h.update(origin.read_bytes())
    else:
        raise SpecError(f"{spec.path}:{spec.line_of('model')}: cannot locate the source of {ref!r}")
    return h.hexdigest()


def cache_key(spec: Spec, data_hash: str, code: str) -> str:
    """What decides the trained model and its evaluation: data, spec (not its serving
    sections) and code. Two runs with one key train the same model and judge it alike."""
    return hashlib.sha256(f"{data_hash}\n{spec.training_hash}\n{code}".encode()).hexdigest()


def _baseline_env(spec: Spec) -> str | None:
    return spec.production.name if spec.production else None


def _reusable(store: Store, spec: Spec, cached: Run) -> ModelVersion | None:
    model = store.model_for_run(cached.id)
    if model is None:
        return None
    gate = store.gate(cached.id)
    production = store.production_model(spec.name, _baseline_env(spec))
    baseline_then = gate.baseline_version if gate else None
    if production is None or production.version in (baseline_then, model.version):
        return model
    return None


def run(spec: Spec, store: Store, *, force: bool = False, override_by: str | None = None,
        reason: str | None = None) -> PipelineResult:
    """Validate, train, evaluate and gate ``spec``; reuse a recorded run when nothing changed.

    Returns the outcome; a failed validation or gate is a result (status), not an exception.
    """
    started = time.perf_counter()
    data_hash = file_hash(spec.data.path)
    code = code_hash(spec)
    key = cache_key(spec, data_hash, code)
    git = git_info(spec.root)
    identity: dict[str, Any] = {
        "kind": RunKind.PIPELINE, "git_commit": git.commit, "branch": git.branch, "actor": git.actor,
        "spec_hash": spec.spec_hash, "code_hash": code, "data_hash": data_hash, "cache_key": key,
        "params": {"model": dict(spec.model.params), "seed": spec.model.seed},
        "tags": git.tags,
    }

    if not force:
        cached = store.find_cached_run(spec.name, key)
        model = _reusable(store, spec, cached) if cached else None
        if cached is not None and model is not None:
            current = store.start_run(spec.name, **identity)
            # an override recorded since then blesses the same model: its flag is the truth
            status = RunStatus.SUCCEEDED if model.blessed else RunStatus.GATE_FAILED
            current = store.finish_run(current.id, status, reused_from=cached.id)
            emit(StageSkipped("run", f"inputs unchanged since run {cached.id}: reusing "
                              f"{model.ref} and its results (--force retrains)"))
            return PipelineResult(current, cached, True, status, model,
                                  time.perf_counter() - started, ())

    check_imports(spec)
    for dead in store.abandon_dead_runs(spec.name):
        emit(StageWarning("run", f"run {dead.id} was left running by a process that is gone "
                              f"({dead.holder}): marked abandoned"))
    current = store.start_run(spec.name, **identity)
    stages: list[tuple[str, StageOutcome, float]] = []
    try:
        with Heartbeat(store, current.id):
            result = _stages(spec, store, current, stages, override_by, reason)
    except Cd4mlError as e:
        store.finish_run(current.id, RunStatus.FAILED, error=str(e))
        raise
    except BaseException as e:
        store.finish_run(current.id, RunStatus.FAILED, error=f"{type(e).__name__}: {e}")
        raise
    status, model = result
    current = store.finish_run(current.id, status)
    return PipelineResult(current, current, False, status, model,
                          time.perf_counter() - started, tuple(stages))


def _stages(spec: Spec, store: Store, current: Run, stages: list[tuple[str, StageOutcome, float]],
            override_by: str | None, reason: str | None) -> tuple[RunStatus, ModelVersion | None]:
    from cd4ml.stages import sanity
    from cd4ml.stages.data import load_frame
    from cd4ml.stages.evaluate import evaluate
    from cd4ml.stages.gate import gate
    from cd4ml.stages.validate import validate

    def timed(name: str, fn: Any, verdict: str = "") -> Any:
        # a stage that says yes or no names its verdict field; the others passed if they returned
        t = time.perf_counter()
        out = fn()
        ok = getattr(out, verdict) if verdict else True
        stages.append((name, StageOutcome.PASSED if ok else StageOutcome.FAILED,
                       time.perf_counter() - t))
        return out

    frame = load_frame(spec.data)
    sanity.check(spec, frame)
    validation = timed("validate", lambda: validate(spec, store, current.id, frame,
                                                    override_by=override_by, reason=reason),
                       "success")
    if not validation.success:
        return RunStatus.VALIDATION_FAILED, None
    if spec.model.entry_point:
        from cd4ml.stages.tracking import run_entry_point

        model = timed("train", lambda: run_entry_point(spec, store, current.id, frame))
    else:
        from cd4ml.stages.train import train

        model = timed("train", lambda: train(spec, store, current.id, frame)).model
    evaluation = timed("evaluate", lambda: evaluate(spec, store, model, current.id, frame))
    decision = timed("gate", lambda: gate(spec, store, evaluation, current.id, model,
                                          override_by=override_by, reason=reason), "blessed")
    return (RunStatus.SUCCEEDED if decision.blessed else RunStatus.GATE_FAILED,
            store.model_by_id(model.id))
