"""The monitor stage: read an environment's prediction log over a window and judge, per model
version served in it, what the model met and how it did.

Per version: input drift against the version's training statistics and prediction drift
against its held-out predictions (:mod:`cd4ml.stages.drift`, thresholds from ``monitoring:``);
input quality (refused requests, values outside the training range, unseen categories, missing
values); realised metrics from the labels joined so far, with the gates' rules read against the
offline evaluation; an estimated accuracy while labels are missing. The servers' own
``/metrics`` are read beside it when they answer. Each version's finding is recorded in the
store against the environment; any breach makes the result ``breached`` (exit 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import DataError, StoreError
from cd4ml.events import StageFinished, StageStarted, emit
from cd4ml.watch.logread import LogCounts, Part, records_in, split
from cd4ml.watch.window import Window

if TYPE_CHECKING:
    from cd4ml.spec import EnvironmentSpec, Spec
    from cd4ml.stages.drift import DriftOutcome
    from cd4ml.stages.gate import RuleOutcome
    from cd4ml.store import ModelVersion, Store
    from cd4ml.watch.performance import Estimate, Realised
    from cd4ml.watch.profile import FeatureCounts, VersionProfile
    from cd4ml.watch.scrape import Traffic


@dataclass(frozen=True)
class MonitorConfig:
    """What to monitor: an environment over a window, from its host logs or ``logs``."""

    environment: str
    window: Window
    logs: tuple[str, ...] = ()  # files (``-``: stdin); empty: the environment's host logs
    scrape: bool = True  # read the servers' /metrics
    record: bool = True  # keep the findings in the store
    workers: int | None = None  # processes reading the log; None: one per core for long logs


@dataclass(frozen=True)
class Quality:
    """Input quality of one feature over the window."""

    feature: str
    rows: int
    missing: int
    below_min: int
    above_max: int
    unseen: int

    @property
    def out_of_range_rate(self) -> float:
        return (self.below_min + self.above_max + self.unseen) / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class VersionFinding:
    """What one version met in the window, and what was wrong with it."""

    model_version: int
    first: str | None
    last: str | None
    requests: int
    rows: int
    refused: int
    judged: bool  # enough rows for drift to be judged
    drift: tuple[DriftOutcome, ...]
    prediction_drift: DriftOutcome | None
    quality: tuple[Quality, ...]
    realised: tuple[Realised, ...]
    rules: tuple[RuleOutcome, ...]
    estimate: Estimate | None
    notes: tuple[str, ...]
    breaches: tuple[str, ...]
    monitoring_id: int | None = None

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    @property
    def refused_rate(self) -> float:
        total = self.requests + self.refused
        return self.refused / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["quality"] = [{**asdict(q), "out_of_range_rate": q.out_of_range_rate}
                          for q in self.quality]
        out["refused_rate"] = self.refused_rate
        out["breached"] = self.breached
        out["estimate"] = None if self.estimate is None else {**asdict(self.estimate),
                                                              "is_estimate": True}
        return out


@dataclass(frozen=True)
class MonitorResult:
    pipeline: str
    environment: str
    window: Window
    versions: tuple[VersionFinding, ...]
    log: dict[str, Any]  # LogCounts.as_dict()
    log_paths: tuple[str, ...]
    traffic: tuple[Traffic, ...] = field(default_factory=tuple)

    @property
    def breached(self) -> bool:
        return any(v.breached for v in self.versions)

    def as_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "environment": self.environment,
                "window": asdict(self.window), "breached": self.breached,
                "versions": [v.as_dict() for v in self.versions], "log": self.log,
                "log_paths": list(self.log_paths),
                "traffic": [{**asdict(t), "refused": t.refused} for t in self.traffic]}


def log_paths(spec: Spec, env: EnvironmentSpec, given: tuple[str, ...]) -> tuple[str, ...]:
    """The logs to read: those given, else the host logs of a local or Swarm environment."""
    if given:
        return given
    if env.target == "kubernetes":
        raise DataError(f"environment {env.name!r} runs on Kubernetes, whose prediction logs "
                        "cd4ml does not keep; pass them with --log, e.g. kubectl logs -l "
                        f"app={spec.name} --tail=-1 | cd4ml monitor --env {env.name} --log -")
    from cd4ml.paths import prediction_log_dir

    directory = prediction_log_dir(spec.project, spec.name, env.name)
    found = tuple(str(p) for p in sorted(Path(directory).glob("*.jsonl")))
    if not found:
        raise DataError(f"no prediction logs of {spec.name}/{env.name} in {directory}; deploy "
                        "there first, or pass the log with --log FILE")
    return found


def monitor(spec: Spec, store: Store, config: MonitorConfig) -> MonitorResult:
    """Monitor ``config.environment`` over ``config.window``; record and return the findings."""
    env = spec.environment(config.environment)
    paths = log_paths(spec, env, config.logs)
    emit(StageStarted("monitor", f"reading {len(paths)} log(s) of {spec.name}/{env.name}"))
    labels = _labels(store, spec.name, config.window)
    workers = _workers(store, paths, config.workers)
    if workers > 1:
        profiles, counts = _parallel(spec, store, env, paths, config.window, labels, workers)
    else:
        profiles, counts = _scan(spec, store, [(p, 0, None) for p in paths], config.window,
                                 labels)
    models = {version: _model(store, spec.name, version) for version in profiles}
    traffic: tuple[Traffic, ...] = ()
    if config.scrape:
        from cd4ml.release.targets import get_target
        from cd4ml.watch.scrape import scrape

        answered = scrape(get_target(env).url(spec, env))
        traffic = (answered,) if answered else ()
    findings = []
    for version in sorted(profiles):
        finding = _judge(spec, store, models[version], profiles[version])
        if config.record and models[version] is not None:
            model = models[version]
            assert model is not None
            kept = store.record_monitoring(
                spec.name, env.name, model.id, config.window.start, config.window.end,
                finding.rows, finding.breached,
                {**_stored(finding), "log": counts.as_dict(), "log_paths": list(paths)})
            finding = _with_id(finding, kept.id)
        findings.append(finding)
    result = MonitorResult(spec.name, env.name, config.window, tuple(findings),
                           counts.as_dict(), paths, traffic)
    breaches = sum(len(f.breaches) for f in findings)
    emit(StageFinished("monitor", f"{counts.predictions} predictions of {len(findings)} "
                       f"version(s): {breaches or 'no'} breach{'es' if breaches != 1 else ''}"))
    return result


#: logs shorter than this are read by one process: starting more costs more than it saves
PARALLEL_BYTES = 64 << 20


def _workers(store: Store, paths: tuple[str, ...], asked: int | None) -> int:
    """How many processes read the log: ``asked``, or one per core (at most four) for long
    logs in files; one for standard input and for an in-memory store (workers open their own)."""
    import os

    if "-" in paths or store.url in ("sqlite://", "sqlite:///:memory:"):
        return 1
    if asked is not None:
        return max(1, asked)
    size = sum(os.path.getsize(p) for p in paths)
    return min(os.cpu_count() or 1, 4) if size >= PARALLEL_BYTES else 1


def _scan(spec: Spec, store: Store, parts: list[Part], window: Window,
          labels: dict[str, dict[int, tuple]]) -> tuple[dict[int, VersionProfile], LogCounts]:
    """One reader over ``parts``: a profile per version met, and what the lines were."""
    counts = LogCounts()
    profiles: dict[int, VersionProfile] = {}
    adders: dict[int, Any] = {}  # version -> its profile's add, looked up once
    with _no_cycle_collection():
        for record in records_in(parts, spec.name, window, counts):
            add = adders.get(record["model_version"])
            if add is None:
                version = record["model_version"]
                model = _model(store, spec.name, version)
                profile = profiles[version] = _profile(spec, store, model, version, labels)
                add = adders[version] = profile.add
            add(record)
        for profile in profiles.values():
            profile.finish()
    return profiles, counts


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused while a log is read. A chunk of parsed records is
    hundreds of thousands of young containers, none of them in a cycle (freed by reference
    counting alone); each collection walked them all again: 40% of the CPU of a long read."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _scan_apart(job: tuple[Spec, str, list[Part], Window, dict[str, dict[int, tuple]]]
                ) -> tuple[dict[int, VersionProfile], LogCounts]:
    """:func:`_scan` in a worker process, on a store connection of its own."""
    from cd4ml.store import Store

    spec, url, parts, window, labels = job
    with Store(url) as store:
        return _scan(spec, store, parts, window, labels)


def _parallel(spec: Spec, store: Store, env: EnvironmentSpec, paths: tuple[str, ...],
              window: Window, labels: dict[str, dict[int, tuple]], workers: int
              ) -> tuple[dict[int, VersionProfile], LogCounts]:
    """The log cut in ``workers`` parts read at once; their profiles and counts added up."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from cd4ml.watch.baseline import ensure

    # the baselines the workers will want, made once here rather than raced for there
    for dep in store.deployments(spec.name, env.name, limit=20):
        ensure(spec, store, store.model_by_id(dep.model_version_id))
    jobs = [(spec, store.url, part, window, labels) for part in split(paths, workers)]
    profiles: dict[int, VersionProfile] = {}
    counts = LogCounts()
    # fork: the workers inherit the imports; each opens its own store connection
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("fork")) as pool:
        for found, seen in pool.map(_scan_apart, jobs):
            counts.merge(seen)
            for version, profile in found.items():
                if version in profiles:
                    profiles[version].merge(profile)
                else:
                    profiles[version] = profile
    return profiles, counts


