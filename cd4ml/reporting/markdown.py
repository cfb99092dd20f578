"""A run's report as markdown, read from the store: the one text that GitHub shows as the
pull-request comment, the check run's summary and ``$GITHUB_STEP_SUMMARY``, with the verdict for
the commit status and the check run's annotations on the spec lines of failed gates.

Pure rendering: nothing here talks to GitHub (:mod:`cd4ml.reporting.post` does), so the report
is the same whether it is posted, written to a file or printed.

The chart of gated metrics across recent runs is a mermaid ``xychart-beta`` block: GitHub renders
it itself, so no plot of a private repository is uploaded anywhere.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import StoreError
from cd4ml.reporting.summary import MetricRow, RunSummary, summarize
from cd4ml.spec import LOWER_IS_BETTER
from cd4ml.states import CommitState, MetricScope, RunStatus

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import RuleOutcome, Store

MAX_CHARTS = 4


@dataclass(frozen=True)
class Annotation:
    """A check-run annotation on a line of the pipeline spec."""

    path: str
    start_line: int
    end_line: int
    annotation_level: str  # notice | warning | failure
    message: str
    title: str


@dataclass(frozen=True)
class Report:
    """What is said about one run, in every form GitHub takes."""

    pipeline: str
    run_id: str
    state: CommitState  # the commit status
    title: str  # one line; also the status description (cut to 140)
    markdown: str  # comment, check-run summary and step summary (without the marker)
    annotations: tuple[Annotation, ...]

    @property
    def conclusion(self) -> str | None:
        """The check run's conclusion; None while the run is still going."""
        return None if self.state is CommitState.PENDING else self.state


@dataclass(frozen=True)
class Links:
    """Where the report points: ``repository_url`` (e.g. https://github.com/OWNER/NAME) with
    ``sha`` makes the gate rules links to their spec lines; ``run_url`` is the workflow run."""

    repository_url: str | None = None
    sha: str | None = None
    run_url: str | None = None
    actor: str | None = None


def marker(pipeline: str) -> str:
    """The hidden line that finds a pipeline's one comment on a pull request."""
    return f"<!-- cd4ml:{pipeline} -->"




def build_report(spec: Spec, store: Store, run_id: str, links: Links | None = None,
                 history: int = 10) -> Report:
    """Render the report of ``run_id`` from the store (and ``history`` recent runs for the chart)."""
    links = links or Links()
    s = summarize(store, run_id)
    if s.run.pipeline != spec.name:
        raise StoreError(f"run {run_id} is of pipeline {s.run.pipeline!r}, not {spec.name!r}; "
                         f"pass -p {s.run.pipeline}")
    state, title = _verdict(s)
    sha = links.sha or s.run.git_commit
    spec_file = _repo_relative(spec.path)
    link = f"{links.repository_url}/blob/{sha}/{spec_file}" if links.repository_url and sha else None
    icon = {CommitState.SUCCESS: "✅", CommitState.FAILURE: "❌", CommitState.PENDING: "⏳"}[state]
    parts = [f"### {icon} cd4ml · {spec.name} · {title}", _byline(s, links, sha),
             f"> {s.baseline[0].upper() + s.baseline[1:]}."]
    if s.cached:
        parts.append(f"> Inputs unchanged: results reused from run `{s.source.id}`.")
    if s.run.error:
        parts.append(f"> **Error:** {_cell(s.run.error)}")
    parts += [_metrics_section(s), _gates_section(s, link), _validation_section(s),
              _charts_section(spec, store, history)]
    parts.append(f"<sub>cd4ml · run `{s.run.id}` · pipeline spec `{spec_file}`</sub>")
    markdown = "\n\n".join(p for p in parts if p) + "\n"
    return Report(pipeline=spec.name, run_id=s.run.id, state=state, title=title,
                  markdown=markdown, annotations=_annotations(s, spec_file))


def _verdict(s: RunSummary) -> tuple[CommitState, str]:
    state, title = _outcome(s)
    return state, title + (f" · now {s.state}" if s.state and s.model and s.model.blessed else "")


def _outcome(s: RunSummary) -> tuple[CommitState, str]:
    model = f"model v{s.model.version}" if s.model else "no model"
    gate, status = s.gate, s.source.status
    if (s.validation is not None and not s.validation.success
            and (gate is None or status is RunStatus.VALIDATION_FAILED)):
        failed = sum(1 for e in s.validation.expectations if not e.get("success", False))
        drifted = sum(1 for d in s.validation.drift if d.get("drifted"))
        return (CommitState.FAILURE,
                f"data validation failed ({failed} expectation(s), {drifted} drifted feature(s))")
    if gate is not None:
        rules = gate.rules
        bad = sum(1 for r in rules if not r.passed)
        if gate.overridden:
            return (CommitState.SUCCESS,
                    f"{model} blessed by override ({bad} of {len(rules)} gate check(s) failed)")
        if gate.passed:
            return CommitState.SUCCESS, f"{model} blessed ({len(rules)} gate check(s) passed)"
        return (CommitState.FAILURE,
                f"{model} not blessed ({bad} of {len(rules)} gate check(s) failed)")
    if s.run.status.failed or status.failed:
        return CommitState.FAILURE, f"run {s.run.status.replace('_', ' ')}"
    if s.run.status is RunStatus.SUCCEEDED:
        return CommitState.SUCCESS, f"run succeeded ({model})"
    return CommitState.PENDING, f"run {s.run.status}"


