"""The ``validate`` stage: the data against its Great Expectations suite, then for drift.

The suite is a file in great-expectations 1.x's own JSON format (an ``ExpectationSuite`` as GE
writes it), so users edit it with GE's tools; it is loaded with GE's API, one expectation at a
time, because ``ExpectationSuite(...)`` silently drops an expectation it cannot build and a
validation that skips a check without saying so is worse than none.

The suite runs on an ephemeral context with a pandas dataframe data source, through the same
validator ``ValidationDefinition.run`` uses but without storing the result in GE's stores, and
with the ``BASIC`` result format capped at five unexpected examples: ``SUMMARY`` (GE's default)
also counts every unexpected value, and ``COMPLETE`` lists them all, work nobody reads here.

An expectation naming a column the data lacks is not run (GE would raise inside it) but reported
as failing with "column 'x' is missing from the data": the data lost a column, which is exactly
what validation is there to say, next to every other expectation's result.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import Cd4mlError, DataError, SpecError
from cd4ml.events import (
    ExpectationFailed,
    StageFailed,
    StageFinished,
    StageProgress,
    StageStarted,
    StageWarning,
    emit,
)
from cd4ml.stages.drift import DriftOutcome, detect_drift

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuite

    from cd4ml.spec import Spec
    from cd4ml.store import Store

__all__ = ["DriftOutcome", "ExpectationOutcome", "ValidationResult", "load_suite", "run_suite",
           "validate"]

#: unexpected values kept per expectation, for the report
EXAMPLES = 5
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": EXAMPLES}
_COLUMN_KEYS = ("column", "column_A", "column_B")
_COLUMN_LIST_KEYS = ("column_list",)


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result. ``observed`` is GE's observed value, or for per-row expectations
    "n/N unexpected (p%)" (N: the values checked); ``unexpected_examples`` holds at most five values."""

    expectation: str
    column: str | None
    kwargs: dict
    success: bool
    observed: Any
    unexpected_count: int | None
    unexpected_examples: list


@dataclass(frozen=True)
class ValidationResult:
    """The verdict on a data set: every expectation's outcome and every feature's drift."""

    success: bool
    suite: str | None
    expectations: tuple[ExpectationOutcome, ...]
    drift: tuple[DriftOutcome, ...]
    baseline_version: int | None
    data_hash: str
    rows: int
    # drift a named person accepted (--override --reason --by): {by, reason, features}
    drift_override: dict | None = None

    @property
    def failures(self) -> tuple[ExpectationOutcome | DriftOutcome, ...]:
        """Failed expectations, then drifted features."""
        return (tuple(e for e in self.expectations if not e.success)
                + tuple(d for d in self.drift if d.drifted))


# ----------------------------------------------------------------------------- the suite


