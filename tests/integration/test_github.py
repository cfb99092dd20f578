"""cd4ml against the local GitHub API server (tests/ghserver), over HTTP through github3.py:
what was posted, in which order, and what happens when GitHub fails or refuses."""

from __future__ import annotations

import logging
import re

import pytest
import requests

from cd4ml.cli import main
from cd4ml.errors import TrackerError
from cd4ml.events import StageWarning, listening
from cd4ml.integrations.github import GitHubConfig, GitHubReporter
from cd4ml.reporting.markdown import build_report, marker
from cd4ml.reporting.post import report_run
from tests.ghserver import (
    CHECK_RUN,
    CHECK_RUNS,
    COMMENT,
    COMMENTS,
    DEPLOYMENT_STATUSES,
    STATUSES,
    GitHubServer,
)
from tests.ghserver.mermaid import parse_errors


def _config(server: GitHubServer, **kw) -> GitHubConfig:
    values = {"token": server.token, "api_url": server.api_url, "server_url": server.url,
                  "repository": server.full_name, "run_id": "4242", "actor": "dana", "backoff": 0.01}
    return GitHubConfig(**{**values, **kw})


def _states(server: GitHubServer) -> list[str]:
    return [c.json["state"] for c in server.calls("POST", STATUSES)]


# ----------------------------------------------------------------------------- reports


def test_report_posts_status_check_run_and_one_comment_updated_in_place(
        github_env, spec, store, record_gated_run, tmp_path):
    gh = github_env
    head = gh.pulls[12]
    good = record_gated_run(store, spec, accuracy=0.93)
    first = report_run(spec, store, good)  # everything from the workflow's variables
    assert first.posted and first.warnings == () and first.sha == head
    assert _states(gh) == ["pending", "success"]
    status = gh.statuses[head][0]
    assert status["context"] == "cd4ml/wine"
    assert status["target_url"] == f"{gh.url}/{gh.full_name}/actions/runs/4242"
    (check,) = gh.check_runs.values()
    assert (check["name"], check["status"], check["conclusion"]) == ("cd4ml/wine", "completed", "success")
    assert check["output"]["summary"] == first.markdown
    assert check["external_id"] == good
    (comment,) = gh.comments[12]
    assert comment["body"].startswith(marker("wine") + "\n### ✅ cd4ml · wine")
    assert first.comment_url == comment["html_url"]
    assert (tmp_path / "step_summary.md").read_text() == first.markdown + "\n"

    # a second push: the same comment is edited, no new one
    bad = record_gated_run(store, spec, accuracy=0.8, low=0.7, production_version=1)
    second = report_run(spec, store, bad)
    assert second.state == "failure"
    assert _states(gh) == ["pending", "success", "pending", "failure"]
    assert len(gh.comments[12]) == 1 and len(gh.calls("POST", COMMENTS)) == 1
    assert len(gh.calls("PATCH", COMMENT)) == 1
    assert gh.comments[12][0]["body"] == marker("wine") + "\n" + second.markdown
    check = gh.check_runs[max(gh.check_runs)]
    assert check["conclusion"] == "failure"
    assert {(a["path"], a["start_line"], a["annotation_level"]) for a in gh.annotations[check["id"]]} == {
        ("pipelines/wine.yaml", spec.gates[0].line, "failure"),
        ("pipelines/wine.yaml", spec.gates[2].line, "failure")}


def test_comments_of_other_pipelines_and_people_are_left_alone(github_env, spec, store, record_gated_run):
    gh = github_env
    requests.post(f"{gh.api_url}/repos/{gh.full_name}/issues/12/comments",
                  json={"body": "<!-- cd4ml:diabetes -->\nother pipeline"},
                  headers={"Authorization": f"token {gh.token}"}, timeout=10).raise_for_status()
    report_run(spec, store, record_gated_run(store, spec))
    report_run(spec, store, record_gated_run(store, spec))
    bodies = [c["body"] for c in gh.comments[12]]
    assert len(bodies) == 2 and bodies[0] == "<!-- cd4ml:diabetes -->\nother pipeline"


def test_github_enterprise_address_is_used_as_given(github_openapi, spec, store, record_gated_run):
    # GITHUB_API_URL on GHES already ends in /api/v3; github3.GitHubEnterprise would add another
    with GitHubServer(prefix="/api/v3") as gh:
        sha = gh.add_commit()
        result = report_run(spec, store, record_gated_run(store, spec), _config(gh, sha=sha))
        assert result.posted, result.warnings
        assert _states(gh) == ["pending", "success"]
        assert all(r.path.startswith("/repos/") for r in gh.requests)
        assert not gh.errors


