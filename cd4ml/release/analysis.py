"""Judging a new version against the stable one on what both did over the same window.

Service signals come from each version's ``/metrics`` (two scrapes, the window's counts are
their difference); model signals from the prediction logs (:mod:`cd4ml.serve.predlog`), where
every line names the version that answered. The checks, each with its value, threshold and
verdict:

    traffic            the candidate predicted at least ``min_requests`` rows (fewer: failed,
                       never promoted on too little evidence); under a shadow, rows of
                       requests the stable version also answered (a shadow that saw no
                       mirrored copy was compared with nothing)
    error_rate         the candidate's share of /predict answered 5xx
    client_errors      the candidate's share of 4xx minus the stable version's
    p99_latency        the candidate's p99 within ``max_p99_ratio`` of the stable p99 (a p99
                       under ``p99_floor_ms`` passes: the histogram is coarse there)
    agreement          classification: the share of the same rows given the same label
    relative_difference regression: mean |candidate - stable| / |stable| on the same rows
    shift              PSI of the two versions' prediction distributions (on the same rows
                       when there are enough), failing only when also significant (chi-square)

"The same rows" are, under a shadow, the rows of the same request (the mirror keeps the
``X-Request-ID``); under a canary the two versions answer different requests, so rows whose
inputs are equal are compared. With no such row the agreement is inconclusive and the shift
decides. A check without data (no ``/metrics`` answer) is inconclusive and fails nothing; the
analysis passes when no check failed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cd4ml.release.strategy import AnalysisSpec
    from cd4ml.watch.window import Window


class Verdict(StrEnum):
    """How one check came out."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # no data to judge on: fails nothing


@dataclass(frozen=True)
class Check:
    """One check: what was measured, what it is held to, and the verdict."""

    name: str
    value: float | None
    threshold: float
    verdict: Verdict
    detail: str


