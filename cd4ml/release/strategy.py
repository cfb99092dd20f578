"""How a new version enters an environment: the spec's ``strategy`` and its settings.

    blue_green  (the default) all traffic moves at once, once the new version is ready
    canary      the new version takes ``canary.steps`` percent of live traffic in turn (e.g.
                10, 50, 100), each step held ``canary.interval`` seconds and then judged by
                :mod:`cd4ml.release.analysis`; a failed analysis sends all traffic back
    shadow      the new version gets a mirrored copy of live requests (clients see only the
                stable version's answers) for ``shadow.duration`` seconds or ``shadow.requests``
                requests; it is promoted when the analysis passes, else refused

Read from the spec by :func:`parse_rollout` (one-line errors naming the field); light on purpose:
the spec module imports it on every load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cd4ml.spec import _Section


class Strategy(StrEnum):
    """How traffic moves to a new version."""

    BLUE_GREEN = "blue_green"
    CANARY = "canary"
    SHADOW = "shadow"


@dataclass(frozen=True)
class AnalysisSpec:
    """What a new version must show, against the stable version, at every step (``analysis:``)."""

    # share of the candidate's /predict requests answered 5xx
    max_error_rate: float = 0.01
    # the candidate's share of 4xx answers minus the stable version's: a new version that refuses
    # inputs the stable one takes breaks clients even though it does not crash
    max_4xx_increase: float = 0.02
    # the candidate's p99 latency over the stable version's ...
    max_p99_ratio: float = 2.0
    # ... judged only above this p99 (ms): the latency histogram's buckets are coarse at the
    # low end, where doubling 2 ms matters to nobody
    p99_floor_ms: float = 50.0
    # share of the same rows on which both versions predict the same label (classification)
    min_agreement: float = 0.9
    # mean |candidate - stable| / max(|stable|, 1e-9) on the same rows (regression)
    max_relative_difference: float = 0.1
    # PSI of the two versions' prediction distributions
    max_shift: float = 0.2
    # candidate predictions (rows) needed before a step is judged at all
    min_requests: int = 20


@dataclass(frozen=True)
class RolloutSpec:
    """An environment's strategy and its settings (defaults apply to every field)."""

    strategy: Strategy = Strategy.BLUE_GREEN
    steps: tuple[int, ...] = (10, 50, 100)
    interval: float = 30.0  # seconds each canary step serves before it is judged
    shadow_duration: float = 60.0
    shadow_requests: int | None = None  # a shadow ends early once this many were mirrored
    # longest a step waits for analysis.min_requests rows before it is judged on what it has
    max_wait: float = 300.0
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)

    @property
    def progressive(self) -> bool:
        return self.strategy != Strategy.BLUE_GREEN


def parse_rollout(e: _Section, target: str) -> RolloutSpec:
    """``strategy``, ``canary``, ``shadow`` and ``analysis`` of one environment's section."""
    strategy = Strategy(e.choice("strategy", tuple(Strategy), Strategy.BLUE_GREEN))
    if strategy == Strategy.SHADOW and target == "kubernetes":
        e.fail("the kubernetes target splits traffic by replica ratio, which cannot mirror "
               "requests; use strategy: canary there, or shadow on local or swarm", "strategy")
    out: dict = {"strategy": strategy}
    canary = e.section("canary", None)
    if canary is not None:
        if strategy != Strategy.CANARY:
            e.fail(f"is read only with strategy: canary (this environment's is {strategy}); "
                   "remove it or set strategy: canary", "canary")
        steps = canary.get("steps", list, None)
        if steps is not None:
            out["steps"] = _steps(canary, steps)
        out["interval"] = _positive(canary, "interval", RolloutSpec.interval)
        out["max_wait"] = _positive(canary, "max_wait", RolloutSpec.max_wait)
        canary.done()
    shadow = e.section("shadow", None)
    if shadow is not None:
        if strategy != Strategy.SHADOW:
            e.fail(f"is read only with strategy: shadow (this environment's is {strategy}); "
                   "remove it or set strategy: shadow", "shadow")
        out["shadow_duration"] = _positive(shadow, "duration", RolloutSpec.shadow_duration)
        requests = shadow.get("requests", int, None)
        if requests is not None and requests < 1:
            shadow.fail(f"must be at least 1, got {requests}", "requests")
        out["shadow_requests"] = requests
        out["max_wait"] = _positive(shadow, "max_wait", RolloutSpec.max_wait)
        shadow.done()
    analysis = e.section("analysis", None)
    if analysis is not None:
        if strategy == Strategy.BLUE_GREEN:
            e.fail("is read only with strategy: canary or shadow (blue_green moves all traffic "
                   "at once, with nothing to analyse); remove it or set a strategy", "analysis")
        out["analysis"] = _analysis(analysis)
    return RolloutSpec(**out)


def _steps(sec: _Section, steps: list) -> tuple[int, ...]:
    for i, s in enumerate(steps):
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 100:
            sec.fail(f"a step is a whole percentage of traffic from 1 to 100, got {s!r}", "steps", i)
        if i and s <= steps[i - 1]:
            sec.fail(f"steps must increase; {s} follows {steps[i - 1]}", "steps", i)
    if not steps or steps[-1] != 100:
        sec.fail(f"the last step must be 100 (all traffic on the new version), got {steps}; "
                 "end the list with 100", "steps")
    return tuple(steps)


def _positive(sec: _Section, key: str, default: float) -> float:
    v = sec.get(key, float, default)
    if v <= 0:
        sec.fail(f"must be a positive number of seconds, got {v:g}", key)
    return v


def _analysis(sec: _Section) -> AnalysisSpec:
    d = AnalysisSpec()
    values = {}
    for key in ("max_error_rate", "max_4xx_increase", "min_agreement", "max_relative_difference"):
        v = sec.get(key, float, getattr(d, key))
        if not 0 <= v <= 1:
            sec.fail(f"is a share from 0 to 1, got {v:g}", key)
        values[key] = v
    ratio = sec.get("max_p99_ratio", float, d.max_p99_ratio)
    if ratio < 1:
        sec.fail(f"must be at least 1 (the candidate's p99 over the stable one's), got {ratio:g}",
                 "max_p99_ratio")
    floor = sec.get("p99_floor_ms", float, d.p99_floor_ms)
    if floor < 0:
        sec.fail(f"must be >= 0 milliseconds, got {floor:g}", "p99_floor_ms")
    shift = sec.get("max_shift", float, d.max_shift)
    if shift <= 0:
        sec.fail(f"must be a positive PSI, got {shift:g}", "max_shift")
    least = sec.get("min_requests", int, d.min_requests)
    if least < 1:
        sec.fail(f"must be at least 1, got {least}", "min_requests")
    sec.done()
    return AnalysisSpec(max_p99_ratio=ratio, p99_floor_ms=floor, max_shift=shift,
                        min_requests=least, **values)