def load_suite(path: str | Path) -> ExpectationSuite:
    """Read a GE 1.x suite file. Raises :class:`SpecError` naming the file and expectation."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such expectation suite; fix 'expectations:' in the spec") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}:{e.lineno}: malformed JSON: {e.msg}; fix the suite file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the suite: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations", []), list):
        raise SpecError(f"{path}: not a Great Expectations suite (expected an object with "
                        "'name' and a list 'expectations')")
    built = []
    for i, entry in enumerate(raw.get("expectations") or []):
        where = f"{path}: expectations[{i}]"
        if not isinstance(entry, dict):
            raise SpecError(f"{where}: expected an object with 'type' and 'kwargs'")
        if "expectation_type" in entry and "type" not in entry:
            raise SpecError(f"{where}: 'expectation_type' is great-expectations 0.x's key; 1.x "
                            "suites call it 'type' (rename it, or re-save the suite with GE 1.x)")
        kind = entry.get("type")
        where += f" ({kind})" if isinstance(kind, str) else ""
        try:
            config = ExpectationConfiguration(**entry)
        except TypeError as e:
            raise SpecError(f"{where}: {_type_error(e)}; an expectation is "
                            "{\"type\": \"expect_...\", \"kwargs\": {...}}") from None
        built.append(_domain_object(config, where))
    suite_args = {k: v for k, v in raw.items() if k != "expectations"}
    suite_args.setdefault("name", path.stem)
    try:
        return gx.ExpectationSuite(expectations=built, **suite_args)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{path}: not a valid suite: {_type_error(e)}") from None


def _domain_object(config: Any, where: str) -> Any:
    from great_expectations import exceptions as gx_exceptions

    try:
        return config.to_domain_obj()
    except gx_exceptions.ExpectationNotFoundError:
        raise SpecError(f"{where}: unknown expectation type {config.type!r}; see "
                        "great-expectations' expectation gallery for the names") from None
    except (gx_exceptions.InvalidExpectationConfigurationError, ValueError) as e:
        raise SpecError(f"{where}: invalid kwargs: {_pydantic_message(e)}") from None


def _pydantic_message(e: Exception) -> str:
    errors = getattr(e, "errors", None)  # pydantic's ValidationError lists each field's error
    first = errors()[0] if callable(errors) and errors() else None
    if isinstance(first, dict):
        loc = ".".join(str(x) for x in first.get("loc", ()))
        return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
    return str(getattr(e, "message", None) or e).strip().splitlines()[0]


def _type_error(e: Exception) -> str:
    text = str(e).strip().splitlines()[0]
    # "ExpectationConfiguration.__init__() got an unexpected keyword argument 'x'" -> the end
    return text.split("() ", 1)[1] if "() " in text else text


# ----------------------------------------------------------------------------- running it


def run_suite(suite: ExpectationSuite, frame: pd.DataFrame) -> tuple[ExpectationOutcome, ...]:
    """Run ``suite`` on ``frame`` with great-expectations; one outcome per expectation, in the
    suite's order."""
    import logging

    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.validator.v1_validator import Validator

    # GE pins this logger at INFO, so every ephemeral context logs a line past a WARNING setup
    noisy = logging.getLogger("great_expectations.data_context.types.base")
    if noisy.level == logging.INFO:
        noisy.setLevel(logging.WARNING)
    present = set(map(str, frame.columns))
    # ``.configuration`` is rebuilt on every access: take it once
    configs = [e.configuration for e in suite.expectations]
    missing: dict[int, str] = {}
    for i, config in enumerate(configs):
        gone = [c for c in _columns(config.kwargs) if c not in present]
        if gone:
            missing[i] = gone[0]
    runnable = [e for i, e in enumerate(suite.expectations) if i not in missing]

    results: list[Any] = []
    if runnable:
        context = gx.get_context(mode="ephemeral")
        # tqdm bars on stderr: the library never prints
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        batch_definition = (context.data_sources.add_pandas("cd4ml").add_dataframe_asset("data")
                            .add_batch_definition_whole_dataframe("all"))
        to_run = suite if not missing else gx.ExpectationSuite(
            name=suite.name, expectations=runnable, suite_parameters=suite.suite_parameters)
        validator = Validator(batch_definition=batch_definition, result_format=RESULT_FORMAT,
                              batch_parameters={"dataframe": frame})
        results = list(validator.validate_expectation_suite(to_run).results)

    ordered = _in_suite_order([c for i, c in enumerate(configs) if i not in missing], results)
    out: list[ExpectationOutcome] = []
    it = iter(ordered)
    for i, config in enumerate(configs):
        if i in missing:
            out.append(ExpectationOutcome(
                expectation=config.type, column=_column_label(config.kwargs),
                kwargs=_jsonable(_clean_kwargs(config.kwargs)), success=False,
                observed=f"column {missing[i]!r} is missing from the data",
                unexpected_count=None, unexpected_examples=[]))
        else:
            out.append(_outcome(config, next(it)))
    return tuple(out)


def _columns(kwargs: dict) -> list[str]:
    cols = [kwargs[k] for k in _COLUMN_KEYS if isinstance(kwargs.get(k), str)]
    for k in _COLUMN_LIST_KEYS:
        if isinstance(kwargs.get(k), list):
            cols += [c for c in kwargs[k] if isinstance(c, str)]
    return cols


def _column_label(kwargs: dict) -> str | None:
    cols = _columns(kwargs)
    return ", ".join(cols) if cols else None


def _clean_kwargs(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k != "batch_id" and v is not None}


def _signature(config: Any) -> str:
    return config.type + json.dumps(_jsonable(_clean_kwargs(config.kwargs)), sort_keys=True)


def _in_suite_order(configs: list[Any], results: list[Any]) -> list[Any]:
    """GE returns results grouped by the metrics they share: put them back in suite order."""
    if len(results) != len(configs):
        raise DataError(f"great-expectations returned {len(results)} results for "
                        f"{len(configs)} expectations; cannot tell which is which")
    by_sig: dict[str, list[Any]] = {}
    for r in results:
        by_sig.setdefault(_signature(r.expectation_config), []).append(r)
    ordered = [(by_sig.get(_signature(c)) or [None]).pop(0) for c in configs]
    # suite parameters ($name) are substituted in the results: those keep GE's order
    rest = iter([r for bucket in by_sig.values() for r in bucket])
    return [r if r is not None else next(rest) for r in ordered]


def _outcome(config: Any, result: Any) -> ExpectationOutcome:
    res = result.result or {}
    info = result.exception_info or {}
    error = _exception_message(info)
    unexpected = res.get("unexpected_count")
    if error is not None:
        observed: Any = f"error: {error}"
    elif "observed_value" in res:
        observed = _jsonable(res["observed_value"])
    elif unexpected is not None and res.get("element_count") is not None:
        # GE leaves missing values out of most per-row expectations (not of not_be_null)
        checked = res["element_count"] - (res.get("missing_count") or 0)
        pct = 100.0 * unexpected / checked if checked else 0.0
        observed = f"{unexpected}/{checked} unexpected ({pct:.3g}%)"
    else:
        observed = None
    examples = res.get("partial_unexpected_list") or []
    return ExpectationOutcome(
        expectation=config.type,
        column=_column_label(config.kwargs),
        kwargs=_jsonable(_clean_kwargs(config.kwargs)),
        success=bool(result.success) and error is None,
        observed=observed,
        unexpected_count=None if unexpected is None else int(unexpected),
        unexpected_examples=_jsonable(list(examples[:EXAMPLES])),
    )


