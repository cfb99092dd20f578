"""A run's report for GitHub: one markdown text read from the store, shown as the pull-request
comment, the check run's summary and ``$GITHUB_STEP_SUMMARY``, plus the commit status and the
check run's annotations on the spec lines of failed gates.

:func:`report_run` is what ``cd4ml report`` and ``cd4ml run --report`` call. With no token the
report goes to a file (``.cd4ml/reports/<run>.md``) for the caller to print, and the pipeline goes
on; a tracker failure is a warning unless the config is strict.

The chart of gated metrics across recent runs is a mermaid ``xychart-beta`` block: GitHub renders
it itself, so no plot of a private repository is uploaded anywhere.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import StoreError, TrackerError
from cd4ml.events import emit
from cd4ml.integrations.github import GitHubConfig, GitHubReporter
from cd4ml.paths import reports_dir
from cd4ml.reporting.summary import MetricRow, RunSummary, summarize
from cd4ml.spec import LOWER_IS_BETTER

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import Store

FAILED_RUN = {"validation_failed", "gate_failed", "failed"}
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
    state: str  # the commit status: success | failure | pending
    title: str  # one line; also the status description (cut to 140)
    markdown: str  # comment, check-run summary and step summary (without the marker)
    annotations: tuple[Annotation, ...]

    @property
    def conclusion(self) -> str | None:
        """The check run's conclusion; None while the run is still going."""
        return None if self.state == "pending" else self.state


@dataclass(frozen=True)
class ReportResult:
    """What :func:`report_run` did. ``posted`` is true when everything reached GitHub;
    otherwise ``file`` holds the report and the caller prints ``markdown``."""

    run_id: str
    pipeline: str
    state: str
    title: str
    markdown: str
    sha: str | None
    posted: bool
    file: Path | None
    step_summary: Path | None
    comment_url: str | None
    check_run_url: str | None
    warnings: tuple[str, ...]


def marker(pipeline: str) -> str:
    """The hidden line that finds a pipeline's one comment on a pull request."""
    return f"<!-- cd4ml:{pipeline} -->"


# ----------------------------------------------------------------------------- rendering


def build_report(spec: Spec, store: Store, run_id: str, config: GitHubConfig | None = None,
                 history: int = 10) -> Report:
    """Render the report of ``run_id`` from the store (and ``history`` recent runs for the chart)."""
    config = config or GitHubConfig()
    s = summarize(store, run_id)
    if s.run.pipeline != spec.name:
        raise StoreError(f"run {run_id} is of pipeline {s.run.pipeline!r}, not {spec.name!r}; "
                         f"pass -p {s.run.pipeline}")
    state, title = _verdict(s)
    sha = config.sha or s.run.git_commit
    spec_file = _repo_relative(spec.path)
    link = (f"{config.server_url}/{config.repository}/blob/{sha}/{spec_file}"
            if config.repository and sha else None)
    icon = {"success": "✅", "failure": "❌", "pending": "⏳"}[state]
    parts = [f"### {icon} cd4ml · {spec.name} · {title}", _byline(s, config, sha),
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


def _verdict(s: RunSummary) -> tuple[str, str]:
    state, title = _outcome(s)
    return state, title + (f" · now {s.state}" if s.state and s.model and s.model.blessed else "")


def _outcome(s: RunSummary) -> tuple[str, str]:
    model = f"model v{s.model.version}" if s.model else "no model"
    gate, status = s.gate, s.source.status
    if s.validation is not None and not s.validation.success and (gate is None or status == "validation_failed"):
        failed = sum(1 for e in s.validation.expectations if not e.get("success", False))
        drifted = sum(1 for d in s.validation.drift if d.get("drifted"))
        return "failure", f"data validation failed ({failed} expectation(s), {drifted} drifted feature(s))"
    if gate is not None:
        rules = gate.rules or []
        bad = sum(1 for r in rules if not r.get("passed"))
        if gate.overridden:
            return "success", f"{model} blessed by override ({bad} of {len(rules)} gate check(s) failed)"
        if gate.passed:
            return "success", f"{model} blessed ({len(rules)} gate check(s) passed)"
        return "failure", f"{model} not blessed ({bad} of {len(rules)} gate check(s) failed)"
    if s.run.status in FAILED_RUN or status in FAILED_RUN:
        return "failure", f"run {s.run.status.replace('_', ' ')}"
    if s.run.status == "succeeded":
        return "success", f"run succeeded ({model})"
    return "pending", f"run {s.run.status}"


def _byline(s: RunSummary, config: GitHubConfig, sha: str | None) -> str:
    bits = [f"run `{s.run.id}`"]
    if sha:
        bits.append(f"commit `{sha[:7]}`")
    if s.run.branch:
        bits.append(f"branch `{s.run.branch}`")
    actor = s.run.actor or config.actor
    if actor:
        bits.append(f"by {actor}")
    if config.run_url:
        bits.append(f"[workflow run]({config.run_url})")
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


def _rule_results(s: RunSummary) -> dict[tuple[str, str, str], list[dict]]:
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in (s.gate.rules if s.gate else []) or []:
        key = (r.get("metric") or "", r.get("slice") or "", str(r.get("slice_value") or ""))
        out.setdefault(key, []).append(r)
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
        elif all(r.get("passed") for r in found):
            gate = "✅ passed"
        else:
            gate = "❌ " + "; ".join(_cell(r.get("reason", "")) for r in found if not r.get("passed"))
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
    for r in g.rules or []:
        name = _cell(r.get("rule", ""))
        if link and r.get("line"):
            name = f"[{name}]({link}#L{r['line']})"
        lines.append(f"| {'✅' if r.get('passed') else '❌'} | {name} | {_fmt(r.get('observed'))} | "
                     f"{_fmt(r.get('threshold'))} | {_fmt(r.get('baseline'))} | {_cell(r.get('reason', ''))} |")
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
                  if m.scope == "candidate" and not m.slice and m.name in metrics and m.value is not None}
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
        Annotation(path=spec_file, start_line=int(r["line"]), end_line=int(r["line"]),
                   annotation_level=level, title=f"gate failed: {r.get('rule', '')}"[:255],
                   message=r.get("reason", "") + (" (overridden)" if s.gate.overridden else ""))
        for r in s.gate.rules or [] if not r.get("passed") and r.get("line"))