def _stored(finding: VersionFinding) -> dict[str, Any]:
    """The finding as the store keeps it (its own id is the row's)."""
    out = finding.as_dict()
    out.pop("monitoring_id")
    return out


def _with_id(finding: VersionFinding, monitoring_id: int) -> VersionFinding:
    from dataclasses import replace

    return replace(finding, monitoring_id=monitoring_id)


def _model(store: Store, pipeline: str, version: int) -> ModelVersion | None:
    try:
        return store.model(pipeline, version)
    except StoreError:
        return None  # served from another store: counted, not judged


def _labels(store: Store, pipeline: str, window: Window) -> dict[str, dict[int, tuple]]:
    """request id -> row -> (label, slice values) of the predictions made in the window."""
    out: dict[str, dict[int, tuple]] = {}
    for label in store.labels_between(pipeline, window.start, window.end):
        out.setdefault(label.request_id, {})[label.row_index] = (label.label, label.slices)
    return out


def _profile(spec: Spec, store: Store, model: ModelVersion | None, version: int,
             labels: dict[str, dict[int, tuple]]) -> VersionProfile:
    from cd4ml.watch.baseline import ensure
    from cd4ml.watch.profile import VersionProfile

    if model is None:
        return VersionProfile(version, [], {}, {}, spec.model.task, labels, spec.data.slices)
    names = [i["name"] for i in (model.signature or {}).get("inputs", [])]
    predicted = ensure(spec, store, model).predictions
    return VersionProfile(version, names, model.stats or {}, predicted, model.task, labels,
                          spec.data.slices)