def _exception_message(info: dict) -> str | None:
    """GE reports an error either flat or keyed by the metric that raised."""
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "unknown error").strip().splitlines()[0]
    for v in info.values():
        if isinstance(v, dict) and (v.get("raised_exception") or v.get("exception_message")):
            return str(v.get("exception_message") or "unknown error").strip().splitlines()[0]
    return None


def _jsonable(v: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN to None, anything odd to text."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, str, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    item = getattr(v, "item", None)  # numpy scalar
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


# ----------------------------------------------------------------------------- the stage


def validate(spec: Spec, store: Store, run_id: str | None = None,
             frame: pd.DataFrame | None = None, *, override_by: str | None = None,
             reason: str | None = None) -> ValidationResult:
    """Check the pipeline's data against its expectation suite, then for drift against the
    training data of the model in production. ``frame`` is the already-loaded data of
    ``spec.data.path`` (loaded here when None). Records the result when ``run_id`` is given;
    a failed validation is a result (``success`` False), not an exception.

    Drift (never a failed expectation) can be accepted by a named person with a reason, the
    same audited override as a gate's: the drifted features are recorded as accepted by them
    and the validation passes."""
    emit(StageStarted("validate", f"validating {spec.data.path.name}"))
    try:
        result = _validate(spec, store, run_id, frame, override_by, reason)
    except Cd4mlError as err:
        emit(StageFailed("validate", str(err)))
        raise
    for e in result.expectations:
        if not e.success:
            emit(ExpectationFailed(
                "validate",
                f"{e.expectation}{f' on {e.column}' if e.column else ''}: observed {e.observed}",
                outcome=e))
    passed = sum(e.success for e in result.expectations)
    drifted = [d.feature for d in result.drift if d.drifted]
    summary = (f"{passed}/{len(result.expectations)} expectations passed"
               + (f"; drift in {', '.join(drifted)}" if drifted else
                  f"; no drift in {len(result.drift)} features" if result.drift else ""))
    emit((StageFinished if result.success else StageFailed)("validate", summary))
    return result


def _validate(spec: Spec, store: Store, run_id: str | None, frame: pd.DataFrame | None,
              override_by: str | None, reason: str | None) -> ValidationResult:
    from cd4ml.stages.data import feature_columns, file_hash, load_frame

    data_hash = file_hash(spec.data.path)
    if frame is None:
        frame = load_frame(spec.data)
    if len(frame) == 0:
        raise DataError(f"{spec.data.path}: the data set has no rows")

    suite_name = None
    expectations: tuple[ExpectationOutcome, ...] = ()
    if spec.expectations is not None:
        suite = load_suite(spec.expectations)
        suite_name = suite.name
        expectations = run_suite(suite, frame)
    else:
        emit(StageWarning("validate", f"{spec.path.name}: no expectation suite; only drift is "
                          "checked (add 'expectations: expectations/<name>.json')"))

    drift: tuple[DriftOutcome, ...] = ()
    baseline_version = None
    if not spec.drift.enabled:
        emit(StageProgress("validate", "drift check disabled in the spec (drift.enabled: false)"))
    else:
        env = spec.production.name if spec.production else None
        baseline = store.production_model(spec.name, env)
        if baseline is None:
            emit(StageProgress("validate", "no production model yet: no drift check"))
        else:
            baseline_version = baseline.version
            features = [f for f in feature_columns(spec.data, frame) if f in frame.columns]
            unseen = [f for f in features if f not in (baseline.stats or {})]
            if unseen:
                emit(StageWarning("validate", f"no training statistics in {baseline.ref} for "
                                  f"{', '.join(unseen)}: not checked for drift"))
            drift = detect_drift(frame, baseline.stats or {}, features, spec.drift)

    expected = all(e.success for e in expectations)
    drifted = [d.feature for d in drift if d.drifted]
    accepted = None
    if drifted and expected and override_by and (reason or "").strip():
        accepted = {"by": override_by, "reason": reason, "features": drifted}
        emit(StageWarning("validate", f"drift in {', '.join(drifted)} ACCEPTED by "
                          f"{override_by}: {reason}"))
    success = expected and (not drifted or accepted is not None)
    result = ValidationResult(success=success, suite=suite_name, expectations=expectations,
                              drift=drift, baseline_version=baseline_version,
                              data_hash=data_hash, rows=len(frame), drift_override=accepted)
    if run_id is not None:
        # the acceptance travels with each drifted feature's row: shown wherever drift is
        rows = [{**asdict(d), **({"accepted_by": override_by, "accepted_reason": reason}
                                 if accepted and d.drifted else {})} for d in drift]
        store.record_validation(run_id, suite_name, success,
                                [asdict(e) for e in expectations], rows, baseline_version)
    return result