def _byline(s: RunSummary, links: Links, sha: str | None) -> str:
    bits = [f"run `{s.run.id}`"]
    if sha:
        bits.append(f"commit `{sha[:7]}`")
    if s.run.branch:
        bits.append(f"branch `{s.run.branch}`")
    actor = s.run.actor or links.actor
    if actor:
        bits.append(f"by {actor}")
    if links.run_url:
        bits.append(f"[workflow run]({links.run_url})")
    return " · ".join(bits)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(v: Any) -> str:
    f = _num(v)
    return "—" if f is None else f"{f:.4g}"


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _delta(row: MetricRow) -> str:
    """Signed change against production, 🟢 better, 🔴 worse (emoji render everywhere on
    GitHub, colour markup does not)."""
    d = row.delta
    if d is None:
        return "—"
    if abs(d) < 1e-12:
        return "±0 ⚪"
    better = (d < 0) if row.name in LOWER_IS_BETTER else (d > 0)
    return f"{d:+.4g} {'🟢' if better else '🔴'}"


def _rule_results(s: RunSummary) -> dict[tuple[str, str, str], list[RuleOutcome]]:
    out: dict[tuple[str, str, str], list[RuleOutcome]] = {}
    for r in s.gate.rules if s.gate else ():
        out.setdefault((r.metric, r.slice or "", r.slice_value or ""), []).append(r)
    return out


def _metrics_section(s: RunSummary) -> str:
    if not s.metrics:
        return ""
    prod_version = next((m.production_version for m in s.metrics if m.production_version), None)
    rules = _rule_results(s)
    prod = f"production v{prod_version}" if prod_version else "production"
    lines = [f"#### Metrics on the held-out rows: candidate vs {prod}", "",
             f"| metric | slice | candidate | {prod} | delta | gate |",
             "|---|---|---:|---:|---:|---|"]
    for row in s.metrics:
        found = rules.get((row.name, row.slice, row.slice_value), [])
        if not found:
            gate = "—"
        elif all(r.passed for r in found):
            gate = "✅ passed"
        else:
            gate = "❌ " + "; ".join(_cell(r.reason) for r in found if not r.passed)
        where = f"{row.slice}={row.slice_value}" if row.slice else ""
        lines.append(f"| {row.name} | {_cell(where)} | {_fmt(row.candidate)} | "
                     f"{_fmt(row.production)} | {_delta(row)} | {gate} |")
    return "\n".join(lines)


def _gates_section(s: RunSummary, link: str | None) -> str:
    if s.gate is None:
        return ""
    g = s.gate
    lines = ["#### Gates", ""]
    if g.overridden:
        lines += [f"> ⚠️ **Gate overridden** by {g.override_by}: {_cell(g.override_reason or '')}", ""]
    lines += ["| | rule | observed | threshold | production | reason |", "|---|---|---:|---:|---:|---|"]
    for r in g.rules:
        name = _cell(r.rule)
        if link and r.line:
            name = f"[{name}]({link}#L{r.line})"
        lines.append(f"| {'✅' if r.passed else '❌'} | {name} | {_fmt(r.observed)} | "
                     f"{_fmt(r.threshold)} | {_fmt(r.baseline)} | {_cell(r.reason)} |")
    return "\n".join(lines)


def _drifted(d: dict) -> str:
    if not d.get("drifted"):
        return "no"
    if d.get("accepted_by"):
        return f"🟠 yes, accepted by {_cell(d['accepted_by'])}: {_cell(d.get('accepted_reason') or '')}"
    return "🔴 yes"