@dataclass(frozen=True)
class ServerCounts:
    """A server's /predict answers by status and its latency histogram (cumulative buckets,
    seconds), as scraped or as the difference of two scrapes."""

    requests: Mapping[str, int] = field(default_factory=dict)
    buckets: tuple[tuple[float, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ServerCounts:
        from cd4ml.watch.scrape import parse, predict_counts

        requests, buckets = predict_counts(parse(text))
        return cls(requests, tuple(buckets))

    def since(self, before: ServerCounts | None) -> ServerCounts:
        """The counts added after ``before`` (all of them when the server restarted since)."""
        if before is None or any(n < before.requests.get(s, 0) for s, n in self.requests.items()):
            return self
        old = dict(before.buckets)
        return ServerCounts({s: n - before.requests.get(s, 0) for s, n in self.requests.items()},
                            tuple((b, c - old.get(b, 0.0)) for b, c in self.buckets))

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def share(self, first_digit: str) -> float | None:
        total = self.total
        if not total:
            return None
        return sum(n for s, n in self.requests.items() if s.startswith(first_digit)) / total

    @property
    def p99_ms(self) -> float | None:
        from cd4ml.watch.scrape import _quantile

        return _quantile(list(self.buckets), 0.99)


@dataclass(frozen=True)
class Observation:
    """What one version did over the window: its prediction log records and its /metrics."""

    version: int
    records: tuple[dict[str, Any], ...]
    counts: ServerCounts | None = None

    @property
    def rows(self) -> int:
        return sum(len(r["inputs"]) for r in self.records if "inputs" in r)


@dataclass(frozen=True)
class Analysis:
    """The verdict on a candidate against the stable version over one window."""

    stable_version: int
    candidate_version: int
    mirrored: bool
    rows: Mapping[str, int]  # {"stable": n, "candidate": n, "matched": n}
    checks: tuple[Check, ...]
    window: tuple[str, str] = ("", "")

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.verdict == Verdict.FAILED)

    def summary(self) -> str:
        """One line: the verdict and the checks that decided it."""
        shown = self.failed or self.checks
        what = "; ".join(f"{c.name} {c.detail}" for c in shown)
        return f"analysis {'passed' if self.passed else 'FAILED'}: {what}"

    def as_dict(self) -> dict[str, Any]:
        """For the store and the GitHub deployment payload (plain JSON)."""
        out = asdict(self)
        out["passed"] = self.passed
        out["rows"] = dict(self.rows)
        out["window"] = list(self.window)
        return out


# ----------------------------------------------------------------------------- reading


def read_logs(paths: Iterable[str], pipeline: str, window: Window,
              versions: Iterable[int]) -> dict[int, tuple[dict[str, Any], ...]]:
    """The prediction and refusal records of each of ``versions`` in ``window``."""
    from cd4ml.watch.logread import LogCounts, records

    wanted: dict[int, list[dict[str, Any]]] = {v: [] for v in versions}
    for record in records(list(paths), pipeline, window, LogCounts()):
        got = wanted.get(record["model_version"])
        if got is not None:
            got.append(record)
    return {v: tuple(rs) for v, rs in wanted.items()}


def scrape(url: str) -> ServerCounts | None:
    """A server's /predict counts now; None when it does not answer."""
    from cd4ml.release.targets import http_get

    status, body = http_get(url.rstrip("/") + "/metrics", timeout=3)
    return ServerCounts.parse(body.decode("utf-8", "replace")) if status == 200 else None


# ----------------------------------------------------------------------------- judging


def analyse(task: str, stable: Observation, candidate: Observation, spec: AnalysisSpec, *,
            mirrored: bool, window: tuple[str, str] = ("", "")) -> Analysis:
    """Every check of ``candidate`` against ``stable``; ``mirrored``: both answered the same
    requests (a shadow), else comparable ones (a canary)."""
    pairs = _pairs(stable.records, candidate.records, mirrored)
    checks = [_traffic(candidate, len(pairs) if mirrored else None, spec), *_service(stable, candidate, spec),
              _agreement(task, pairs, spec), _shift(task, stable, candidate, spec, pairs)]
    rows = {"stable": stable.rows, "candidate": candidate.rows, "matched": len(pairs)}
    return Analysis(stable.version, candidate.version, mirrored, rows, tuple(checks), window)


def _traffic(candidate: Observation, mirrored_rows: int | None, spec: AnalysisSpec) -> Check:
    n = candidate.rows if mirrored_rows is None else mirrored_rows
    what = ("rows predicted by the candidate" if mirrored_rows is None
            else "mirrored rows predicted by both versions (same request id)")
    ok = n >= spec.min_requests
    return Check("traffic", n, spec.min_requests, Verdict.PASSED if ok else Verdict.FAILED,
                 f"{n} {what} ({'>=' if ok else '<'} {spec.min_requests} needed to judge it)")


def _service(stable: Observation, candidate: Observation, spec: AnalysisSpec) -> list[Check]:
    s, c = stable.counts, candidate.counts
    out = []
    rate = c.share("5") if c else _refused_share(candidate, 500)
    out.append(_bound("error_rate", rate, spec.max_error_rate, "of /predict answered 5xx",
                      percent=True))
    mine = c.share("4") if c else _refused_share(candidate, 400)
    theirs = s.share("4") if s else _refused_share(stable, 400)
    rise = None if mine is None or theirs is None else mine - theirs
    out.append(_bound("client_errors", rise, spec.max_4xx_increase,
                      "more /predict answered 4xx than by the stable version", percent=True))
    cp, sp = (c.p99_ms if c else None), (s.p99_ms if s else None)
    if cp is None or sp is None:
        out.append(Check("p99_latency", cp, spec.max_p99_ratio, Verdict.INCONCLUSIVE,
                         "not measured (no latency histogram of both versions)"))
    else:
        limit = max(sp * spec.max_p99_ratio, spec.p99_floor_ms)
        out.append(Check("p99_latency", cp, limit,
                         Verdict.PASSED if cp <= limit else Verdict.FAILED,
                         f"p99 {cp:g} ms vs stable {sp:g} ms (limit {limit:g} ms)"))
    return out


def _refused_share(obs: Observation, status: int) -> float | None:
    total = len(obs.records)
    if not total:
        return None
    hit = sum(1 for r in obs.records
              if status <= int((r.get("refused") or {}).get("status") or 0) < status + 100)
    return hit / total


def _bound(name: str, value: float | None, limit: float, what: str, *, percent: bool) -> Check:
    if value is None:
        return Check(name, None, limit, Verdict.INCONCLUSIVE, f"not measured ({what})")
    shown = f"{value:.1%} {what} (limit {limit:.1%})" if percent else f"{value:g} {what}"
    return Check(name, value, limit, Verdict.PASSED if value <= limit else Verdict.FAILED, shown)


def _rows(record: dict[str, Any]) -> Iterable[tuple[int, dict[str, Any], Any]]:
    return ((i, x, p) for i, (x, p) in enumerate(zip(record["inputs"], record["predictions"])))


def _pairs(stable: Iterable[dict[str, Any]], candidate: Iterable[dict[str, Any]],
           mirrored: bool) -> list[tuple[Any, Any]]:
    """(stable prediction, candidate prediction) for each row both versions answered."""
    seen: dict[Any, Any] = {}
    for r in stable:
        if "inputs" in r:
            for i, x, p in _rows(r):
                seen[(r["request_id"], i) if mirrored else _key(x)] = p
    out = []
    for r in candidate:
        if "inputs" in r:
            for i, x, p in _rows(r):
                key = (r["request_id"], i) if mirrored else _key(x)
                if key in seen:
                    out.append((seen[key], p))
    return out


def _key(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def _agreement(task: str, pairs: list[tuple[Any, Any]], spec: AnalysisSpec) -> Check:
    from cd4ml.serve.schema import label_key

    if task == "classification":
        if not pairs:
            return Check("agreement", None, spec.min_agreement, Verdict.INCONCLUSIVE,
                         "not measured (no row answered by both versions)")
        same = sum(1 for s, c in pairs if label_key(s) == label_key(c)) / len(pairs)
        return Check("agreement", same, spec.min_agreement,
                     Verdict.PASSED if same >= spec.min_agreement else Verdict.FAILED,
                     f"{same:.1%} of {len(pairs)} rows given the same label "
                     f"(at least {spec.min_agreement:.0%} needed)")
    diffs = [abs(float(c) - float(s)) / max(abs(float(s)), 1e-9) for s, c in pairs
             if _number(s) and _number(c)]
    if not diffs:
        return Check("relative_difference", None, spec.max_relative_difference,
                     Verdict.INCONCLUSIVE, "not measured (no row answered by both versions)")
    mean = sum(diffs) / len(diffs)
    return Check("relative_difference", mean, spec.max_relative_difference,
                 Verdict.PASSED if mean <= spec.max_relative_difference else Verdict.FAILED,
                 f"{mean:.1%} mean relative difference on {len(diffs)} rows "
                 f"(at most {spec.max_relative_difference:.0%})")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _predictions(obs: Observation) -> list[Any]:
    return [p for r in obs.records if "predictions" in r for p in r["predictions"]]


def _shift(task: str, stable: Observation, candidate: Observation, spec: AnalysisSpec,
           pairs: list[tuple[Any, Any]]) -> Check:
    """PSI of the candidate's predictions against the stable version's, with the drift
    measure validation and monitoring use (stable deciles or label shares as the bins).

    On the same rows when there are enough of them (no difference of inputs in it), else on
    all rows of the window; either way a shift fails only when it is also significant (a
    chi-square test of the binned counts, p < SHIFT_P): two samples of a few dozen rows
    differ by chance by more than a PSI of 0.2."""
    import pandas as pd

    from cd4ml.stages.drift import feature_drift, feature_stats
    from cd4ml.watch.baseline import prediction_values

    same = len(pairs) >= spec.min_requests
    if same:
        s, c = [p for p, _ in pairs], [p for _, p in pairs]
    else:
        s, c = _predictions(stable), _predictions(candidate)
    if not s or not c:
        return Check("shift", None, spec.max_shift, Verdict.INCONCLUSIVE,
                     "not measured (a version predicted nothing in the window)")
    if task != "classification" and not all(map(_number, s + c)):
        return Check("shift", None, spec.max_shift, Verdict.INCONCLUSIVE,
                     "not measured (non-numeric regression predictions)")
    s_values, c_values = prediction_values(task, s), prediction_values(task, c)
    stats = feature_stats(pd.DataFrame({"prediction": s_values}), ["prediction"])["prediction"]
    out = feature_drift("prediction", stats, c_values, "psi", spec.max_shift)
    p = _p_value(stats, s_values, c_values) if out.drifted else 1.0
    failed = out.drifted and p < SHIFT_P
    where = f"the same {len(pairs)} rows" if same else f"{len(s)} and {len(c)} rows"
    return Check("shift", out.statistic, spec.max_shift,
                 Verdict.FAILED if failed else Verdict.PASSED,
                 f"PSI {out.statistic:.3f} between the versions' predictions on {where} "
                 f"(at most {spec.max_shift:g}"
                 + (f"; p {p:.3g}, {'' if failed else 'not '}significant)" if out.drifted else ")"))


#: the significance a shift beyond max_shift must also have to fail
SHIFT_P = 0.01


def _p_value(stats: Mapping[str, Any], stable: Any, candidate: Any) -> float:
    """Chi-square test that both samples come from one distribution, on the PSI's own bins."""
    import numpy as np
    from scipy.stats import chi2_contingency

    from cd4ml.stages.drift import bin_counts

    if stats.get("kind") == "categorical":
        labels = sorted(set(stable) | set(candidate))
        table = np.array([[list(stable).count(v) for v in labels],
                          [list(candidate).count(v) for v in labels]], dtype="float64")
    else:
        table = np.array([bin_counts(stats, np.asarray(stable, dtype="float64")),
                          bin_counts(stats, np.asarray(candidate, dtype="float64"))])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table)[1])
