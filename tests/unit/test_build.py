"""What the build stage refuses before it touches Docker, and how it names images."""

from __future__ import annotations

import dataclasses

import pytest

from cd4ml.errors import BuildError
from cd4ml.release.build import check_buildable, image_reference


def _model(store, pipeline="wine", blessed=True, bad=False):
    run = store.start_run(pipeline)
    mv = store.register_model(pipeline, run.id, "classification", "/nowhere", "0" * 64,
                              {"inputs": [], "target": "t", "classes": None}, {})
    if blessed:
        store.record_gate(run.id, mv.id, True, [], None)
    if bad:
        store.set_model_flags(mv.id, bad=True)
    return store.model_by_id(mv.id)


def test_only_a_blessed_good_model_of_the_spec_is_built(spec, store):
    check_buildable(spec, _model(store))
    with pytest.raises(BuildError, match=r"wine:2 is not blessed .*only blessed models are built"):
        check_buildable(spec, _model(store, blessed=False))
    with pytest.raises(BuildError, match=r"wine:3 is marked bad"):
        check_buildable(spec, _model(store, bad=True))
    with pytest.raises(BuildError, match=r"diabetes:1 belongs to pipeline 'diabetes'.*--pipeline"):
        check_buildable(spec, _model(store, pipeline="diabetes"))


def test_a_failed_gate_overridden_with_a_reason_is_buildable(spec, store):
    run = store.start_run("wine")
    mv = store.register_model("wine", run.id, "classification", "/nowhere", "0" * 64, {}, {})
    store.record_gate(run.id, mv.id, False, [], None, override_by="alice", override_reason="hotfix")
    check_buildable(spec, store.model_by_id(mv.id))


def test_the_reference_is_registry_repository_and_version(spec, store):
    model = _model(store)
    # the default repository is namespaced by the project (derived from the repository)
    assert image_reference(spec, model) == f"cd4ml/{spec.project}/wine:1"
    spec = dataclasses.replace(spec, image=dataclasses.replace(spec.image, registry="127.0.0.1:5000/"))
    assert image_reference(spec, model) == f"127.0.0.1:5000/cd4ml/{spec.project}/wine:1"


def test_a_push_without_a_registry_is_refused_before_building(spec, store):
    from cd4ml.release.build import build

    with pytest.raises(BuildError, match=r"image.registry is not set"):
        build(spec, store, _model(store), push=True)


@pytest.mark.parametrize("provenance,tags,refused", [
    ("any", {}, None),
    ("ci", {}, "trained outside CI"),
    ("ci", {"ci.run_id": "7", "ci.ref": "refs/pull/3/merge"}, None),
    ("ci_default_branch", {"ci.run_id": "7", "ci.ref": "refs/pull/3/merge",
                           "ci.default_branch": "main"}, "asks for the default branch (main)"),
    ("ci_default_branch", {"ci.run_id": "7", "ci.ref": "refs/heads/main"}, "default branch (unknown)"),
    ("ci_default_branch", {"ci.run_id": "8", "ci.ref": "refs/heads/main",
                           "ci.default_branch": "main"}, None),
])
def test_provenance_decides_which_models_may_be_built(spec, provenance, tags, refused):
    import dataclasses

    from cd4ml.errors import BuildError
    from cd4ml.release.build import check_provenance
    from cd4ml.spec import Provenance
    from cd4ml.store import Store

    store = Store("sqlite://")
    run = store.start_run(spec.name, actor="mallory", tags=tags)
    model = store.register_model(spec.name, run.id, "classification", "/nowhere", "ab" * 32, {}, {})
    strict = dataclasses.replace(spec, provenance=Provenance(provenance))
    if refused is None:
        check_provenance(strict, model, store.run(run.id))
    else:
        with pytest.raises(BuildError, match=refused.replace("(", r"\(").replace(")", r"\)")):
            check_provenance(strict, model, store.run(run.id))


def test_ci_runs_record_their_producer(tmp_path, monkeypatch):
    import json

    from cd4ml.integrations.git import git_info

    event = tmp_path / "event.json"
    event.write_text(json.dumps({"repository": {"default_branch": "trunk"}}))
    for k, v in {"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "42", "GITHUB_WORKFLOW": "cd4ml",
                 "GITHUB_REF": "refs/heads/trunk", "GITHUB_EVENT_PATH": str(event),
                 "GITHUB_EVENT_NAME": "push", "GITHUB_REPOSITORY": "acme/churn"}.items():
        monkeypatch.setenv(k, v)
    tags = git_info(tmp_path).tags
    assert tags["ci.run_id"] == "42" and tags["ci.default_branch"] == "trunk"
    assert tags["ci.ref"] == "refs/heads/trunk" and tags["ci.workflow"] == "cd4ml"
    monkeypatch.setenv("GITHUB_ACTIONS", "false")
    assert "ci.run_id" not in git_info(tmp_path).tags