def _judge(spec: Spec, store: Store, model: ModelVersion | None,
           profile: VersionProfile) -> VersionFinding:
    from cd4ml.stages.drift import counted_drift, threshold_for

    mon = spec.monitoring
    notes: list[str] = []
    breaches: list[str] = []
    if model is None:
        notes.append(f"version {profile.version} is not in this store: counted, not judged")
        return VersionFinding(profile.version, profile.first, profile.last, profile.requests,
                              profile.rows, profile.refused, False, (), None, (), (), (), None,
                              tuple(notes), ())
    from cd4ml.watch.baseline import ensure

    baseline = ensure(spec, store, model)
    judged = profile.rows >= mon.min_rows
    drift = tuple(counted_drift(name, model.stats[name], _counts(c), c.missing, mon.drift.method,
                                threshold_for(mon.drift, name, model.stats[name]))
                  for name, c in profile.features.items() if name in (model.stats or {}))
    prediction = None
    if profile.rows and baseline.predictions:
        c = profile.prediction
        prediction = counted_drift("(prediction)", baseline.predictions, _counts(c), c.missing,
                                   mon.drift.method, mon.prediction_drift_threshold)
    quality = tuple(Quality(name, profile.rows, c.missing, c.below, c.above, c.unseen)
                    for name, c in profile.features.items())
    if not judged:
        notes.append(f"{profile.rows} rows, under monitoring.min_rows ({mon.min_rows}): "
                     "drift shown, not judged")
    else:
        breaches += [f"input drift: {d.feature} {d.method} {d.statistic:.3g} > {d.threshold:g}"
                     for d in drift if d.drifted]
        if prediction is not None and prediction.drifted:
            breaches.append(f"prediction drift: {prediction.method} {prediction.statistic:.3g} > "
                            f"{prediction.threshold:g}")
    breaches += _quality_breaches(mon, profile, quality)
    realised, rules, estimate = _performance(spec, store, model, baseline.calibration, profile,
                                             notes)
    breaches += [f"{o.rule}: {o.reason}" for o in rules if not o.passed]
    return VersionFinding(profile.version, profile.first, profile.last, profile.requests,
                          profile.rows, profile.refused, judged, drift, prediction, quality,
                          tuple(realised), tuple(rules), estimate, tuple(notes), tuple(breaches))


def _counts(c: FeatureCounts) -> Any:
    return c.bins if c.numeric else dict(c.values)


def _quality_breaches(mon: Any, profile: VersionProfile, quality: tuple[Quality, ...]) -> list[str]:
    out = []
    total = profile.requests + profile.refused
    if mon.max_refused_rate is not None and total and profile.refused / total > mon.max_refused_rate:
        out.append(f"refused requests: {profile.refused}/{total} > {mon.max_refused_rate:g}")
    if mon.max_out_of_range_rate is not None:
        out += [f"out of range: {q.feature} {q.out_of_range_rate:.3g} > {mon.max_out_of_range_rate:g}"
                for q in quality if q.out_of_range_rate > mon.max_out_of_range_rate]
    return out


def _performance(spec: Spec, store: Store, model: ModelVersion, calibration: dict,
                 profile: VersionProfile, notes: list[str]
                 ) -> tuple[list[Realised], list[RuleOutcome], Estimate | None]:
    from cd4ml.stages.evaluate import evaluation_from_store
    from cd4ml.watch.performance import estimate, judge, realised

    offline = evaluation_from_store(store, model.run_id, spec, model)
    metrics = offline.metrics if offline else {}
    slices = offline.slices if offline else {}
    results = realised(model.task, spec.metrics, profile.joined, metrics, slices,
                       spec.data.slices, spec.monitoring.min_labels)
    outcomes: list[RuleOutcome] = []
    if results:
        outcomes, unjudged = judge(spec.monitoring, results)
        notes += unjudged
    else:
        notes.append("no labels for this window yet: realised metrics wait for "
                     "'cd4ml labels add'")
    guess = None
    if model.task == "classification":
        guess = estimate(profile.confidence.tolist(), profile.confidence_sum, calibration,
                         metrics.get("accuracy"))
    return results, outcomes, guess