def test_many_annotations_go_in_batches_of_fifty(github_server):
    gh = github_server
    reporter = GitHubReporter(_config(gh, sha=gh.add_commit()))
    check = reporter.create_check_run("cd4ml/wine")
    notes = [{"path": "pipelines/wine.yaml", "start_line": i, "end_line": i,
              "annotation_level": "failure", "message": f"rule {i}"} for i in range(1, 121)]
    reporter.complete_check_run(check, "failure", "title", "summary", notes)
    patches = gh.calls("PATCH", CHECK_RUN)
    assert [len(p.json["output"]["annotations"]) for p in patches] == [50, 20, 50]
    assert "conclusion" not in patches[0].json and patches[-1].json["conclusion"] == "failure"
    assert sorted(a["start_line"] for a in gh.annotations[check]) == list(range(1, 121))


# ----------------------------------------------------------------------------- failures


def test_a_502_is_retried(github_server, spec, store, record_gated_run):
    gh = github_server
    gh.fail_next(2, status=502)
    result = report_run(spec, store, record_gated_run(store, spec), _config(gh, sha=gh.add_commit()))
    assert result.posted
    assert [r.status for r in gh.requests[:3]] == [502, 502, 200]
    assert _states(gh) == ["pending", "success"]


@pytest.mark.parametrize("secondary", [False, True])
def test_rate_limits_are_waited_out(github_server, secondary):
    gh = github_server
    gh.rate_limit_next(1, secondary=secondary)
    GitHubReporter(_config(gh)).set_status("cd4ml/wine", "pending", "x", sha=gh.add_commit())
    assert [r.status for r in gh.requests] == [429 if secondary else 403, 200, 201]


def test_a_failing_github_only_warns_and_the_report_is_kept(github_server, spec, store, record_gated_run):
    gh = github_server
    gh.fail_next(100, status=503)
    events = []
    with listening(events.append):
        result = report_run(spec, store, record_gated_run(store, spec),
                            _config(gh, sha=gh.add_commit(), retries=2))
    assert not result.posted and result.file is not None and result.file.read_text() == result.markdown
    assert result.warnings and "503" in result.warnings[0]
    assert any(isinstance(e, StageWarning) and "503" in e.message for e in events)
    assert len(gh.requests) < 30  # bounded: every piece tried, each retried twice


def test_strict_raises(github_server, spec, store, record_gated_run):
    gh = github_server
    gh.fail_next(100, status=502)
    with pytest.raises(TrackerError, match="502"):
        report_run(spec, store, record_gated_run(store, spec),
                   _config(gh, sha=gh.add_commit(), retries=1, strict=True))


def test_a_refused_permission_does_not_silence_the_rest(github_server, spec, store, record_gated_run):
    gh = github_server
    # no pull request 99 here: the comment fails, the status and check run still land
    result = report_run(spec, store, record_gated_run(store, spec),
                        _config(gh, sha=gh.add_commit(), pr=99))
    assert not result.posted
    assert any("404" in w for w in result.warnings)
    assert _states(gh) == ["pending", "success"]
    assert len(gh.check_runs) == 1


def test_the_token_never_shows(github_env, spec, store, record_gated_run, capsys, caplog, tmp_path):
    gh = github_env
    caplog.set_level(logging.DEBUG)
    run_id = record_gated_run(store, spec)
    url = store.url
    texts = []
    gh.fail_next(1, status=502)
    assert main(["report", run_id, "-p", str(spec.path), "--store", url, "--debug"]) == 0
    # a token GitHub refuses, and a GitHub that keeps failing: the errors name neither
    bad = "ghs_" + "R" * 36
    with pytest.raises(TrackerError) as refused:
        report_run(spec, store, run_id, _config(gh, token=bad, strict=True))
    texts.append(str(refused.value))
    assert "401" in str(refused.value)
    gh.fail_next(100, status=500)
    code = main(["report", run_id, "-p", str(spec.path), "--store", url, "--strict"])
    assert code == 2
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text, (tmp_path / "step_summary.md").read_text()]
    texts += [r.json and str(r.json) or "" for r in gh.requests]
    assert "cd4ml: error: GitHub" in out.err
    for text in texts:
        assert gh.token not in text
        assert bad not in text
    assert [r.headers["Authorization"] for r in gh.requests[:1]] == [f"token {gh.token}"]


