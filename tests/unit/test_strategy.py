"""An environment's strategy in the spec: defaults, every setting read, and every mistake a
one-line SpecError naming the file, line and field (cd4ml/release/strategy.py)."""

from __future__ import annotations

import pytest

from cd4ml.release.strategy import AnalysisSpec, RolloutSpec, Strategy
from cd4ml.spec import load_spec
from tests.unit.test_spec import BASE, _edit, _write, assert_error, spec_dir  # noqa: F401

PROD = "    port: 8702\n    requires_approval: true\n"


def _prod(extra: str) -> str:
    return _edit(PROD, PROD + extra)


def test_blue_green_is_the_default(spec_dir):  # noqa: F811
    spec = load_spec(_write(spec_dir, BASE))
    assert spec.environment("production").rollout == RolloutSpec()
    assert spec.environment("production").rollout.strategy == Strategy.BLUE_GREEN
    assert not spec.environment("production").rollout.progressive


def test_canary_with_every_setting(spec_dir):  # noqa: F811
    text = _prod("    strategy: canary\n"
                 "    canary: {steps: [5, 25, 100], interval: 12, max_wait: 90}\n"
                 "    analysis:\n      min_agreement: 0.8\n      max_shift: 0.3\n"
                 "      max_error_rate: 0\n      min_requests: 5\n      max_p99_ratio: 3\n")
    r = load_spec(_write(spec_dir, text)).environment("production").rollout
    assert r.strategy == Strategy.CANARY and r.progressive
    assert (r.steps, r.interval, r.max_wait) == ((5, 25, 100), 12.0, 90.0)
    assert r.analysis == AnalysisSpec(min_agreement=0.8, max_shift=0.3, max_error_rate=0.0,
                                      min_requests=5, max_p99_ratio=3.0)


def test_shadow_by_duration_or_requests(spec_dir):  # noqa: F811
    text = _prod("    strategy: shadow\n    shadow: {duration: 20, requests: 300}\n")
    r = load_spec(_write(spec_dir, text)).environment("production").rollout
    assert (r.strategy, r.shadow_duration, r.shadow_requests) == (Strategy.SHADOW, 20.0, 300)
    r = load_spec(_write(spec_dir, _prod("    strategy: shadow\n"))).environment("production").rollout
    assert (r.shadow_duration, r.shadow_requests, r.analysis) == (60.0, None, AnalysisSpec())


@pytest.mark.parametrize("extra,fragment", [
    ("    strategy: rolling  #<\n",
     "environments.production.strategy: must be one of blue_green, canary, shadow; got 'rolling'"),
    ("    strategy: canary\n    canary: {steps: [10, 50]}  #<\n",
     "environments.production.canary.steps: the last step must be 100"),
    ("    strategy: canary\n    canary:\n      steps: [50, 10, 100]  #<\n",
     "environments.production.canary.steps[1]: steps must increase; 10 follows 50"),
    ("    strategy: canary\n    canary:\n      steps: [0, 100]  #<\n",
     "environments.production.canary.steps[0]: a step is a whole percentage of traffic from 1 to 100, got 0"),
    ("    strategy: canary\n    canary:\n      steps: [10.5, 100]  #<\n",
     "environments.production.canary.steps[0]: a step is a whole percentage"),
    ("    strategy: canary\n    canary:\n      interval: 0  #<\n",
     "environments.production.canary.interval: must be a positive number of seconds, got 0"),
    ("    strategy: canary\n    canary:\n      intervall: 3  #<\n",
     "environments.production.canary.intervall: unknown key 'intervall'"),
    ("    canary:  #<\n      steps: [10, 100]\n",
     "environments.production.canary: is read only with strategy: canary (this environment's is blue_green)"),
    ("    strategy: canary\n    shadow:  #<\n      duration: 5\n",
     "environments.production.shadow: is read only with strategy: shadow"),
    ("    strategy: shadow\n    shadow:\n      requests: 0  #<\n",
     "environments.production.shadow.requests: must be at least 1, got 0"),
    ("    strategy: shadow\n    shadow:\n      duration: -1  #<\n",
     "environments.production.shadow.duration: must be a positive number of seconds"),
    ("    analysis:  #<\n      max_shift: 0.1\n",
     "environments.production.analysis: is read only with strategy: canary or shadow"),
    ("    strategy: canary\n    analysis:\n      min_agreement: 1.5  #<\n",
     "environments.production.analysis.min_agreement: is a share from 0 to 1, got 1.5"),
    ("    strategy: canary\n    analysis:\n      max_p99_ratio: 0.5  #<\n",
     "environments.production.analysis.max_p99_ratio: must be at least 1"),
    ("    strategy: canary\n    analysis:\n      max_shift: 0  #<\n",
     "environments.production.analysis.max_shift: must be a positive PSI"),
    ("    strategy: canary\n    analysis:\n      min_requests: 0  #<\n",
     "environments.production.analysis.min_requests: must be at least 1"),
    ("    strategy: canary\n    analysis:\n      max_eror_rate: 0.1  #<\n",
     "environments.production.analysis.max_eror_rate: unknown key 'max_eror_rate'"),
    ("    strategy: canary\n    analysis:\n      max_error_rate: high  #<\n",
     "environments.production.analysis.max_error_rate: expected a number, got a string"),
    ("    target: kubernetes\n    strategy: shadow  #<\n",
     "environments.production.strategy: the kubernetes target splits traffic by replica ratio"),
])
def test_mistakes_name_the_field(spec_dir, extra, fragment):  # noqa: F811
    assert_error(spec_dir, _prod(extra), fragment)
