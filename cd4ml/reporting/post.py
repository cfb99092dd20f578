"""Posting a run's report (:mod:`cd4ml.reporting.markdown`) to GitHub: the commit status
``cd4ml/<pipeline>``, a check run with the summary and annotations, the one pull-request comment
updated in place, and ``$GITHUB_STEP_SUMMARY``.

:func:`report_run` is what ``cd4ml report`` and ``cd4ml run --report`` call. With no token the
report goes to a file (``.cd4ml/reports/<run>.md``) for the caller to print, and the pipeline goes
on; a tracker failure is a warning unless the config is strict.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import StoreError, TrackerError
from cd4ml.events import StageProgress, StageWarning, emit
from cd4ml.integrations.github import GitHubConfig, GitHubReporter
from cd4ml.paths import reports_dir
from cd4ml.reporting.markdown import Links, Report, build_report, marker
from cd4ml.states import CommitState

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import Store


@dataclass(frozen=True)
class ReportResult:
    """What :func:`report_run` did. ``posted`` is true when everything reached GitHub;
    otherwise ``file`` holds the report and the caller prints ``markdown``."""

    run_id: str
    pipeline: str
    state: CommitState
    title: str
    markdown: str
    sha: str | None
    posted: bool
    file: Path | None
    step_summary: Path | None
    comment_url: str | None
    check_run_url: str | None
    warnings: tuple[str, ...]


def links(config: GitHubConfig) -> Links:
    """What the report links to, from where it is posted."""
    return Links(repository_url=f"{config.server_url}/{config.repository}" if config.repository else None,
                 sha=config.sha, run_url=config.run_url, actor=config.actor)


def report_started(spec: Spec, run_id: str | None = None, config: GitHubConfig | None = None) -> None:
    """A pending commit status when a pipeline starts, so the pull request shows it running.
    Warns (never raises) unless the config is strict; does nothing without a token."""
    config = config or GitHubConfig.from_env()
    if not config.enabled or not config.sha:
        return
    try:
        GitHubReporter(config).set_status(f"cd4ml/{spec.name}", CommitState.PENDING,
                                          f"running{f' (run {run_id})' if run_id else ''}")
    except TrackerError as e:
        if config.strict:
            raise
        emit(StageWarning("report", str(e)))


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
    report = build_report(spec, store, run.id, links(config))
    warnings: list[str] = []
    step = _step_summary(report, warnings)
    comment_url = check_url = None
    posted = False
    if not config.enabled:
        emit(StageProgress("report", "no GITHUB_TOKEN/GITHUB_REPOSITORY: report kept locally"))
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
        emit(StageWarning("report", w))
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

    attempt(lambda: gh.set_status(context, CommitState.PENDING, f"reporting run {report.run_id}"))
    check_id = attempt(lambda: gh.create_check_run(context, external_id=report.run_id))
    comment_url = attempt(lambda: gh.upsert_comment(marker(spec.name),
                                                    f"{marker(spec.name)}\n{report.markdown}"))
    if check_id is not None:
        check_url = attempt(lambda: gh.complete_check_run(
            check_id, report.conclusion, f"{spec.name}: {report.title}", report.markdown,
            [asdict(a) for a in report.annotations]))
    if report.state is not CommitState.PENDING:
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
