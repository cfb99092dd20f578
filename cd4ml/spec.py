"""The pipeline spec: ``pipelines/<name>.yaml`` read once into frozen dataclasses.

Every mistake is reported as ``file:line: field: what is wrong`` before any work starts: unknown
keys, wrong types, missing files, malformed module paths. Only cheap checks happen here (no heavy
import), so that a cached no-op ``run`` stays well under a second; :func:`check_imports` does the
import check that ``run`` calls before the first stage.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, overload

import yaml

from cd4ml.errors import SpecError
from cd4ml.release.strategy import RolloutSpec, parse_rollout

TASKS = ("classification", "regression")
TARGETS = ("local", "swarm", "kubernetes")
CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")
#: metrics where a smaller value is better: a "drop" is an increase
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
DRIFT_METHODS = ("psi", "ks")
DEFAULT_BASE_IMAGE = "python:3.11-slim"
PROJECT_PATTERN = r"[a-z0-9][a-z0-9-]{0,29}"
# Where and how a model is served and watched, not what it is or how it is judged: changing them
# must not retrain. Every other section is in the run cache key, a section added later too, since
# a cache that retrains once too often costs minutes and one that reuses a stale model lies.
SERVING_SECTIONS = ("environments", "image", "provenance", "project", "monitoring")
_MODULE_ATTR = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class DataSpec:
    """Where the data is and which columns play which part."""

    path: Path
    format: str  # "csv" or "parquet"
    target: str
    features: tuple[str, ...] | None = None  # None: every column but the target and slices
    slices: tuple[str, ...] = ()
    relax: tuple[str, ...] = ()  # built-in sanity checks turned into warnings (stages/sanity.py)


@dataclass(frozen=True)
class ModelSpec:
    """What to train: an estimator/factory (``module:attr``) or a training entry point."""

    task: str
    estimator: str | None = None
    entry_point: str | None = None  # ``module:function`` or a path to a script (tracking API)
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True)
class SplitSpec:
    """How the held-out rows are chosen; the same rows score the candidate and production."""

    test_size: float = 0.25
    seed: int = 0
    stratify: bool = True


@dataclass(frozen=True)
class GateRule:
    """One promotion rule. ``slice`` names a slice column: the rule holds for every value of it."""

    metric: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None
    slice: str | None = None
    line: int = 0

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.max_drop is not None:
            parts.append(f"drop <= {self.max_drop:g} vs production")
        where = f" per {self.slice}" if self.slice else ""
        return f"{self.metric}{where} {' and '.join(parts)}"


@dataclass(frozen=True)
class DriftSpec:
    """Drift of new data against the production model's training data, per feature."""

    enabled: bool = True
    method: str = "psi"
    threshold: float = 0.2
    features: Mapping[str, float] = field(default_factory=dict)  # per-feature thresholds

    def threshold_for(self, feature: str) -> float:
        return self.features.get(feature, self.threshold)


@dataclass(frozen=True)
class MonitoringSpec:
    """How ``cd4ml monitor`` judges a deployed version (see :mod:`cd4ml.watch`).

    ``drift`` defaults to the spec's ``drift:`` section (the same methods and thresholds as
    validation); ``rules`` default to the gates, with ``max_drop`` read against the offline
    evaluation of the same version instead of production.
    """

    drift: DriftSpec = field(default_factory=DriftSpec)
    prediction_threshold: float | None = None  # None: the drift threshold
    rules: tuple[GateRule, ...] = ()
    min_rows: int = 30  # fewer rows in a window: drift is shown, not judged
    min_labels: int = 30  # fewer labelled rows: realised metrics are shown, not judged
    max_refused_rate: float | None = None
    max_out_of_range_rate: float | None = None

    @property
    def prediction_drift_threshold(self) -> float:
        if self.prediction_threshold is not None:
            return self.prediction_threshold
        return self.drift.threshold


class Runtime(StrEnum):
    """What runs the model in the image (``image.runtime``)."""

    SKLEARN = "sklearn"  # the pickled scikit-learn model itself
    ONNX = "onnx"  # the model compiled to ONNX, run by ONNX Runtime; the build fails without parity
    AUTO = "auto"  # onnx where conversion and parity succeed, else sklearn (the build says why)


