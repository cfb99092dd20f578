"""The findings table: one row per check of one version, the same for the terminal and the
GitHub issue (so they never disagree)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cd4ml.watch.monitor import MonitorResult, VersionFinding

HEADERS = ("version", "check", "subject", "observed", "against", "status")


class Status(StrEnum):
    OK = "ok"
    BREACH = "BREACH"
    INFO = "info"  # shown, never judged (traffic, estimates)
    UNJUDGED = "not judged"  # too few rows or labels


@dataclass(frozen=True)
class Row:
    version: str
    check: str
    subject: str
    observed: str
    against: str
    status: Status

    def cells(self) -> tuple[str, ...]:
        return (self.version, self.check, self.subject, self.observed, self.against,
                str(self.status))


def rows(result: MonitorResult) -> list[Row]:
    """Every version's rows, then the servers' own account."""
    out: list[Row] = []
    for v in result.versions:
        out += version_rows(result.pipeline, v)
    for t in result.traffic:
        total = sum(t.requests.values())
        out.append(Row(f"{result.pipeline}:{t.model_version or '?'}", "server /metrics", t.url,
                       f"{total} /predict since {t.since or '?'}, {t.refused} refused, p50 "
                       f"{_ms(t.p50_ms)} p99 {_ms(t.p99_ms)}", "-", Status.INFO))
    return out


def version_rows(pipeline: str, v: VersionFinding) -> list[Row]:
    ref = f"{pipeline}:{v.model_version}"
    drift_status = Status.OK if v.judged else Status.UNJUDGED
    out = [Row(ref, "traffic", f"{v.first or '-'} .. {v.last or '-'}",
               f"{v.requests} requests, {v.rows} rows, {v.refused} refused "
               f"({v.refused_rate:.1%})", "-", Status.INFO)]
    for d in v.drift:
        out.append(Row(ref, "input drift", d.feature, f"{d.method} {_num(d.statistic)}",
                       f"<= {d.threshold:g}",
                       Status.BREACH if v.judged and d.drifted else drift_status))
    if v.prediction_drift is not None:
        d = v.prediction_drift
        out.append(Row(ref, "prediction drift", "held-out predictions",
                       f"{d.method} {_num(d.statistic)}", f"<= {d.threshold:g}",
                       Status.BREACH if v.judged and d.drifted else drift_status))
    breached = set(v.breaches)
    for q in v.quality:
        if not (q.missing or q.below_min or q.above_max or q.unseen):
            continue
        parts = [f"{n} {what}" for n, what in ((q.below_min, "below training min"),
                                               (q.above_max, "above training max"),
                                               (q.unseen, "unseen categories"),
                                               (q.missing, "missing")) if n]
        bad = any(b.startswith(f"out of range: {q.feature} ") for b in breached)
        out.append(Row(ref, "input quality", q.feature, ", ".join(parts),
                       f"{q.out_of_range_rate:.1%} out of range",
                       Status.BREACH if bad else Status.INFO))
    for r in v.realised:
        subject = r.metric + (f"[{r.slice}={r.slice_value}]" if r.slice else "")
        out.append(Row(ref, "realised", f"{subject} (n={r.rows})",
                       f"{_num(r.value)} [{_num(r.low)}, {_num(r.high)}]",
                       f"offline {_num(r.offline)}", Status.INFO if r.judged else Status.UNJUDGED))
    for o in v.rules:
        out.append(Row(ref, "rule", o.rule, _num(o.observed), o.reason,
                       Status.OK if o.passed else Status.BREACH))
    if v.estimate is not None:
        e = v.estimate
        out.append(Row(ref, "ESTIMATED", f"accuracy from confidence (n={e.rows})",
                       f"~{_num(e.accuracy)} (an estimate, not a measurement)",
                       f"offline {_num(e.offline)}", Status.INFO))
    for b in v.breaches:
        if b.startswith("refused requests"):
            out.append(Row(ref, "input quality", "refused requests", b, "-", Status.BREACH))
    return out


def markdown(result: MonitorResult) -> str:
    """The table in GitHub-flavoured markdown."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for r in rows(result):
        cells = [c.replace("|", "\\|") for c in r.cells()]
        if r.status is Status.BREACH:
            cells[-1] = "**BREACH**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return "NaN" if math.isnan(v) else f"{v:.4g}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"<= {v:g} ms"
