"""The gate's rules (pure) and the stage around them (in-memory store)."""

from __future__ import annotations

import math

import pytest

from cd4ml.errors import Cd4mlError, UsageError
from cd4ml.events import GateDecided, StageWarning, listening
from cd4ml.spec import GateRule, load_spec
from cd4ml.stages.evaluate import EvaluationResult
from cd4ml.stages.gate import check_override, check_rules, gate
from cd4ml.states import RuleKind

NAN, INF = float("nan"), float("inf")


def one(outcomes):
    assert len(outcomes) == 1, outcomes
    return outcomes[0]


# ----------------------------------------------------------------------------- absolute rules


def test_min_passes_above_and_fails_below():
    rule = GateRule("accuracy", min=0.85, line=7)
    ok = one(check_rules([rule], {"accuracy": 0.9}, None))
    assert ok.passed and ok.kind == "min" and ok.observed == 0.9 and ok.threshold == 0.85
    assert ok.rule == "accuracy >= 0.85" and ok.line == 7 and ok.baseline is None
    bad = one(check_rules([rule], {"accuracy": 0.8}, None))
    assert not bad.passed and bad.reason == "0.8 < 0.85"


def test_max_passes_below_and_fails_above():
    rule = GateRule("rmse", max=65.0)
    assert one(check_rules([rule], {"rmse": 60.0}, None)).passed
    bad = one(check_rules([rule], {"rmse": 70.5}, None))
    assert not bad.passed and bad.reason == "70.5 > 65"


@pytest.mark.parametrize("rule,value", [
    (GateRule("accuracy", min=0.85), 0.85),
    (GateRule("rmse", max=65.0), 65.0),
    (GateRule("rmse", max=0.3), 0.1 + 0.2),  # 0.30000000000000004: rounding, not a miss
    (GateRule("accuracy", min=0.3 + 1e-15), 0.3),
])
def test_boundary_equality_passes(rule, value):
    assert one(check_rules([rule], {rule.metric: value}, None)).passed


def test_just_past_the_boundary_fails():
    assert not one(check_rules([GateRule("accuracy", min=0.85)], {"accuracy": 0.8499}, None)).passed
    assert not one(check_rules([GateRule("rmse", max=65.0)], {"rmse": 65.001}, None)).passed


def test_min_and_max_and_drop_in_one_rule_are_three_checks():
    rule = GateRule("r2", min=0.3, max=0.99, max_drop=0.05, line=4)
    out = check_rules([rule], {"r2": 0.995}, None, {"r2": 0.9})
    assert [o.kind for o in out] == ["min", "max", "max_drop"]
    assert [o.passed for o in out] == [True, False, True]
    assert all(o.line == 4 and o.baseline == 0.9 for o in out)


# ----------------------------------------------------------------------------- failing closed


@pytest.mark.parametrize("value,word", [(NAN, "NaN"), (INF, "infinite"), (-INF, "infinite"),
                                        (None, "not computed")])
def test_unusable_metric_fails_every_kind_of_rule(value, word):
    rule = GateRule("accuracy", min=0.1, max=1.0, max_drop=1.0)
    out = check_rules([rule], {"accuracy": value}, None, {"accuracy": 0.9})
    assert len(out) == 3
    for o in out:
        assert not o.passed
        assert word in o.reason and "failing closed" in o.reason


def test_missing_metric_fails_closed():
    o = one(check_rules([GateRule("f1_macro", min=0.5)], {"accuracy": 0.99}, None))
    assert not o.passed and o.observed is None
    assert o.reason == "f1_macro was not computed; failing closed"


def test_unreadable_metric_counts_as_nan():
    assert not one(check_rules([GateRule("accuracy", min=0.1)], {"accuracy": "high"}, None)).passed


def test_no_rules_no_outcomes():
    assert check_rules([], {"accuracy": 1.0}, None) == []


# ----------------------------------------------------------------------------- relative rules