@dataclass(frozen=True)
class ImageSpec:
    """How the model server image is built and what budgets infra validation enforces."""

    base: str = DEFAULT_BASE_IMAGE
    repository: str = ""
    registry: str | None = None
    dockerfile: Path | None = None  # a user's override of infra/docker/Dockerfile.j2
    max_p99_ms: float | None = None
    max_size_mb: float | None = None
    runtime: Runtime = Runtime.AUTO


@dataclass(frozen=True)
class EnvironmentSpec:
    """One deployment environment (staging, production, ...)."""

    name: str
    target: str = "local"
    replicas: int = 1
    port: int = 8080
    host: str = "127.0.0.1"
    requires_approval: bool = False
    auto_deploy: bool = False
    approver_not_author: bool = False
    cpu: str | None = None
    memory: str | None = None
    namespace: str = "default"
    context: str | None = None
    autoscale: Mapping[str, int] | None = None
    health_timeout: float = 60.0
    # let the orchestrator (Swarm) health-check the model containers; off on engines that
    # cannot bind a healthy Swarm task to its service ("network sandbox does not exist")
    healthcheck: bool = True
    # the audited break-glass path (--override --reason --by) past this environment's policy
    allow_override: bool = True
    # how traffic moves to a new version (strategy, canary, shadow, analysis)
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    line: int = 0


class Provenance(StrEnum):
    """Which model versions may be built and deployed, by who trained them (``provenance:``)."""

    ANY = "any"
    CI = "ci"  # trained by a CI run (GitHub Actions)
    CI_DEFAULT_BRANCH = "ci_default_branch"  # ... of a push to the repository's default branch


@dataclass(frozen=True)
class Spec:
    """A whole pipeline spec, validated."""

    name: str
    path: Path
    data: DataSpec
    model: ModelSpec
    split: SplitSpec
    metrics: tuple[str, ...]
    gates: tuple[GateRule, ...]
    allow_no_gates: bool
    drift: DriftSpec
    image: ImageSpec
    environments: tuple[EnvironmentSpec, ...]
    expectations: Path | None = None
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    spec_hash: str = ""
    training_hash: str = ""  # the run cache's part of the spec: all but SERVING_SECTIONS
    lines: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)
    provenance: Provenance = field(default_factory=lambda: Provenance.ANY)
    # namespaces everything cd4ml creates on shared infrastructure (containers, networks,
    # stacks, Kubernetes objects, log folders): two repositories with a pipeline of the same
    # name on one engine never touch each other's
    project: str = ""

    @property
    def root(self) -> Path:
        return self.path.parent

    def environment(self, name: str) -> EnvironmentSpec:
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(e.name for e in self.environments) or "none"
        raise SpecError(
            f"{self.path}: environments: no environment {name!r} (known: {known}); "
            "add it under environments:"
        )

    def previous_environment(self, name: str) -> EnvironmentSpec | None:
        """The environment a version must be healthy in before it may go to ``name``."""
        names = [e.name for e in self.environments]
        i = names.index(self.environment(name).name)
        return self.environments[i - 1] if i > 0 else None

    @property
    def production(self) -> EnvironmentSpec | None:
        """The last environment of the promotion order: its model is the baseline."""
        return self.environments[-1] if self.environments else None

    def line_of(self, *path: str | int) -> int:
        return self.lines.get(_key(path), 0)


# --------------------------------------------------------------------------- YAML with lines


