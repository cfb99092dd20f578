"""GitHub writes happen once: a POST that failed ambiguously (a gateway error after GitHub had
done the work) is followed by a look-up of what it would have made, not by a second POST. The
local GitHub server (tests/ghserver) handles the request, then answers 502/504 (fail_after)."""

from __future__ import annotations

from cd4ml.integrations.github import GitHubConfig, GitHubReporter
from tests.ghserver import CHECK_RUNS, COMMENTS, DEPLOYMENTS, GitHubServer


def _reporter(gh: GitHubServer, **kw) -> GitHubReporter:
    return GitHubReporter(GitHubConfig(token=gh.token, api_url=gh.api_url, server_url=gh.url,
                                       repository=gh.full_name, run_id="4242", actor="dana",
                                       backoff=0.01, **kw))


def test_a_comment_created_behind_a_502_is_found_not_posted_again(github_server):
    gh = github_server
    gh.add_pull(12, gh.add_commit())
    gh.fail_after("POST", COMMENTS, 502)
    url = _reporter(gh).upsert_comment("<!-- cd4ml:wine -->", "<!-- cd4ml:wine -->\nhello", pr=12)
    assert len(gh.comments[12]) == 1 and url
    assert len(gh.calls("POST", COMMENTS)) == 1


def test_a_deployment_created_behind_a_504_is_found_not_posted_again(github_server):
    gh = github_server
    sha = gh.add_commit()
    gh.fail_after("POST", DEPLOYMENTS, 504)
    reporter = _reporter(gh, sha=sha)
    did = reporter.deployment_started("staging", "wine", 3, "cd4ml/p/wine:3", None, ref=sha)
    assert list(gh.deployments) == [did]
    assert len(gh.calls("POST", DEPLOYMENTS)) == 1
    assert [s["state"] for s in gh.deployment_statuses[did]] == ["in_progress"]
    # a second, separate deployment of the same version is a new one, not the old one found
    again = reporter.deployment_started("staging", "wine", 3, "cd4ml/p/wine:3", None, ref=sha)
    assert again != did and len(gh.deployments) == 2


def test_a_check_run_created_behind_a_502_is_found_not_posted_again(github_server):
    gh = github_server
    sha = gh.add_commit()
    gh.fail_after("POST", CHECK_RUNS, 502)
    run_id = _reporter(gh).create_check_run("cd4ml/wine", sha=sha, external_id="run-1")
    assert list(gh.check_runs) == [run_id]
    assert len(gh.calls("POST", CHECK_RUNS)) == 1


def test_a_failure_that_made_nothing_is_retried(github_server):
    gh = github_server
    sha = gh.add_commit()
    gh.fail_next(1, status=503)
    did = _reporter(gh, sha=sha).deployment_started("staging", "wine", 3, ref=sha)
    assert list(gh.deployments) == [did]
    posts = [r for r in gh.requests if r.method == "POST" and r.path.endswith("/deployments")]
    assert [r.status for r in posts] == [503, 201]  # looked up in between, found nothing
