"""The gate stage: decide from an evaluation whether a model version may be promoted (blessed).

The gate fails closed. A metric that is missing, NaN or infinite fails every rule that reads it,
with a reason saying so; a slice rule with no slice values to check fails. The one case that
passes without evidence is a ``max_drop`` rule when there is no production model at all (the
first model has nothing to be worse than), and its reason says exactly that; a production model
whose metric cannot be read still fails the rule.

Comparisons at the threshold pass (``>=``/``<=``) within float rounding, so that a drop of
0.9 - 0.87 counts as the 0.03 it is. For metrics in :data:`cd4ml.spec.LOWER_IS_BETTER` a drop
is an increase.

A failed gate can be overridden by a named person with a reason; the store records both and
blesses the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cd4ml.errors import Cd4mlError, UsageError
from cd4ml.events import GateDecided, StageFailed, StageFinished, StageStarted, StageWarning, emit
from cd4ml.spec import LOWER_IS_BETTER, GateRule
from cd4ml.states import RuleKind
from cd4ml.store.records import RuleOutcome

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.stages.evaluate import EvaluationResult
    from cd4ml.store import ModelVersion, Store

Slices = Mapping[str, Mapping[str, Mapping[str, float]]]


@dataclass(frozen=True)
class GateResult:
    passed: bool
    blessed: bool
    outcomes: tuple[RuleOutcome, ...]
    baseline_version: int | None
    overridden: bool
    override_by: str | None
    override_reason: str | None

    @property
    def failures(self) -> tuple[RuleOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.passed)


# ----------------------------------------------------------------------------- the rules

_NO_PRODUCTION = object()  # no production model at all, as opposed to one without the metric


def check_rules(rules: Iterable[GateRule], metrics: Mapping[str, float], slices: Slices | None,
                production_metrics: Mapping[str, float] | None = None,
                production_slices: Slices | None = None) -> list[RuleOutcome]:
    """Check every rule against the candidate's metrics (and production's, for ``max_drop``).

    Pure: no store, no I/O. A slice rule yields one outcome per value of its slice column.
    """
    has_production = production_metrics is not None or production_slices is not None
    out: list[RuleOutcome] = []
    for rule in rules:
        if rule.slice is None:
            baseline = _lookup(production_metrics, rule.metric) if has_production else _NO_PRODUCTION
            out += _check(rule, None, None, _lookup(metrics, rule.metric), baseline)
            continue
        values = (slices or {}).get(rule.slice) or {}
        if not values:
            out += [_outcome(rule, kind, None, None, False,
                             f"no values of slice {rule.slice!r} were evaluated; failing closed")
                    for kind in _kinds(rule)]
            continue
        prod_values = (production_slices or {}).get(rule.slice) or {}
        for value in sorted(values, key=str):
            baseline = (_lookup(prod_values.get(value), rule.metric) if has_production
                        else _NO_PRODUCTION)
            out += _check(rule, rule.slice, str(value), _lookup(values[value], rule.metric), baseline)
    return out


def _kinds(rule: GateRule) -> list[RuleKind]:
    return [k for k in (RuleKind.MIN, RuleKind.MAX, RuleKind.MAX_DROP)
            if getattr(rule, k) is not None]


def _lookup(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    if metrics is None or name not in metrics or metrics[name] is None:
        return None
    try:
        return float(metrics[name])
    except (TypeError, ValueError):
        return math.nan  # unreadable counts as not a number: it fails closed


def _unusable(what: str, v: float | None) -> str | None:
    """Why a value cannot be judged, or None if it can."""
    if v is None:
        return f"{what} was not computed; failing closed"
    if math.isnan(v):
        return f"{what} is NaN (not defined on these rows); failing closed"
    if math.isinf(v):
        return f"{what} is infinite; failing closed"
    return None


def _at_most(a: float, b: float) -> bool:
    return a <= b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _check(rule: GateRule, col: str | None, value: str | None, observed: float | None,
           baseline: Any) -> list[RuleOutcome]:
    name = rule.metric + (f"[{col}={value}]" if col else "")
    shown_baseline = None if baseline is _NO_PRODUCTION else baseline
    bad = _unusable(name, observed)
    out = []
    for kind in _kinds(rule):
        threshold = float(getattr(rule, kind))
        if bad:
            passed, reason = False, bad
        elif kind is RuleKind.MIN:
            assert observed is not None
            passed = _at_most(threshold, observed)
            reason = f"{observed:.6g} {'>=' if passed else '<'} {threshold:g}"
        elif kind is RuleKind.MAX:
            assert observed is not None
            passed = _at_most(observed, threshold)
            reason = f"{observed:.6g} {'<=' if passed else '>'} {threshold:g}"
        else:
            assert observed is not None
            passed, reason = _drop(rule.metric, name, observed, baseline, threshold)
        out.append(_outcome(rule, kind, value, observed, passed, reason, shown_baseline))
    return out


def _drop(metric: str, name: str, observed: float, baseline: Any,
          threshold: float) -> tuple[bool, str]:
    if baseline is _NO_PRODUCTION:
        return True, "no production model to compare with"
    bad = _unusable(f"production's {name}", baseline)
    if bad:
        return False, bad
    lower_better = metric in LOWER_IS_BETTER
    worse = observed - baseline if lower_better else baseline - observed
    passed = _at_most(worse, threshold)
    if worse > 0:
        moved = f"{'rose' if lower_better else 'fell'} by {worse:.4g}"
    else:
        moved = "did not get worse" if worse == 0 else f"improved by {-worse:.4g}"
    verdict = "within" if passed else "more than"
    return passed, (f"{observed:.6g} vs production {baseline:.6g}: {moved}, {verdict} the "
                    f"{threshold:g} allowed")


def _outcome(rule: GateRule, kind: RuleKind, value: str | None, observed: float | None,
             passed: bool, reason: str, baseline: float | None = None) -> RuleOutcome:
    if value is not None:
        where = f"[{rule.slice}={value}]"
    else:
        where = f" per {rule.slice}" if rule.slice else ""
    threshold = float(getattr(rule, kind))
    limit = {RuleKind.MIN: f">= {threshold:g}", RuleKind.MAX: f"<= {threshold:g}",
             RuleKind.MAX_DROP: f"drop <= {threshold:g} vs production"}[kind]
    return RuleOutcome(
        rule=f"{rule.metric}{where} {limit}", metric=rule.metric, slice=rule.slice,
        slice_value=value, kind=kind, observed=observed, threshold=threshold,
        baseline=baseline, passed=passed, reason=reason, line=rule.line)


# ----------------------------------------------------------------------------- the stage


def check_override(override_by: str | None, reason: str | None) -> None:
    """An override names a person and says why, or it is not an override."""
    by, why = (override_by or "").strip(), (reason or "").strip()
    if by and not why:
        raise UsageError("an override needs a reason (--reason TEXT): it is recorded with the decision")
    if why and not by:
        raise UsageError("an override needs a named person (--by USER): it is recorded with the "
                         "decision")


def gate(spec: Spec, store: Store, evaluation: EvaluationResult, run_id: str, model: ModelVersion,
         override_by: str | None = None, reason: str | None = None) -> GateResult:
    """Apply ``spec.gates`` to ``evaluation`` of ``model``; record the decision (which blesses
    the model when it passes or is overridden)."""
    check_override(override_by, reason)
    if evaluation.model_version != model.version:
        raise Cd4mlError(f"the evaluation is of {spec.name}:{evaluation.model_version}, not "
                         f"{model.ref}; evaluate {model.ref} first")
    emit(StageStarted("gate", f"gating {model.ref}"))
    if spec.gates:
        outcomes = check_rules(spec.gates, evaluation.metrics, evaluation.slices,
                               evaluation.production_metrics, evaluation.production_slices)
    else:
        allowed = spec.allow_no_gates
        outcomes = [RuleOutcome(
            rule="allow_no_gates: true" if allowed else "(no gates)", metric="", slice=None,
            slice_value=None, kind=RuleKind.NO_GATES, observed=None, threshold=math.nan, baseline=None,
            passed=allowed, line=spec.line_of("allow_no_gates"),
            reason=("the spec has no gates and says allow_no_gates: true, so any model is blessed"
                    if allowed else "the spec has no gates; failing closed"))]
    passed = all(o.passed for o in outcomes)
    by = (override_by or "").strip() or None
    why = (reason or "").strip() or None
    if passed and by:
        emit(StageWarning("gate", "the gate passed: the override was not needed and is not recorded"))
    decision = store.record_gate(run_id, model.id, passed, outcomes,
                                 evaluation.production_version, by, why)
    result = GateResult(
        passed=passed, blessed=decision.blessed, outcomes=tuple(outcomes),
        baseline_version=evaluation.production_version, overridden=decision.overridden,
        override_by=decision.override_by, override_reason=decision.override_reason)
    failed = len(result.failures)
    if result.overridden:
        message = (f"{model.ref} blessed: {failed} rule check(s) failed, OVERRIDDEN by "
                   f"{result.override_by}: {result.override_reason}")
    elif passed:
        message = f"{model.ref} blessed: {len(outcomes)} rule check(s) passed"
    else:
        message = f"{model.ref} not blessed: {failed} of {len(outcomes)} rule check(s) failed"
    emit(GateDecided("gate", message, result=result, model_version=model.version, run_id=run_id))
    emit((StageFinished if result.blessed else StageFailed)("gate", message))
    return result