def test_the_server_refuses_like_github(github_server):
    gh = github_server
    sha = gh.add_commit()
    url = f"{gh.api_url}/repos/{gh.full_name}/statuses/{sha}"
    auth = {"Authorization": f"Bearer {gh.token}"}
    assert requests.post(url, json={"state": "pending"}, timeout=10).status_code == 401
    missing = requests.post(url, json={"context": "x"}, headers=auth, timeout=10)
    assert missing.status_code == 422 and "'state' is a required property" in missing.json()["message"]
    wrong = requests.post(url, json={"state": "great"}, headers=auth, timeout=10)
    assert wrong.status_code == 422
    assert requests.post(url, json={"state": "success"}, headers=auth, timeout=10).status_code == 201
    other = requests.get(f"{gh.api_url}/repos/someone/else", headers=auth, timeout=10)
    assert other.status_code == 404 and other.json()["message"] == "Not Found"
    assert len(gh.rejected) == 2


def test_a_response_the_description_refuses_is_caught(github_server):
    gh = github_server
    gh.check_runs[1] = {"id": 1, "status": "queued", "output": {}}  # corrupt the server's state
    gh.annotations[1] = []
    r = requests.patch(f"{gh.api_url}/repos/{gh.full_name}/check-runs/1", json={"name": "x"},
                       headers={"Authorization": f"token {gh.token}"}, timeout=10)
    assert r.status_code == 500
    assert gh.errors and "does not match" in gh.errors[0]
    gh.errors.clear()  # the fixture would fail this test otherwise


# ----------------------------------------------------------------------------- deployments


def test_deployments_and_their_statuses_in_order(github_server):
    gh = github_server
    sha = gh.add_commit()
    gh.statuses[sha] = []
    reporter = GitHubReporter(_config(gh, sha=sha))
    # a pending status of another check must not block the deployment (required_contexts: [])
    reporter.set_status("ci/other", "pending", "still running")
    first = reporter.deployment_started("staging", "wine", 3, "reg/wine:3", "sha256:" + "a" * 64)
    reporter.deployment_finished(first, "healthy", url="http://127.0.0.1:8701")
    second = reporter.deployment_started("staging", "wine", 4, "reg/wine:4", "sha256:" + "b" * 64)
    other = reporter.deployment_started("staging", "diabetes", 1, "reg/diabetes:1", None)
    reporter.deployment_finished(other, "success")
    reporter.deployment_finished(second, "success", url="http://127.0.0.1:8701")
    failed = reporter.deployment_started("production", "wine", 4, "reg/wine:4", None)
    reporter.deployment_finished(failed, "failed", description="health check timed out")

    def states(dep_id: int) -> list[str]:
        return [s["state"] for s in reversed(gh.deployment_statuses[dep_id])]

    assert states(first) == ["in_progress", "success", "inactive"]  # replaced by v4
    assert states(second) == ["in_progress", "success"]
    assert states(other) == ["in_progress", "success"]  # another pipeline: untouched
    assert states(failed) == ["in_progress", "failure"]
    d = gh.deployments[first]
    assert d["payload"] == {"pipeline": "wine", "model_version": 3, "image": "reg/wine:3",
                            "image_digest": "sha256:" + "a" * 64, "actor": "dana",
                            "cd4ml_request": d["payload"]["cd4ml_request"]}
    assert (d["environment"], d["sha"], d["production_environment"]) == ("staging", sha, False)
    assert gh.deployments[failed]["production_environment"] is True
    success = gh.deployment_statuses[second][0]
    assert success["environment_url"] == "http://127.0.0.1:8701"
    assert success["log_url"] == f"{gh.url}/{gh.full_name}/actions/runs/4242"
    assert all(c.json["auto_inactive"] is False for c in gh.calls("POST", DEPLOYMENT_STATUSES))


def test_deployment_replaced_retires_one_version(github_server):
    gh = github_server
    reporter = GitHubReporter(_config(gh, sha=gh.add_commit()))
    dep = reporter.deployment_started("production", "wine", 2, "reg/wine:2", None)
    reporter.deployment_finished(dep, "success")
    reporter.deployment_replaced("production", "wine", model_version=3)  # not this one
    assert gh.deployment_statuses[dep][0]["state"] == "success"
    reporter.deployment_replaced("production", "wine", model_version=2)
    assert gh.deployment_statuses[dep][0]["state"] == "inactive"


