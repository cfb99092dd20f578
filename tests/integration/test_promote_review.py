"""Promotion inside a workflow: the approvers are the people who approved the job's GitHub
environment review, checked like named ones (write permission, not the commit's author)."""

from __future__ import annotations

import pytest

from cd4ml.errors import DeployError
from cd4ml.release.deploy import deploy, promote
from tests.fixtures.deploy import PORTS, served_version
from tests.integration.test_deploy_local import clean  # noqa: F401  (fixture)

pytestmark = pytest.mark.docker


def test_the_environment_review_of_the_run_is_the_approval(deploy_world, clean, github_env,  # noqa: F811
                                                           monkeypatch):
    spec, gh = clean, github_env
    v1 = deploy_world.versions[1]
    sha = gh.add_commit(author="dana")
    monkeypatch.setenv("GITHUB_RUN_ID", "777")
    gh.add_run(777)
    with deploy_world.store() as store:
        before = store.run(v1.run_id).git_commit
        store.update_run(v1.run_id, git_commit=sha)
        try:
            assert deploy(spec, store, "staging", 1).status == "healthy"
            # nobody approved yet: refused, nothing recorded
            with pytest.raises(DeployError, match="production requires an approval of wine:1"):
                promote(spec, store, 1, "production")
            # the commit's author approving their own change is refused, naming why
            gh.set_permission("dana", "write")
            gh.add_approval(777, "dana")
            with pytest.raises(DeployError, match=r"approved only by people who may not approve "
                                                  r"wine:1: dana"):
                promote(spec, store, 1, "production")
            assert store.approvals(v1.id, "production") == []
            # a reviewer with write permission: recorded from GitHub, and production serves v1
            gh.set_permission("rita", "write")
            gh.add_approval(777, "rita", comment="looks good")
            assert promote(spec, store, 1, "production").status == "healthy"
            (approval,) = store.approvals(v1.id, "production")
            assert (approval.approver, approval.source) == ("rita", "github")
            assert approval.details["run_id"] == "777" and approval.details["comment"] == "looks good"
            assert served_version(PORTS["production"]) == 1
        finally:
            store.update_run(v1.run_id, git_commit=before)