def test_max_drop_without_production_passes_and_says_why():
    o = one(check_rules([GateRule("f1_macro", max_drop=0.03)], {"f1_macro": 0.5}, None, None, None))
    assert o.passed and o.baseline is None
    assert o.reason == "no production model to compare with"


def test_max_drop_without_production_still_needs_the_candidate_metric():
    o = one(check_rules([GateRule("f1_macro", max_drop=0.03)], {"f1_macro": NAN}, None))
    assert not o.passed and "NaN" in o.reason


@pytest.mark.parametrize("prod,word", [({"f1_macro": NAN}, "NaN"), ({"f1_macro": INF}, "infinite"),
                                       ({}, "not computed"), ({"f1_macro": None}, "not computed")])
def test_max_drop_against_unusable_production_fails_closed(prod, word):
    o = one(check_rules([GateRule("f1_macro", max_drop=0.03)], {"f1_macro": 0.95}, None, prod))
    assert not o.passed
    assert "production's f1_macro" in o.reason and word in o.reason


def test_higher_is_better_drop():
    rule = GateRule("f1_macro", max_drop=0.03)
    fell = one(check_rules([rule], {"f1_macro": 0.85}, None, {"f1_macro": 0.9}))
    assert not fell.passed and "fell by 0.05" in fell.reason and fell.baseline == 0.9
    rose = one(check_rules([rule], {"f1_macro": 0.95}, None, {"f1_macro": 0.9}))
    assert rose.passed and "improved by 0.05" in rose.reason
    same = one(check_rules([rule], {"f1_macro": 0.9}, None, {"f1_macro": 0.9}))
    assert same.passed and "did not get worse" in same.reason


def test_drop_exactly_at_the_limit_passes_despite_float_rounding():
    # 0.9 - 0.87 == 0.030000000000000027 in binary floating point
    o = one(check_rules([GateRule("f1_macro", max_drop=0.03)], {"f1_macro": 0.87}, None,
                        {"f1_macro": 0.9}))
    assert o.passed
    assert not one(check_rules([GateRule("f1_macro", max_drop=0.03)], {"f1_macro": 0.869}, None,
                               {"f1_macro": 0.9})).passed


def test_lower_is_better_drop_is_an_increase():
    rule = GateRule("rmse", max_drop=3.0)
    worse = one(check_rules([rule], {"rmse": 64.0}, None, {"rmse": 60.0}))
    assert not worse.passed and "rose by 4" in worse.reason
    at_limit = one(check_rules([rule], {"rmse": 63.0}, None, {"rmse": 60.0}))
    assert at_limit.passed
    better = one(check_rules([rule], {"rmse": 40.0}, None, {"rmse": 60.0}))
    assert better.passed and "improved by 20" in better.reason
    # the same numbers read as higher-is-better would fail: the direction comes from the metric
    assert not one(check_rules([GateRule("r2", max_drop=3.0)], {"r2": 40.0}, None,
                               {"r2": 60.0})).passed


def test_mae_is_lower_is_better_too():
    assert one(check_rules([GateRule("mae", max_drop=1.0)], {"mae": 10.0}, None, {"mae": 30.0})).passed


# ----------------------------------------------------------------------------- slices

SLICES = {"band": {"low": {"accuracy": 0.9}, "high": {"accuracy": 0.7}}}


def test_slice_minimum_must_hold_for_every_value():
    out = check_rules([GateRule("accuracy", min=0.75, slice="band", line=9)], {"accuracy": 0.8}, SLICES)
    assert [(o.slice, o.slice_value, o.passed) for o in out] == [
        ("band", "high", False), ("band", "low", True)]
    assert out[0].rule == "accuracy[band=high] >= 0.75" and out[0].line == 9
    assert out[0].reason == "0.7 < 0.75"