def _key(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


#: values a spec may expand to: YAML aliases make a few lines stand for billions ("billion
#: laughs"); a real spec has a few hundred
MAX_SPEC_VALUES = 20_000
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _compose(text: str, file: Path) -> tuple[Any, dict[str, int]]:
    """Parse YAML keeping the line of every node, refusing duplicate keys and specs that expand
    (through aliases) past :data:`MAX_SPEC_VALUES` values."""
    loader = yaml.SafeLoader(text)
    lines: dict[str, int] = {}
    seen = [0]

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> Any:
        seen[0] += 1
        if seen[0] > MAX_SPEC_VALUES:
            raise SpecError(f"{file}:{node.start_mark.line + 1}: the spec expands to more than "
                            f"{MAX_SPEC_VALUES} values (YAML aliases?); write the values out")
        lines[_key(path)] = node.start_mark.line + 1
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            raise SpecError(f"{file}:{node.start_mark.line + 1}: unsupported YAML tag "
                            f"{_excerpt(node.tag)!r}; a spec holds plain mappings, lists and values")
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                k = loader.construct_object(knode, deep=True)
                if not isinstance(k, str):
                    raise SpecError(f"{file}:{knode.start_mark.line + 1}: keys must be strings, got {k!r}")
                if k in out:
                    first = lines.get(_key(path + (k,)))
                    raise SpecError(f"{file}:{knode.start_mark.line + 1}: duplicate key {_key(path + (k,))!r}"
                                    f" (first on line {first}); keep one of them")
                out[k] = walk(vnode, path + (k,))
                # a block mapping or list starts on the line after its key: point at the key,
                # which is where a reader looks for "model:" or "environments.staging:"
                lines[_key(path + (k,))] = knode.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(v, path + (i,)) for i, v in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(f"{file}:1: the spec is empty; see README 'Pipeline spec'")
        return walk(node, ()), lines
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        # the problem is often found lines after its cause (an unclosed bracket): name both
        started = ""
        if e.context and e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line:
            started = f" ({e.context} on line {e.context_mark.line + 1})"
        raise SpecError(f"{file}:{line}: malformed YAML: {e.problem or e}{started}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{file}:1: malformed YAML: {e}") from None
    finally:
        loader.dispose()


_REQUIRED = object()
#: the top-level key that lets a spec name files outside its repository
OUTSIDE_KEY = "allow_paths_outside_repository"


def repository_root(file: Path) -> Path:
    """The git work tree that holds ``file``; outside git, the working directory when the spec
    is under it (``cd4ml init``'s layout before ``git init``), else the spec's own directory."""
    for d in file.parents:
        if (d / ".git").exists():
            return d
    cwd = Path.cwd().resolve()
    return cwd if file.is_relative_to(cwd) else file.parent


def _excerpt(value: object, limit: int = 60) -> str:
    from cd4ml.secrets import excerpt

    return excerpt(value, limit)


class _Section:
    """Typed access to one mapping of the spec; remembers which keys were read."""

    def __init__(self, file: Path, lines: dict[str, int], path: tuple[Any, ...], value: Any,
                 fence: Path | None = None):
        self.file, self.lines, self.path = file, lines, path
        #: the directory the spec's file paths must stay in (None: the spec opted out)
        self.fence = fence
        if not isinstance(value, dict):
            self.fail(f"expected a mapping, got {_typename(value)}")
        self.value: dict[str, Any] = value
        self.seen: set[str] = set()

    def fail(self, msg: str, *sub: Any) -> NoReturn:
        path = self.path + sub
        line = self.lines.get(_key(path)) or self.lines.get(_key(self.path)) or 1
        name = _key(path) or "(top level)"
        raise SpecError(f"{self.file}:{line}: {name}: {msg}")

    def get(self, key: str, types: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
        self.seen.add(key)
        if key not in self.value or self.value[key] is None:
            if default is _REQUIRED:
                self.fail(f"{key!r} is required")
            return default
        v = self.value[key]
        types = types if isinstance(types, tuple) else (types,)
        # bool is an int in Python; a spec saying `min: true` is a mistake
        if isinstance(v, bool) and bool not in types:
            self.fail(f"expected {_names(types)}, got a boolean", key)
        if float in types and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, types):
            self.fail(f"expected {_names(types)}, got {_typename(v)} {v!r}", key)
        if isinstance(v, float) and not math.isfinite(v):
            self.fail(f"expected a finite number, got {v}", key)
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> Any:
        v = self.get(key, str, default)
        if v is not None and v not in choices:
            self.fail(f"must be one of {', '.join(choices)}; got {v!r}", key)
        return v

    def strings(self, key: str, default: Any = _REQUIRED) -> tuple[str, ...] | None:
        v = self.get(key, list, default)
        if v is None or v is default:
            return v
        for i, s in enumerate(v):
            if not isinstance(s, str):
                self.fail(f"expected a string, got {_typename(s)} {s!r}", key, i)
        return tuple(v)

    @overload
    def section(self, key: str) -> _Section: ...
    @overload
    def section(self, key: str, default: Any) -> _Section | None: ...
    def section(self, key: str, default: Any = _REQUIRED) -> _Section | None:
        v = self.get(key, dict, default)
        if v is None:
            return None
        return _Section(self.file, self.lines, self.path + (key,), v, self.fence)

    @overload
    def file_path(self, key: str, root: Path) -> Path: ...
    @overload
    def file_path(self, key: str, root: Path, default: Any) -> Path | None: ...
    def file_path(self, key: str, root: Path, default: Any = _REQUIRED) -> Path | None:
        v = self.get(key, str, default)
        if v is None:
            return None
        p = (root / v).resolve()
        if self.fence is not None and not p.is_relative_to(self.fence):
            self.fail(f"{_excerpt(v)!r} is outside the repository ({self.fence}); keep the file in the "
                      f"repository or set {OUTSIDE_KEY}: true at the top of the spec", key)
        if not p.is_file():
            self.fail(f"no such file {_excerpt(v)!r} (looked at {_excerpt(p, 120)}); fix the path, "
                      "relative to the spec", key)
        return p

    def done(self) -> None:
        unknown = [k for k in self.value if k not in self.seen]
        if unknown:
            k = unknown[0]
            known = ", ".join(sorted(self.seen))
            self.fail(f"unknown key {k!r} (known here: {known})", k)


def _typename(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__
    )


def _names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
             list: "a list", dict: "a mapping"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


# --------------------------------------------------------------------------- building the spec


def load_spec(path: str | Path) -> Spec:
    """Read and validate a pipeline spec. Raises :class:`SpecError` naming file and line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{file}: no such pipeline spec; pass the path of pipelines/<name>.yaml") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{file}: cannot read the spec: {e}") from None
    file = file.resolve()
    raw, lines = _compose(text, file)
    top = _Section(file, lines, (), raw)
    root = file.parent
    if not top.get(OUTSIDE_KEY, bool, False):
        top.fence = repository_root(file)

    name = top.get("name", str)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
        top.fail("must be lower-case letters, digits, '-' or '_' (it names images and services)", "name")
    project = top.get("project", str, None)
    if project is not None and not re.fullmatch(PROJECT_PATTERN, project):
        top.fail("must be 1-30 lower-case letters, digits or '-', starting with a letter or digit "
                 "(it prefixes container, stack and Kubernetes names)", "project")
    project = project or derive_project(root)

    d = top.section("data")
    data_path = d.file_path("path", root)
    fmt = d.choice("format", ("csv", "parquet"), "parquet" if str(data_path).endswith(".parquet") else "csv")
    data = DataSpec(
        path=data_path,
        format=fmt,
        target=d.get("target", str),
        features=d.strings("features", None),
        slices=d.strings("slices", ()) or (),
        relax=d.strings("relax", ()) or (),
    )
    from cd4ml.stages.sanity import Check

    for i, check in enumerate(data.relax):
        if check not in set(Check):
            d.fail(f"unknown check {_excerpt(check)!r} (known: {', '.join(Check)})", "relax", i)
    d.done()
    if data.features is not None and data.target in data.features:
        d.fail(f"the target {data.target!r} cannot also be a feature", "features")
    if fmt == "csv":
        _check_csv_header(data, d)

    m = top.section("model")
    task = m.choice("task", TASKS)
    estimator = m.get("estimator", str, None)
    entry_point = m.get("entry_point", str, None)
    if (estimator is None) == (entry_point is None):
        m.fail("give exactly one of 'estimator' (module:attr) or 'entry_point' (module:function or a script)")
    if estimator is not None:
        if not _MODULE_ATTR.match(estimator):
            m.fail(f"expected 'module:attr', e.g. sklearn.ensemble:RandomForestClassifier; got {estimator!r}", "estimator")
        if find_module(estimator.split(":")[0], extra=[root]) is None:
            m.fail(f"cannot find module {estimator.split(':')[0]!r}; install it or fix the name", "estimator")
    if entry_point is not None:
        if entry_point.endswith(".py"):
            script = (root / entry_point).resolve()
            if not script.is_file():
                m.fail(f"no such script {entry_point!r} (looked at {script})", "entry_point")
            entry_point = str(script)
        elif not _MODULE_ATTR.match(entry_point):
            m.fail(f"expected 'module:function' or a path to a .py script; got {entry_point!r}", "entry_point")
        elif find_module(entry_point.split(":")[0], extra=[root]) is None:
            m.fail(f"cannot find module {entry_point.split(':')[0]!r}", "entry_point")
    model = ModelSpec(
        task=task,
        estimator=estimator,
        entry_point=entry_point,
        params=m.get("params", dict, {}),
        seed=m.get("seed", int, 0),
    )
    m.done()
    _check_seed(m, model.seed, "seed")

    s = top.section("split", {})
    split = SplitSpec(
        test_size=s.get("test_size", float, 0.25) if s else 0.25,
        seed=s.get("seed", int, model.seed) if s else model.seed,
        stratify=s.get("stratify", bool, task == "classification") if s else task == "classification",
    )
    if s:
        if not 0 < split.test_size < 1:
            s.fail("must be between 0 and 1 (the share of rows held out)", "test_size")
        _check_seed(s, split.seed, "seed")
        s.done()

    known_metrics = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    metrics = top.strings("metrics", known_metrics) or known_metrics
    for i, mname in enumerate(metrics):
        if mname not in known_metrics:
            top.fail(f"unknown {task} metric {mname!r} (known: {', '.join(known_metrics)})", "metrics", i)

    gates = _gates(top, lines, file, metrics, data)
    allow_no_gates = top.get("allow_no_gates", bool, False)
    if not gates and not allow_no_gates:
        top.fail("no gates: a pipeline without gates would bless any model. Add gates: or say "
                 "allow_no_gates: true explicitly", "gates")

    drift = _drift(top.section("drift", {}), DriftSpec())

    im = top.section("image", {})
    image = ImageSpec(repository=f"cd4ml/{project}/{name}")
    if im:
        budgets = im.section("budgets", {})
        image = ImageSpec(
            base=im.get("base", str, DEFAULT_BASE_IMAGE),
            repository=im.get("repository", str, f"cd4ml/{project}/{name}"),
            registry=im.get("registry", str, None),
            dockerfile=im.file_path("dockerfile", root, None),
            max_p99_ms=budgets.get("p99_ms", float, None) if budgets else None,
            max_size_mb=budgets.get("size_mb", float, None) if budgets else None,
            runtime=Runtime(im.choice("runtime", tuple(Runtime), Runtime.AUTO.value)),
        )
        if budgets:
            budgets.done()
        for key, value, pattern, what in (
                ("base", image.base, _IMAGE_REF, "an image reference like python:3.11-slim"),
                ("repository", image.repository, _REPOSITORY,
                 "lower-case letters, digits and . _ - / (Docker's rule)"),
                ("registry", image.registry, _REGISTRY, "a host[:port], e.g. registry.example.com:5000")):
            if value is not None and not pattern.fullmatch(value):
                im.fail(f"{_excerpt(value)!r} is not {what}", key)
        for key, budget in (("p99_ms", image.max_p99_ms), ("size_mb", image.max_size_mb)):
            if budget is not None and budget <= 0 and budgets is not None:
                budgets.fail(f"must be a positive number, got {budget:g}", key)
        im.done()

    environments = _environments(top)
    expectations = top.file_path("expectations", root, None)
    monitoring = _monitoring(top, lines, file, metrics, data, drift, gates)
    provenance = Provenance(top.choice("provenance", tuple(Provenance), Provenance.ANY.value))
    top.done()

    spec_hash = _spec_hash(raw, expectations)
    training_hash = _spec_hash({k: v for k, v in raw.items() if k not in SERVING_SECTIONS}, expectations)
    return Spec(
        name=name, path=file, data=data, model=model, split=split, metrics=tuple(metrics),
        gates=gates, allow_no_gates=allow_no_gates, drift=drift, image=image,
        environments=environments, expectations=expectations, monitoring=monitoring,
        spec_hash=spec_hash, training_hash=training_hash, lines=lines, provenance=provenance,
        project=project,
    )


def _drift(dr: _Section | None, default: DriftSpec) -> DriftSpec:
    """A ``drift:`` section (top level, or under ``monitoring:``) over ``default``."""
    if not dr:
        return default
    feats = dr.get("features", dict, dict(default.features))
    for k, v in feats.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            dr.fail(f"expected a positive number, got {v!r}", "features", k)
    method = dr.choice("method", DRIFT_METHODS, default.method)
    if method == default.method:
        threshold = default.threshold
    else:
        threshold = 0.2 if method == "psi" else 0.1
    drift = DriftSpec(
        enabled=dr.get("enabled", bool, default.enabled),
        method=method,
        threshold=dr.get("threshold", float, threshold),
        features={k: float(v) for k, v in feats.items()},
    )
    if drift.threshold <= 0:
        dr.fail(f"must be a positive number, got {drift.threshold:g}", "threshold")
    dr.done()
    return drift


def _monitoring(top: _Section, lines: dict[str, int], file: Path, metrics: tuple[str, ...],
                data: DataSpec, drift: DriftSpec, gates: tuple[GateRule, ...]) -> MonitoringSpec:
    mo = top.section("monitoring", {})
    if not mo:
        return MonitoringSpec(drift=drift, rules=gates)
    rules = _gates(mo, lines, file, metrics, data, key="rules") if "rules" in mo.value else gates
    out = MonitoringSpec(
        drift=_drift(mo.section("drift", {}), drift),
        prediction_threshold=mo.get("prediction_threshold", float, None),
        rules=rules,
        min_rows=mo.get("min_rows", int, 30),
        min_labels=mo.get("min_labels", int, 30),
        max_refused_rate=mo.get("max_refused_rate", float, None),
        max_out_of_range_rate=mo.get("max_out_of_range_rate", float, None),
    )
    mo.seen.add("rules")
    if out.prediction_threshold is not None and out.prediction_threshold <= 0:
        mo.fail("must be a positive number", "prediction_threshold")
    for key in ("min_rows", "min_labels"):
        if getattr(out, key) < 1:
            mo.fail("must be at least 1", key)
    for key in ("max_refused_rate", "max_out_of_range_rate"):
        value = getattr(out, key)
        if value is not None and not 0 <= value <= 1:
            mo.fail("must be a share between 0 and 1", key)
    mo.done()
    return out


def _gates(top: _Section, lines: dict[str, int], file: Path, metrics: tuple[str, ...],
           data: DataSpec, key: str = "gates") -> tuple[GateRule, ...]:
    raw = top.get(key, list, [])
    rules = []
    for i, item in enumerate(raw):
        path = top.path + (key, i)
        g = _Section(file, lines, path, item)
        metric = g.get("metric", str)
        if metric not in metrics:
            g.fail(f"metric {metric!r} is not computed; add it to metrics: ({', '.join(metrics)})", "metric")
        rule = GateRule(
            metric=metric,
            min=g.get("min", float, None),
            max=g.get("max", float, None),
            max_drop=g.get("max_drop", float, None),
            slice=g.get("slice", str, None),
            line=lines.get(_key(path), 0),
        )
        if rule.min is None and rule.max is None and rule.max_drop is None:
            g.fail(f"a {'gate' if key == 'gates' else 'rule'} needs at least one of min, max, "
                   "max_drop")
        if rule.max_drop is not None and rule.max_drop < 0:
            g.fail("max_drop must be >= 0 (the largest worsening allowed)", "max_drop")
        if rule.slice is not None and rule.slice not in data.slices:
            g.fail(f"{rule.slice!r} is not a slice column; add it to data.slices", "slice")
        g.done()
        rules.append(rule)
    return tuple(rules)


def _environments(top: _Section) -> tuple[EnvironmentSpec, ...]:
    envs_sec = top.section("environments", {})
    if not envs_sec:
        return ()
    envs = []
    ports: dict[tuple[str, int], str] = {}
    for i, (ename, _) in enumerate(list(envs_sec.value.items())):
        # "staging:" with nothing under it is an environment with every default
        e = envs_sec.section(ename, {})
        assert e is not None
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", ename):
            envs_sec.fail("environment names are lower-case letters, digits and '-'", ename)
        approval = e.get("requires_approval", bool, False)
        autoscale = e.get("autoscale", dict, None)
        if autoscale is not None:
            a = _Section(e.file, e.lines, e.path + ("autoscale",), autoscale)
            autoscale = {
                "min_replicas": a.get("min_replicas", int, 1),
                "max_replicas": a.get("max_replicas", int),
                "cpu_percent": a.get("cpu_percent", int, 80),
            }
            a.done()
        env = EnvironmentSpec(
            name=ename,
            target=e.choice("target", TARGETS, "local"),
            replicas=e.get("replicas", int, 1),
            port=e.get("port", int, 8080 + i),
            host=e.get("host", str, "127.0.0.1"),
            requires_approval=approval,
            auto_deploy=e.get("auto_deploy", bool, i == 0 and not approval),
            approver_not_author=e.get("approver_not_author", bool, approval),
            cpu=_str_or_num(e, "cpu"),
            memory=e.get("memory", str, None),
            namespace=e.get("namespace", str, "default"),
            context=e.get("context", str, None),
            autoscale=autoscale,
            health_timeout=e.get("health_timeout", float, 60.0),
            healthcheck=e.get("healthcheck", bool, True),
            allow_override=e.get("allow_override", bool, True),
            rollout=parse_rollout(e, e.value.get("target") or "local"),
            line=e.lines.get(_key(e.path), 0),
        )
        if env.replicas < 1:
            e.fail("must be at least 1", "replicas")
        if env.health_timeout <= 0:
            e.fail(f"must be a positive number of seconds, got {env.health_timeout:g}", "health_timeout")
        if not _HOST.fullmatch(env.host):
            e.fail(f"{_excerpt(env.host)!r} is not a host name or IP address", "host")
        if env.memory is not None and not _MEMORY.fullmatch(env.memory):
            e.fail(f"{_excerpt(env.memory)!r} is not an amount of memory like 512m, 2g or 1Gi", "memory")
        if env.cpu is not None and not _CPU.fullmatch(env.cpu):
            e.fail(f"{_excerpt(env.cpu)!r} is not a number of CPUs like 0.5, 2 or 500m", "cpu")
        for key in ("namespace", "context"):
            value = getattr(env, key)
            if value is not None and not _K8S_NAME.fullmatch(value):
                e.fail(f"{_excerpt(value)!r} is not a Kubernetes name (letters, digits, . _ - :)", key)
        if not 1 <= env.port <= 65535:
            e.fail("must be a TCP port (1-65535)", "port")
        if (env.host, env.port) in ports and env.target != "kubernetes":
            e.fail(f"port {env.port} is already used by environment {ports[(env.host, env.port)]!r}", "port")
        ports[(env.host, env.port)] = ename
        e.done()
        envs.append(env)
    envs_sec.done()
    return tuple(envs)


def derive_project(root: Path) -> str:
    """The project a spec belongs to, from its repository: the name of the ``origin`` remote's
    repository, else the repository's folder, else the folder holding ``pipelines/``. Stable
    between a developer's clone and CI's checkout (both have the same origin)."""
    from cd4ml.integrations.git import repository_name

    found = repository_name(root) or (root.parent if root.name == "pipelines" else root).name
    slug = re.sub(r"[^a-z0-9-]+", "-", found.lower()).strip("-")[:30].rstrip("-")
    return slug or "default"


_IMAGE_REF = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._/:@-]{0,254}")
_REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*")
_REGISTRY = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9.-]{0,252}(?::[0-9]{1,5})?")
_HOST = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9.-]{0,252}|\[?[0-9a-fA-F:.]+\]?")
_MEMORY = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[bkmgtBKMGT]|[kmgtKMGT]i|[kmgtKMGT]B)?")
_CPU = re.compile(r"[0-9]+(?:\.[0-9]+)?m?")
_K8S_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,252}")
#: numpy's RandomState takes seeds in [0, 2**32)
_MAX_SEED = 2**32 - 1


def _check_seed(sec: _Section, seed: int, key: str) -> None:
    if not 0 <= seed <= _MAX_SEED:
        sec.fail(f"must be between 0 and {_MAX_SEED} (numpy's seed range), got {seed}", key)


def _str_or_num(sec: _Section, key: str) -> str | None:
    v = sec.get(key, (str, int, float), None)
    return None if v is None else str(v)


def _check_csv_header(data: DataSpec, sec: _Section) -> None:
    """Read only the header line, so that a misspelt column is reported before any work."""
    import csv

    try:
        with open(data.path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        sec.fail(f"cannot read {data.path}: {e}", "path")
    cols = set(header)
    for key, names in (("target", (data.target,)), ("features", data.features or ()), ("slices", data.slices)):
        for n in names:
            if n not in cols:
                shown = ", ".join(_excerpt(c, 30) for c in header[:12])
                sec.fail(f"column {_excerpt(n)!r} is not in {data.path.name} (columns: {shown}"
                         f"{', ...' if len(header) > 12 else ''})", key)


def find_module(name: str, extra: list[Path] | None = None) -> Any:
    """Locate a module without executing it (importing sklearn alone costs ~0.5 s)."""
    import importlib.machinery
    import sys

    parts = name.split(".")
    search = [str(p) for p in (extra or [])] + sys.path
    spec = importlib.machinery.PathFinder.find_spec(parts[0], search)
    if spec is None:
        return None
    for i in range(1, len(parts)):
        locs = spec.submodule_search_locations
        if not locs:
            return None
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), list(locs))
        if spec is None:
            return None
    return spec


def _spec_hash(raw: Any, expectations: Path | None) -> str:
    """Hash of what the spec means (not its comments or layout), and of the suite it names."""
    h = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode())
    if expectations is not None:
        h.update(expectations.read_bytes())
    return h.hexdigest()


def import_object(ref: str, root: Path | None = None) -> Any:
    """Import ``module:attr`` (or run a script path's module) and return the attribute."""
    import importlib
    import sys

    module_name, _, attr = ref.partition(":")
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise SpecError(f"cannot import {module_name!r}: {e}; install it or fix model.estimator") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SpecError(f"module {module_name!r} has no attribute {attr!r}; fix the name") from None
    return obj


def check_imports(spec: Spec) -> None:
    """Import the estimator or entry point now, so a bad import fails before any stage runs."""
    ref = spec.model.estimator or spec.model.entry_point
    assert ref is not None
    if ref.endswith(".py"):
        return
    try:
        obj = import_object(ref, spec.root)
    except SpecError as e:
        key = "model.estimator" if spec.model.estimator else "model.entry_point"
        raise SpecError(f"{spec.path}:{spec.line_of('model', key.split('.')[1])}: {key}: {e}") from None
    check_trainable(spec, obj)


def check_trainable(spec: Spec, obj: Any) -> None:
    """Refuse, before calling it, anything the spec names that is neither an estimator class nor
    a function of the user's own code: ``estimator: os:system`` with ``params: {command: ...}``
    would otherwise run a shell command."""
    import inspect

    key = "estimator" if spec.model.estimator else "entry_point"
    ref = spec.model.estimator or spec.model.entry_point
    where = f"{spec.path}:{spec.line_of('model', key)}: model.{key}"
    if key == "estimator" and inspect.isclass(obj):
        if callable(getattr(obj, "fit", None)) and callable(getattr(obj, "predict", None)):
            return
        raise SpecError(f"{where}: {ref} is a class without fit/predict; name a scikit-learn "
                        "estimator class")
    source = inspect.getsourcefile(obj) if inspect.isfunction(obj) else None
    fence = repository_root(spec.path)
    if source is not None and Path(source).resolve().is_relative_to(fence):
        return
    what = "an estimator class or a factory function" if key == "estimator" else "a function"
    raise SpecError(f"{where}: {ref} is not {what} defined in this repository ({fence}); cd4ml "
                    "calls only estimator classes and functions of your own code")
