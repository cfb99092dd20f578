"""Asking for retraining: a breach opens (or updates) the pipeline and environment's one
monitoring issue on GitHub, with the findings table and the lineage of each version
concerned, and can dispatch the retraining workflow. Nothing here promotes or deploys: the
retrained model goes through the gates and approvals like any other.

With no GitHub token the issue's text goes to ``reports_dir()/monitor-<pipeline>-<env>.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.events import StageProgress, emit

if TYPE_CHECKING:
    from cd4ml.integrations.github import GitHubConfig
    from cd4ml.spec import Spec
    from cd4ml.store import Store
    from cd4ml.watch.monitor import MonitorResult

#: the label of monitoring issues, by which cd4ml finds its own
LABEL = "cd4ml-monitoring"


@dataclass(frozen=True)
class Reported:
    issue: int | None
    url: str | None
    created: bool
    dispatched: str | None  # the workflow dispatched, if any
    file: str | None  # where the text went when GitHub was not told

    @property
    def summary(self) -> str:
        if self.file:
            return f"no GitHub token: the monitoring issue's text is in {self.file}"
        if self.issue is None:
            return "no breach: no monitoring issue opened"
        line = f"{'opened' if self.created else 'updated'} monitoring issue #{self.issue} {self.url}"
        return line + (f"; dispatched {self.dispatched}" if self.dispatched else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def marker(pipeline: str, environment: str) -> str:
    return f"<!-- cd4ml-monitor:{pipeline}/{environment} -->"


def body(spec: Spec, store: Store, result: MonitorResult) -> str:
    """The issue's text: the verdict, the findings table, the lineage of each breached version."""
    from cd4ml.reporting.lineage import lineage
    from cd4ml.watch import findings

    out = [marker(result.pipeline, result.environment),
           f"## cd4ml monitoring: {result.pipeline} in {result.environment}", "",
           (f"Window {result.window.start} .. {result.window.end}: "
           f"{result.log['predictions']} predictions, {result.log['refused']} refused."), ""]
    for v in result.versions:
        if v.breaches:
            out.append(f"**{result.pipeline}:{v.model_version}**: " + "; ".join(v.breaches))
    out += ["", findings.markdown(result), ""]
    for v in result.versions:
        if not v.breaches:
            continue
        lin = lineage(store, v.model_version, result.pipeline)
        image = lin.images[-1] if lin.images else None
        data = f" ({lin.dataset.path}, {lin.dataset.rows} rows)" if lin.dataset else ""
        r = lin.run
        out += [f"### Lineage of {lin.model.ref}", "",
                f"- data: sha256 `{r.data_hash or '-'}`{data}",
                (f"- run: `{r.id}`, commit `{r.git_commit or '-'}` on {r.branch or '-'} by "
                f"{r.actor or '-'}, spec `{r.spec_hash or '-'}`"),
                f"- model: {lin.model.ref}, sha256 `{lin.model.sha256}`",
                f"- image: {image.reference + (' ' + image.digest if image.digest else '') if image else '-'}",
                f"- serving now in: {', '.join(lin.environments) or 'nowhere'}", ""]
    out.append(f"Updated by `cd4ml monitor --report`; cd4ml never promotes by itself. `cd4ml "
               f"lineage {result.pipeline}:VERSION` shows the rest.")
    return "\n".join(out)


def report(spec: Spec, store: Store, result: MonitorResult, *, workflow: str | None = None,
           ref: str | None = None, config: GitHubConfig | None = None) -> Reported:
    """On a breach: open or update the issue and, if asked, dispatch ``workflow`` on ``ref``."""
    from cd4ml.integrations.github import GitHubConfig, GitHubReporter

    if not result.breached:
        return Reported(None, None, False, None, None)
    text = body(spec, store, result)
    gh = GitHubReporter(config or GitHubConfig.from_env())
    if not gh.enabled:
        from cd4ml.paths import reports_dir

        file = reports_dir() / f"monitor-{result.pipeline}-{result.environment}.md"
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        Path(file).write_text(text + "\n", encoding="utf-8")
        return Reported(None, None, False, None, str(file))
    breached = [v.model_version for v in result.versions if v.breaches]
    title = (f"cd4ml monitoring: {result.pipeline} in {result.environment} breached "
             f"(version {', '.join(map(str, breached))})")
    number, url, created = gh.upsert_issue(marker(result.pipeline, result.environment), title,
                                           text, LABEL)
    emit(StageProgress("monitor", f"{'opened' if created else 'updated'} issue #{number}"))
    dispatched = None
    if workflow:
        gh.dispatch_workflow(workflow, ref or "main")
        dispatched = workflow
    return Reported(number, url, created, dispatched, None)