def test_slice_minimum_passes_when_every_value_holds():
    out = check_rules([GateRule("accuracy", min=0.6, slice="band")], {}, SLICES)
    assert len(out) == 2 and all(o.passed for o in out)


@pytest.mark.parametrize("slices", [None, {}, {"band": {}}, {"other": {"a": {"accuracy": 1.0}}}])
def test_missing_slice_fails_closed(slices):
    o = one(check_rules([GateRule("accuracy", min=0.5, slice="band")], {"accuracy": 1.0}, slices))
    assert not o.passed and o.slice == "band" and o.slice_value is None
    assert "no values of slice 'band'" in o.reason and "failing closed" in o.reason
    assert o.rule == "accuracy per band >= 0.5"


def test_nan_in_one_slice_value_fails_that_value():
    slices = {"band": {"low": {"accuracy": NAN}, "high": {"accuracy": 0.9}}}
    out = check_rules([GateRule("accuracy", min=0.5, slice="band")], {}, slices)
    assert {o.slice_value: o.passed for o in out} == {"high": True, "low": False}
    assert "accuracy[band=low] is NaN" in next(o.reason for o in out if not o.passed)


def test_slice_drop_compares_with_production_on_the_same_slice():
    prod = {"band": {"low": {"accuracy": 0.9}, "high": {"accuracy": 0.95}}}
    out = check_rules([GateRule("accuracy", max_drop=0.1, slice="band")], {"accuracy": 0.8}, SLICES,
                      {"accuracy": 0.9}, prod)
    by_value = {o.slice_value: o for o in out}
    assert by_value["low"].passed and by_value["low"].baseline == 0.9
    assert not by_value["high"].passed and by_value["high"].baseline == 0.95


def test_slice_drop_with_production_lacking_the_slice_fails_closed():
    out = check_rules([GateRule("accuracy", max_drop=0.1, slice="band")], {}, SLICES,
                      {"accuracy": 0.9}, {})
    assert len(out) == 2 and not any(o.passed for o in out)
    assert all("production's accuracy[band=" in o.reason for o in out)


def test_slice_drop_without_production_passes():
    out = check_rules([GateRule("accuracy", max_drop=0.1, slice="band")], {}, SLICES)
    assert all(o.passed and o.reason == "no production model to compare with" for o in out)


# ----------------------------------------------------------------------------- the stage


@pytest.fixture
def spec_file(tmp_path):
    (tmp_path / "d.csv").write_text("x,band,y\n1,low,0\n2,high,1\n")

    def write(gates: str, extra: str = "") -> object:
        path = tmp_path / "p.yaml"
        path.write_text(f"""name: toy
data: {{path: d.csv, target: y, slices: [band]}}
model: {{task: classification, estimator: "sklearn.linear_model:LogisticRegression"}}
{gates}
{extra}
""")
        return load_spec(path)
    return write


def _model(store):
    run = store.start_run("toy")
    model = store.register_model("toy", run.id, "classification", "/nowhere", "0" * 64, {}, {})
    return run, model


def _evaluation(version, accuracy, production=None):
    return EvaluationResult(
        model_version=version, metrics={"accuracy": accuracy},
        slices={"band": {"low": {"accuracy": accuracy}, "high": {"accuracy": accuracy}}},
        production_version=1 if production is not None else None,
        production_metrics=None if production is None else {"accuracy": production},
        production_slices=None, confusion_matrix=None, labels=None, test_rows=10)


GATES = "gates:\n  - metric: accuracy\n    min: 0.8\n    max_drop: 0.05\n"