def _validation_section(s: RunSummary) -> str:
    v = s.validation
    if v is None:
        return ""
    exps, drift = v.expectations or [], v.drift or []
    failed = [e for e in exps if not e.get("success", False)]
    drifted = [d for d in drift if d.get("drifted")]
    head = "✅" if v.success else "❌"
    against = f" against v{v.baseline_version}'s training data" if v.baseline_version else ""
    method = drift[0].get("method", "") if drift else ""
    summary = (f"{head} {len(exps) - len(failed)} of {len(exps)} expectations met"
               + (f" (suite `{v.suite}`)" if v.suite else "") + " · "
               + (f"{len(drifted)} of {len(drift)} features drifted ({method}{against})" if drift
                  else "no drift check"))
    lines = ["#### Data validation", "", summary]
    if failed:
        lines += ["", f"<details><summary>Failed expectations ({len(failed)})</summary>", "",
                  "| expectation | column | observed | unexpected | examples |", "|---|---|---|---:|---|"]
        for e in failed:
            examples = ", ".join(str(x) for x in (e.get("unexpected_examples") or [])[:5])
            lines.append(f"| {_cell(e.get('expectation', ''))} | {_cell(e.get('column') or '')} | "
                         f"{_cell(_short(e.get('observed')))} | {_cell(e.get('unexpected_count') or '')} | "
                         f"{_cell(examples)} |")
        lines += ["", "</details>"]
    if drift:
        lines += ["", f"<details><summary>Drift per feature ({len(drifted)} drifted)</summary>", "",
                  "| feature | method | statistic | threshold | drifted |", "|---|---|---:|---:|---|"]
        for d in sorted(drift, key=lambda d: (not d.get("drifted"), str(d.get("feature")))):
            lines.append(f"| {_cell(d.get('feature', ''))} | {d.get('method', '')} | "
                         f"{_fmt(d.get('statistic'))} | {_fmt(d.get('threshold'))} | "
                         f"{_drifted(d)} |")
        lines += ["", "</details>"]
    return "\n".join(lines)


def _short(v: Any, limit: int = 60) -> str:
    text = _fmt(v) if isinstance(v, float) else str(v if v is not None else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _history(spec: Spec, store: Store, metrics: list[str], limit: int) -> list[tuple[str, dict[str, float]]]:
    """(label, {metric: value}) of the pipeline's recent runs that computed a gated metric,
    oldest first. A run served from cache repeats another and is left out."""
    out: list[tuple[str, dict[str, float]]] = []
    for run in store.runs(spec.name, limit=limit * 3):
        if run.reused_from:
            continue
        values = {m.name: m.value for m in store.metrics(run.id)
                  if m.scope is MetricScope.CANDIDATE and not m.slice and m.name in metrics and m.value is not None}
        if not values:
            continue
        model = store.model_for_run(run.id)
        out.append((f"v{model.version}" if model else run.id[:7], values))
        if len(out) == limit:
            break
    return out[::-1]


def _charts_section(spec: Spec, store: Store, limit: int) -> str:
    metrics = list(dict.fromkeys(g.metric for g in spec.gates))[:MAX_CHARTS]
    points = _history(spec, store, metrics, limit) if metrics else []
    if not points:
        return ""
    blocks = [f"#### Gated metrics over the last {len(points)} run(s)"]
    for metric in metrics:
        series = [(label, values[metric]) for label, values in points if metric in values]
        if not series:
            continue
        limits = [(k, float(getattr(g, k))) for g in spec.gates if g.metric == metric and not g.slice
                  for k in ("min", "max") if getattr(g, k) is not None]
        blocks.append(_xychart(metric, series, limits))
    return "\n\n".join(blocks)


def _xychart(metric: str, series: list[tuple[str, float]], limits: list[tuple[str, float]]) -> str:
    values = [v for _, v in series]
    everything = values + [t for _, t in limits]
    lo, hi = min(everything), max(everything)
    pad = (hi - lo) * 0.1 or max(abs(hi) * 0.05, 0.01)
    lo, hi = lo - pad, hi + pad
    if min(everything) >= 0:
        lo = max(lo, 0.0)
    if max(everything) <= 1 and min(everything) >= 0:
        hi = min(hi, 1.0)
    gate = ", ".join(f"{k} {t:g}" for k, t in limits)
    title = metric + (f" (gate line: {gate})" if gate else "")
    labels = ", ".join(f'"{label}"' for label, _ in series)
    lines = ["```mermaid", "xychart-beta", f'    title "{title}"', f"    x-axis [{labels}]",
             f'    y-axis "{metric}" {lo:.4g} --> {hi:.4g}',
             f"    line [{', '.join(f'{v:.4g}' for v in values)}]"]
    for _, t in limits:
        lines.append(f"    line [{', '.join(f'{t:g}' for _ in values)}]")
    lines.append("```")
    return "\n".join(lines)


def _repo_relative(path: Path) -> str:
    """The spec's path from the repository root, as annotations and links need it."""
    path = Path(path).resolve()
    roots = [Path(os.environ["GITHUB_WORKSPACE"])] if os.environ.get("GITHUB_WORKSPACE") else []
    roots += [p for p in path.parents if (p / ".git").exists()][:1]
    for root in roots:
        try:
            return path.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return path.name


def _annotations(s: RunSummary, spec_file: str) -> tuple[Annotation, ...]:
    if s.gate is None:
        return ()
    level = "warning" if s.gate.overridden else "failure"
    return tuple(
        Annotation(path=spec_file, start_line=r.line, end_line=r.line,
                   annotation_level=level, title=f"gate failed: {r.rule}"[:255],
                   message=r.reason + (" (overridden)" if s.gate.overridden else ""))
        for r in s.gate.rules if not r.passed and r.line)