def test_deployment_notifications_warn_instead_of_failing(github_server):
    gh = github_server
    gh.fail_next(100, status=502)
    events = []
    reporter = GitHubReporter(_config(gh, sha=gh.add_commit(), retries=1))
    with listening(events.append):
        assert reporter.deployment_started("staging", "wine", 1, "reg/wine:1", None) is None
        reporter.deployment_finished(None, "success")
    assert len([e for e in events if isinstance(e, StageWarning)]) == 1
    with pytest.raises(TrackerError):
        GitHubReporter(_config(gh, sha="a" * 40, strict=True, retries=0)).deployment_started(
            "staging", "wine", 1, "reg/wine:1", None)


def test_without_a_token_notifications_do_nothing(github_server):
    reporter = GitHubReporter(GitHubConfig(repository="o/r"))
    assert not reporter.enabled
    assert reporter.deployment_started("staging", "wine", 1, "img", None) is None
    assert github_server.requests == []


# ----------------------------------------------------------------------------- approvals


def test_approvers_need_write_and_not_to_be_the_author(github_server):
    gh = github_server
    sha = gh.add_commit(author="dana")
    unlinked = gh.add_commit(author=None)
    for user, role in [("dana", "write"), ("erin", "maintain"), ("frank", "read"),
                       ("gail", "triage"), ("hank", None), ("ivy", "admin")]:
        gh.set_permission(user, role)
    r = GitHubReporter(_config(gh))
    assert r.approver_allowed("erin", sha, forbid_author=True)[0]
    assert r.approver_allowed("ivy", sha, forbid_author=True)[0]
    ok, why = r.approver_allowed("frank", sha, forbid_author=True)
    assert not ok and "frank has read permission" in why
    assert not r.approver_allowed("gail", sha, forbid_author=False)[0]
    ok, why = r.approver_allowed("hank", sha, forbid_author=False)
    assert not ok and "has none permission" in why
    ok, why = r.approver_allowed("dana", sha, forbid_author=True)
    assert not ok and "dana wrote" in why
    assert r.approver_allowed("dana", sha, forbid_author=False) == (
        True, f"dana has write permission on {gh.full_name}")
    ok, why = r.approver_allowed("nobody-here", sha, forbid_author=False)
    assert not ok and "not a user with access" in why
    ok, why = r.approver_allowed("erin", unlinked, forbid_author=True)
    assert not ok and "no GitHub account linked" in why
    with pytest.raises(TrackerError, match="422 No commit found"):
        r.approver_allowed("erin", "0" * 40, forbid_author=True)


def test_run_approvals_say_who_approved_the_environment(github_server):
    gh = github_server
    gh.add_approval(4242, "erin", ("production",), comment="looks good")
    gh.add_approval(4242, "frank", ("production",), state="rejected")
    approvals = GitHubReporter(_config(gh)).run_approvals()
    assert [(a.user, a.state, a.environments, a.comment) for a in approvals] == [
        ("erin", "approved", ("production",), "looks good"),
        ("frank", "rejected", ("production",), "")]
    with pytest.raises(TrackerError, match="404"):
        GitHubReporter(_config(gh)).run_approvals(1)


def test_check_runs_go_through_the_session_with_an_installation_token(github_server):
    # github3's create_check_run refuses a token login (it wants a GitHub App): ours does not
    gh = github_server
    reporter = GitHubReporter(_config(gh, sha=gh.add_commit()))
    check = reporter.create_check_run("cd4ml/wine", external_id="run1")
    assert gh.calls("POST", CHECK_RUNS)[0].json["status"] == "in_progress"
    assert gh.check_runs[check]["status"] == "in_progress"


def test_the_charts_are_mermaid_that_github_can_render(spec, store, record_gated_run):
    for accuracy in (0.86, 0.91, 0.8, 0.88):
        last = record_gated_run(store, spec, accuracy=accuracy)
    charts = re.findall(r"```mermaid\n(.*?)```", build_report(spec, store, last).markdown, re.DOTALL)
    assert len(charts) == 2
    errors = parse_errors([*charts, "xychart-beta\n  line [1, 2\n"])
    assert errors[:2] == [None, None]
    assert errors[2] is not None  # the parser does say no