def test_passing_gate_blesses_and_records(spec_file, store):
    spec = spec_file(GATES)
    run, model = _model(store)
    events = []
    with listening(events.append):
        result = gate(spec, store, _evaluation(model.version, 0.9), run.id, model)
    assert result.passed and result.blessed and not result.overridden
    assert result.failures == () and len(result.outcomes) == 2
    assert result.outcomes[0].line == spec.gates[0].line > 0
    assert store.model_by_id(model.id).blessed
    decision = store.gate(run.id)
    assert decision.passed and decision.rules[0].rule == "accuracy >= 0.8"
    # the store gives back the outcomes themselves, states as their enums
    assert decision.rules == result.outcomes
    assert decision.rules[0].kind is RuleKind.MIN
    [ev] = [e for e in events if isinstance(e, GateDecided)]
    assert ev.result == result and ev.model_version == model.version and ev.run_id == run.id


def test_failing_gate_does_not_bless(spec_file, store):
    spec = spec_file(GATES)
    run, model = _model(store)
    result = gate(spec, store, _evaluation(model.version, 0.7, production=0.9), run.id, model)
    assert not result.passed and not result.blessed
    assert [o.kind for o in result.failures] == ["min", "max_drop"]
    assert result.baseline_version == 1
    assert not store.model_by_id(model.id).blessed
    assert store.gate(run.id).baseline_version == 1


def test_override_blesses_a_failed_gate_and_names_who_and_why(spec_file, store):
    spec = spec_file(GATES)
    run, model = _model(store)
    result = gate(spec, store, _evaluation(model.version, 0.5), run.id, model,
                  override_by="alice", reason="  hotfix for incident 42 ")
    assert not result.passed and result.blessed and result.overridden
    assert (result.override_by, result.override_reason) == ("alice", "hotfix for incident 42")
    decision = store.gate(run.id)
    assert decision.overridden and decision.override_by == "alice" and decision.blessed
    assert store.model_by_id(model.id).blessed


def test_override_of_a_passing_gate_is_not_recorded(spec_file, store):
    spec = spec_file(GATES)
    run, model = _model(store)
    events = []
    with listening(events.append):
        result = gate(spec, store, _evaluation(model.version, 0.9), run.id, model,
                      override_by="alice", reason="just in case")
    assert result.blessed and not result.overridden and result.override_by is None
    assert any(isinstance(e, StageWarning) and "not needed" in e.message for e in events)


@pytest.mark.parametrize("by,reason", [("alice", None), ("alice", "  "), (None, "why"), ("", "why")])
def test_half_an_override_is_a_usage_error(spec_file, store, by, reason):
    spec = spec_file(GATES)
    run, model = _model(store)
    with pytest.raises(UsageError, match="override needs"):
        gate(spec, store, _evaluation(model.version, 0.5), run.id, model, override_by=by, reason=reason)
    assert store.gate(run.id) is None


def test_check_override_accepts_both_or_neither():
    check_override(None, None)
    check_override("bob", "because")


def test_no_gates_allowed_blesses_with_an_explicit_outcome(spec_file, store):
    spec = spec_file("allow_no_gates: true")
    run, model = _model(store)
    result = gate(spec, store, _evaluation(model.version, 0.1), run.id, model)
    assert result.passed and result.blessed
    [o] = result.outcomes
    assert o.kind == "no_gates" and o.passed and "allow_no_gates: true" in o.reason
    assert o.line == spec.line_of("allow_no_gates") > 0
    stored = store.gate(run.id).rules[0]
    assert stored.kind is RuleKind.NO_GATES and math.isnan(stored.threshold)


def test_evaluation_of_another_version_is_refused(spec_file, store):
    spec = spec_file(GATES)
    run, model = _model(store)
    with pytest.raises(Cd4mlError, match="evaluate toy:1 first"):
        gate(spec, store, _evaluation(model.version + 1, 0.9), run.id, model)


def test_nan_metric_from_the_evaluation_fails_the_gate(spec_file, store):
    spec = spec_file(GATES)
    run, model = _model(store)
    result = gate(spec, store, _evaluation(model.version, NAN), run.id, model)
    assert not result.blessed
    assert all("NaN" in o.reason for o in result.failures)
    stored = store.gate(run.id).rules
    assert math.isnan(stored[0].observed)
