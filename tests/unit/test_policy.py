"""The release policy (cd4ml/release/policy.py) without any target: the rules that need only
the store and git — order when nothing runs before, approval, the approver checked against the
commit's git author without a token, marked bad, and the override (recorded, forbiddable)."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from cd4ml.errors import DeployError
from cd4ml.release.policy import Override, admit


@pytest.fixture
def repo(tmp_path):
    """A git repository with one commit by Dana Author <dana@example.com>."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True,
                              check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "f").write_text("x")
    git("add", "f")
    git("-c", "user.name=Dana Author", "-c", "user.email=dana@example.com", "commit", "-qm", "m")
    return tmp_path, git("rev-parse", "HEAD")


def _version(store, commit, blessed=True):
    run = store.start_run("wine", git_commit=commit)
    m = store.register_model("wine", run.id, "classification", "/a", "a" * 64, {}, {})
    return store.set_model_flags(m.id, blessed=blessed)


def _running(store, model, env):
    dep = store.start_deployment("wine", env, model.id, "img", "local", "deploy", "ana")
    store.finish_deployment(dep.id, "healthy")


def test_straight_to_production_is_refused_and_the_override_is_recorded(spec, store):
    v = _version(store, None)
    prod = spec.environment("production")
    with pytest.raises(DeployError) as refused:
        admit(spec, store, prod, v, action="deploy")
    text = str(refused.value)
    assert "wine:1 is not running in staging (nothing is)" in text
    assert "production requires an approval of wine:1" in text
    assert "--override --reason TEXT --by USER" in text
    decision = admit(spec, store, prod, v, action="deploy",
                     override=Override("rita", "incident 42"))
    record = decision.record()
    assert record["override"]["by"] == "rita" and record["override"]["reason"] == "incident 42"
    assert {c["rule"] for c in record["policy"] if not c["passed"]} == {"order", "approval"}
    # forbidden per environment: refused before any rule is looked at
    strict = dataclasses.replace(prod, allow_override=False)
    with pytest.raises(DeployError, match="allow_override is false"):
        admit(spec, store, strict, v, action="deploy", override=Override("rita", "again"))
    # an override names someone and says why
    with pytest.raises(DeployError, match="needs a reason"):
        Override("rita", " ")


def test_an_override_that_is_not_needed_is_not_recorded(spec, store):
    v = _version(store, None)
    decision = admit(spec, store, spec.environment("staging"), v, action="deploy",
                     override=Override("rita", "just in case"))
    assert decision.override is None and "override" not in decision.record()


def test_a_version_marked_bad_is_refused_on_every_path(spec, store):
    v = store.set_model_flags(_version(store, None).id, bad=True)
    for action in ("deploy", "rollback"):
        with pytest.raises(DeployError, match="wine:1 is marked bad"):
            admit(spec, store, spec.environment("staging"), v, action=action)


def test_the_author_may_not_approve_their_own_version_checked_against_git(spec, store, repo,
                                                                          monkeypatch):
    root, commit = repo
    monkeypatch.chdir(root)  # the repository the version was trained in
    v = _version(store, commit)
    prod = spec.environment("production")
    for who in ("Dana Author", "dana@example.com", "dana"):
        with pytest.raises(DeployError, match=f"{who} wrote {commit[:12]}"):
            admit(spec, store, prod, v, action="promote", approved_by=who)
    assert store.approvals(v.id) == []
    # someone else: the approver rule passes (the order rule still refuses: nothing in staging)
    with pytest.raises(DeployError) as refused:
        admit(spec, store, prod, v, action="promote", approved_by="rita")
    assert "rita may not" not in str(refused.value) and "not running in staging" in str(refused.value)
    assert store.approvals(v.id) == []  # a refused release records no approval
    # a commit git does not know cannot be checked: refused, naming the way out
    unknown = _version(store, "f" * 40)
    with pytest.raises(DeployError, match="is not in this repository"):
        admit(spec, store, prod, unknown, action="promote", approved_by="rita")


def test_a_rollback_to_a_version_that_served_there_needs_no_new_approval(spec, store):
    v = _version(store, None)
    _running(store, v, "production")
    decision = admit(spec, store, spec.environment("production"), v, action="rollback")
    assert all(c.passed for c in decision.checks)
