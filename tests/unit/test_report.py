"""The report read from store records: verdicts, the metrics table, gates, validation, the
mermaid chart, annotations; the no-token path (file, stdout, step summary); the GitHub config
read from a workflow's variables; which answers are retried."""

from __future__ import annotations

import json
import re

import pytest
import requests

from cd4ml.cli import main
from cd4ml.errors import StoreError, TrackerError
from cd4ml.integrations.github import GitHubConfig, _retry_wait
from cd4ml.reporting.markdown import Links, build_report, marker
from cd4ml.reporting.post import report_run
from cd4ml.store import Store


def _rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading``."""
    section = markdown.split(heading, 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]


def test_the_report_names_its_baseline_and_the_versions_state_now(spec, store, record_gated_run):
    # nothing served in production: relative rules passed, and the report says so
    run_id = record_gated_run(store, spec)
    report = build_report(spec, store, run_id)
    assert "> Baseline: none - nothing serves in the last environment yet" in report.markdown
    assert report.title.endswith("· now not deployed")
    # later the version was deployed, rolled back and marked bad: an old report must not
    # still say only "blessed"
    model = store.model_for_run(run_id)
    dep = store.start_deployment(spec.name, "production", model.id, "img", "local", "deploy", "ana")
    store.finish_deployment(dep.id, "rolled_back")
    store.set_model_flags(model.id, bad=True)
    assert build_report(spec, store, run_id).title.endswith("· now rolled back and marked bad; "
                                                             "not deployed")
    other = record_gated_run(store, spec, production=(0.9, 0.94, 0.88), production_version=3)
    assert "> Baseline: wine:3, the version serving in production then." in \
        build_report(spec, store, other).markdown


def test_a_blessed_run_reports_success_with_metrics_against_production(spec, store, record_gated_run):
    run_id = record_gated_run(store, spec, accuracy=0.93, f1=0.92, production=(0.9, 0.94, 0.88),
                        production_version=3)
    report = build_report(spec, store, run_id)
    assert report.state == "success" and report.conclusion == "success"
    assert "blessed (5 gate check(s) passed)" in report.title
    rows = {(r[0], r[1]): r for r in _rows(report.markdown, "#### Metrics")}
    assert rows[("accuracy", "")][2:5] == ["0.93", "0.9", "+0.03 🟢"]
    assert rows[("f1_macro", "")][4] == "-0.02 🔴"  # worse, yet within the allowed drop
    assert rows[("f1_macro", "")][5] == "✅ passed"
    assert rows[("accuracy", "alcohol_level=low")][3] == "0.88"
    assert "candidate vs production v3" in report.markdown
    assert report.annotations == ()


def test_a_failed_gate_reports_failure_with_reasons_and_annotations(spec, store, record_gated_run):
    run_id = record_gated_run(store, spec, accuracy=0.8, low=0.7)
    report = build_report(spec, store, run_id)
    assert report.state == "failure"
    assert "not blessed (2 of 5 gate check(s) failed)" in report.title
    gates = _rows(report.markdown, "#### Gates")
    assert ["❌", "accuracy >= 0.85", "0.8", "0.85", "0.9", "0.8 < 0.85"] in gates
    metrics = {(r[0], r[1]): r for r in _rows(report.markdown, "#### Metrics")}
    assert metrics[("accuracy", "alcohol_level=low")][5] == "❌ 0.7 < 0.75"
    # annotations sit on the spec lines of the failed rules, relative to the repository root
    lines = (spec.path.read_text().splitlines())
    assert {(a.path, a.start_line) for a in report.annotations} == {
        ("pipelines/wine.yaml", spec.gates[0].line), ("pipelines/wine.yaml", spec.gates[2].line)}
    assert "metric: accuracy" in lines[spec.gates[0].line - 1]
    assert all(a.annotation_level == "failure" for a in report.annotations)


def test_an_override_is_success_but_says_so(spec, store, record_gated_run):
    run_id = record_gated_run(store, spec, accuracy=0.8, override_by="alice")
    report = build_report(spec, store, run_id)
    assert report.state == "success"
    assert "blessed by override" in report.title
    assert "**Gate overridden** by alice: known label noise" in report.markdown
    assert report.annotations and all(a.annotation_level == "warning" for a in report.annotations)


def test_failed_validation_lists_expectations_and_drift(spec, store, record_gated_run):
    run_id = record_gated_run(store, spec, validation_ok=False)
    report = build_report(spec, store, run_id)
    assert report.state == "failure"
    assert report.title.startswith("data validation failed (1 expectation(s), 1 drifted")
    assert "❌ 1 of 2 expectations met (suite `wine`) · 1 of 2 features drifted (psi)" in report.markdown
    failed = _rows(report.markdown, "Failed expectations")
    assert failed == [["expect_column_values_to_be_between", "ash", "", "4", "3.2, 3.4"]]
    drift = _rows(report.markdown, "Drift per feature")
    assert drift[0] == ["ash", "psi", "0.41", "0.25", "🔴 yes"]


def test_rendering_needs_no_github(spec, store, record_gated_run):
    """The renderer is pure: importing it loads no GitHub client, and links come from plain
    values (a rule links to its spec line at the commit)."""
    import subprocess
    import sys

    probe = ("import sys, cd4ml.reporting.markdown; "
             "print(sorted(m for m in sys.modules if 'github' in m))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    run_id = record_gated_run(store, spec, accuracy=0.8)
    md = build_report(spec, store, run_id, Links(repository_url="https://ghe.example/o/r",
                                                 sha="c" * 40, run_url="https://ghe.example/run/1",
                                                 actor="dana")).markdown
    line = spec.gates[0].line
    assert f"[accuracy >= 0.85](https://ghe.example/o/r/blob/{'c' * 40}/pipelines/wine.yaml#L{line})" in md
    assert "commit `ccccccc`" in md and "[workflow run](https://ghe.example/run/1)" in md


def test_a_running_run_without_results_is_pending(spec, store):
    run = store.start_run(spec.name)
    report = build_report(spec, store, run.id)
    assert report.state == "pending" and report.conclusion is None


def test_a_run_of_another_pipeline_is_refused(spec, store):
    run = store.start_run("diabetes")
    with pytest.raises(StoreError, match="pipeline 'diabetes'"):
        build_report(spec, store, run.id)


def test_the_chart_follows_gated_metrics_across_runs_oldest_first(spec, store, record_gated_run):
    for acc in (0.86, 0.88, 0.91):
        last = record_gated_run(store, spec, accuracy=acc)
    cached = store.start_run(spec.name)  # served from cache: it repeats another run
    store.finish_run(cached.id, "succeeded", reused_from=last)
    md = build_report(spec, store, last).markdown
    charts = re.findall(r"```mermaid\n(.*?)```", md, re.DOTALL)
    assert len(charts) == 2  # accuracy and f1_macro: the metrics the gates read
    acc = charts[0]
    assert acc.startswith("xychart-beta")
    assert 'x-axis ["v1", "v2", "v3"]' in acc
    assert "line [0.86, 0.88, 0.91]" in acc
    assert "line [0.85, 0.85, 0.85]" in acc  # the gate's minimum, drawn as a line
    low, high = map(float, re.search(r'y-axis "accuracy" ([\d.]+) --> ([\d.]+)', acc).groups())
    assert low < 0.85 and 0.91 < high <= 1.0


def test_report_without_a_token_goes_to_a_file_and_the_step_summary(spec, store, record_gated_run,
                                                                     tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run_id = record_gated_run(store, spec)
    result = report_run(spec, store, None, GitHubConfig.from_env())  # the latest run
    assert result.run_id == run_id and not result.posted
    assert result.file == tmp_path / ".cd4ml" / "reports" / f"{run_id}.md"
    assert result.file.read_text() == result.markdown
    assert summary.read_text() == "earlier step\n" + result.markdown + "\n"
    assert marker("wine") not in result.markdown  # the marker belongs to the comment only


def test_report_run_needs_a_run(spec, store):
    with pytest.raises(StoreError, match="no runs of wine yet"):
        report_run(spec, store, None, GitHubConfig())


def test_cli_without_token_prints_the_report(spec, record_gated_run, tmp_path, capsys, pipelines_dir):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store(url) as store:
        run_id = record_gated_run(store, spec, accuracy=0.8)
    out_file = tmp_path / "out" / "report.md"
    code = main(["report", run_id, "-p", str(pipelines_dir / "wine.yaml"), "--store", url,
                 "--output", str(out_file)])
    out = capsys.readouterr()
    assert code == 0
    assert out.out.startswith("### ❌ cd4ml · wine · model v1 not blessed")
    assert out_file.read_text() == out.out
    assert f"report written to {out_file}" in out.err


# ----------------------------------------------------------------------------- the config


def test_config_reads_a_pull_request_workflow(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 7, "pull_request": {"number": 7, "head": {"sha": "a" * 40}}}))
    env = {"GITHUB_TOKEN": "ghs_secret", "GITHUB_API_URL": "https://ghe.example/api/v3/",
           "GITHUB_SERVER_URL": "https://ghe.example", "GITHUB_REPOSITORY": "o/r",
           "GITHUB_SHA": "b" * 40, "GITHUB_EVENT_PATH": str(event), "GITHUB_RUN_ID": "99",
           "GITHUB_ACTOR": "dana"}
    c = GitHubConfig.from_env(env)
    assert (c.api_url, c.repository, c.pr, c.run_id, c.actor) == (
        "https://ghe.example/api/v3", "o/r", 7, "99", "dana")
    assert c.sha == "a" * 40  # the pull request's head, not the merge commit GitHub made
    assert c.run_url == "https://ghe.example/o/r/actions/runs/99"
    assert c.enabled and "ghs_secret" not in repr(c)
    over = GitHubConfig.from_env(env, repository="x/y", sha="c" * 40, pr=None, strict=True)
    assert (over.repository, over.sha, over.pr, over.strict) == ("x/y", "c" * 40, 7, True)


def test_config_on_push_has_no_pull_request(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main", "head_commit": {"id": "d" * 40}}))
    c = GitHubConfig.from_env({"GITHUB_SHA": "d" * 40, "GITHUB_EVENT_PATH": str(event)})
    assert (c.sha, c.pr, c.enabled, c.api_url) == ("d" * 40, None, False, "https://api.github.com")


def test_config_finds_the_pull_request_of_a_comment_event(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"issue": {"number": 9, "pull_request": {"url": "x"}}}))
    assert GitHubConfig.from_env({"GITHUB_EVENT_PATH": str(event)}).pr == 9
    event.write_text(json.dumps({"issue": {"number": 9}}))  # a plain issue
    assert GitHubConfig.from_env({"GITHUB_EVENT_PATH": str(event)}).pr is None


def test_config_refuses_a_malformed_repository():
    with pytest.raises(TrackerError, match="not OWNER/NAME"):
        GitHubConfig.from_env({}, repository="just-a-name")


# ----------------------------------------------------------------------------- retry decisions


def _response(status: int, **headers: str) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.headers.update(headers)
    return r


@pytest.mark.parametrize(("method", "status", "headers", "retried"), [
    # may have been done: the reporter looks for the object before creating it again
    ("POST", 502, {}, False),
    ("POST", 503, {}, False),
    ("PATCH", 502, {}, True),
    ("GET", 500, {}, True),
    ("POST", 500, {}, False),  # may have been done: not repeated
    ("POST", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}, True),
    ("POST", 403, {"x-ratelimit-remaining": "12"}, False),  # a real refusal
    ("POST", 429, {"retry-after": "1"}, True),
    ("POST", 429, {"retry-after": "3600"}, False),  # longer than max_wait: give up now
    ("POST", 422, {}, False),
    ("GET", 404, {}, False),
])
def test_which_answers_are_retried(method, status, headers, retried):
    policy = GitHubConfig(backoff=0.5, max_wait=60)
    decision = _retry_wait(policy, method, _response(status, **headers), attempt=0)
    assert (decision is not None) == retried
    if decision and "retry-after" in headers:
        assert decision[0] == float(headers["retry-after"])
    if decision and status >= 500:
        assert 0.375 <= decision[0] <= 0.5