# ----------------------------------------------------------------------------- posting


def report_started(spec: Spec, run_id: str | None = None, config: GitHubConfig | None = None) -> None:
    """A pending commit status when a pipeline starts, so the pull request shows it running.
    Warns (never raises) unless the config is strict; does nothing without a token."""
    config = config or GitHubConfig.from_env()
    if not config.enabled or not config.sha:
        return
    try:
        GitHubReporter(config).set_status(f"cd4ml/{spec.name}", "pending",
                                          f"running{f' (run {run_id})' if run_id else ''}")
    except TrackerError as e:
        if config.strict:
            raise
        emit("warning", stage="report", message=str(e))


def report_run(spec: Spec, store: Store, run_id: str | None = None,
               config: GitHubConfig | None = None, *, output: str | Path | None = None) -> ReportResult:
    """Report a run (default: the pipeline's latest) to GitHub: commit status ``cd4ml/<pipeline>``
    (pending, then success or failure), a check run with the summary and annotations, the one
    pull-request comment updated in place, and ``$GITHUB_STEP_SUMMARY``.

    Without a token, or when GitHub fails (and the config is not strict), the report is written
    to ``output`` (default ``reports_dir()/<run>.md``) and ``posted`` is false; ``output`` given
    writes it there in any case."""
    config = config or GitHubConfig.from_env()
    if run_id is None:
        latest = store.runs(spec.name, limit=1)
        if not latest:
            raise StoreError(f"no runs of {spec.name} yet; run 'cd4ml run -p {spec.name}' first")
        run_id = latest[0].id
    run = store.run(run_id)
    if config.sha is None and run.git_commit:
        config = replace(config, sha=run.git_commit)
    report = build_report(spec, store, run.id, config)
    warnings: list[str] = []
    step = _step_summary(report, warnings)
    comment_url = check_url = None
    posted = False
    if not config.enabled:
        emit("progress", stage="report", message="no GITHUB_TOKEN/GITHUB_REPOSITORY: report kept locally")
    elif not config.sha:
        warnings.append("no commit to report on (GITHUB_SHA, --sha or the run's git commit)")
    else:
        posted, comment_url, check_url = _post(spec, report, config, warnings)
    file = None
    if output is not None or not posted:
        file = Path(output) if output is not None else reports_dir() / f"{run.id}.md"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(report.markdown, encoding="utf-8")
    for w in warnings:
        emit("warning", stage="report", message=w)
    return ReportResult(run_id=run.id, pipeline=spec.name, state=report.state, title=report.title,
                        markdown=report.markdown, sha=config.sha, posted=posted, file=file, step_summary=step,
                        comment_url=comment_url, check_run_url=check_url, warnings=tuple(warnings))


def _post(spec: Spec, report: Report, config: GitHubConfig,
          warnings: list[str]) -> tuple[bool, str | None, str | None]:
    """Each piece on its own, so that one refused permission does not silence the others."""
    gh = GitHubReporter(config)
    context = f"cd4ml/{spec.name}"
    comment_url = check_url = None
    ok = True

    def attempt(fn: Any) -> Any:
        nonlocal ok
        try:
            return fn()
        except TrackerError as e:
            if config.strict:
                raise
            ok = False
            warnings.append(str(e))
            return None

    attempt(lambda: gh.set_status(context, "pending", f"reporting run {report.run_id}"))
    check_id = attempt(lambda: gh.create_check_run(context, external_id=report.run_id))
    comment_url = attempt(lambda: gh.upsert_comment(marker(spec.name),
                                                    f"{marker(spec.name)}\n{report.markdown}"))
    if check_id is not None:
        check_url = attempt(lambda: gh.complete_check_run(
            check_id, report.conclusion, f"{spec.name}: {report.title}", report.markdown,
            [asdict(a) for a in report.annotations]))
    if report.state != "pending":
        attempt(lambda: gh.set_status(context, report.state, report.title))
    return ok, comment_url, check_url


def _step_summary(report: Report, warnings: list[str]) -> Path | None:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    try:
        with open(target, "a", encoding="utf-8") as f:
            f.write(report.markdown + "\n")
    except OSError as e:
        warnings.append(f"cannot write GITHUB_STEP_SUMMARY {target}: {e.strerror}")
        return None
    return Path(target)
