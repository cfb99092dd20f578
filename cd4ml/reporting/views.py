"""Text views of recorded results shared by commands (``run``'s summary, ``show``)."""

from __future__ import annotations

from cd4ml.reporting.console import fmt, paint, table
from cd4ml.reporting.summary import RunSummary


def gate_lines(summary: RunSummary) -> list[str]:
    g = summary.gate
    if g is None:
        return []
    rows = [(o.rule, o.observed, o.threshold, o.baseline, "pass" if o.passed else "FAIL", o.reason)
            for o in g.rules]
    out = ["", table(["gate rule", "observed", "threshold", "production", "result", "why"], rows)]
    if g.overridden:
        out.append(paint(f"OVERRIDDEN by {g.override_by}: {g.override_reason}", "yellow"))
    verdict = "blessed" if g.blessed else "not blessed"
    out.append(summary.baseline)
    out.append(f"gate: {'passed' if g.passed else 'failed'} -> {verdict}"
               + (f" (now: {summary.state})" if summary.state else ""))
    return out


def validation_lines(summary: RunSummary) -> list[str]:
    v = summary.validation
    if v is None:
        return []
    failed = [e for e in v.expectations if not e.get("success")]
    drifted = [d for d in v.drift if d.get("drifted")]
    out = [f"validation: {len(v.expectations) - len(failed)}/{len(v.expectations)} expectations "
           f"passed; drift {len(drifted)}/{len(v.drift)} features over threshold"
           + ("" if v.drift or v.baseline_version else " (no production model to compare with)")]
    for e in failed:
        col = f" on {e.get('column')}" if e.get("column") else ""
        ex = e.get("unexpected_examples") or []
        out.append(f"  ✗ {e.get('expectation')}{col}: observed {fmt(e.get('observed'))}"
                   + (f", e.g. {', '.join(map(str, ex[:3]))}" if ex else ""))
    for d in drifted:
        accepted = (f" (ACCEPTED by {d['accepted_by']}: {d.get('accepted_reason')})"
                    if d.get("accepted_by") else "")
        out.append(f"  ✗ drift {d.get('feature')}: {d.get('method')} {fmt(d.get('statistic'))} "
                   f"> {fmt(d.get('threshold'))}{accepted}")
    return out


def metric_lines(summary: RunSummary) -> list[str]:
    if not summary.metrics:
        return []
    rows = []
    for m in summary.metrics:
        where = f"{m.slice}={m.slice_value}" if m.slice else "all"
        delta = m.delta
        rows.append((m.name, where, m.candidate, m.production,
                     "-" if delta is None else f"{delta:+.4g}"))
    prod = next((m.production_version for m in summary.metrics if m.production_version), None)
    head = "production" + (f" (v{prod})" if prod else "")
    return ["", table(["metric", "rows", "candidate", head, "delta"], rows)]


def summary_text(summary: RunSummary) -> str:
    r = summary.run
    model = summary.model.ref if summary.model else "-"
    lines = [f"run {r.id}  pipeline {r.pipeline}  status {r.status}  model {model}"]
    if summary.cached:
        lines.append(f"(reused run {summary.source.id}: data, spec and code unchanged)")
    if r.error:
        lines.append(paint(f"error: {r.error}", "red"))
    lines += validation_lines(summary) + metric_lines(summary) + gate_lines(summary)
    return "\n".join(lines)
