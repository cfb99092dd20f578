"""``cd4ml preflight``: a job that lacks configuration is skipped with what to set, never failed."""

from __future__ import annotations

import dataclasses

import pytest

from cd4ml.cli import main
from cd4ml.preflight import preflight, summary

CONFIGURED = {"CD4ML_STORE_URL": "postgresql+psycopg://cd4ml@db/cd4ml",
              "CD4ML_ARTIFACTS": "/srv/cd4ml/artifacts", "CD4ML_RUNNER": "self-hosted"}


@pytest.fixture
def with_registry(spec):
    return dataclasses.replace(spec, image=dataclasses.replace(spec.image, registry="ghcr.io/acme"))


def test_a_deploy_needs_store_artifacts_registry_and_runner(spec, with_registry):
    fresh = preflight(spec, "staging", {})
    assert not fresh.ready
    text = summary(fresh)
    assert "deploying wine to staging skipped" in text
    for name in ("CD4ML_STORE_URL", "git+origin", "image.registry in wine.yaml",
                 "CD4ML_RUNNER", "target (local)"):
        assert name in text
    assert preflight(with_registry, "staging", CONFIGURED).ready
    assert summary(preflight(with_registry, "staging", CONFIGURED)) == ""
    for name in CONFIGURED:
        result = preflight(with_registry, "production", {k: v for k, v in CONFIGURED.items() if k != name})
        assert not result.ready and [name in m.where for m in result.missing] == [True]


def test_the_git_store_keeps_the_artifacts_so_a_deploy_needs_no_artifact_directory(with_registry):
    git = {"CD4ML_STORE_URL": "git+origin", "CD4ML_RUNNER": "self-hosted"}
    assert preflight(with_registry, "staging", git).ready
    assert not preflight(with_registry, "staging", {"CD4ML_STORE_URL": "git+origin"}).ready
    assert preflight(with_registry, None, {"CD4ML_STORE_URL": "git+origin"}).missing == ()
    # a pull request's view of the store: it may run the pipeline, never deploy
    local = {**git, "CD4ML_STORE_URL": "git+origin?writes=local"}
    assert preflight(with_registry, None, local).missing == ()
    refused = preflight(with_registry, "staging", local)
    assert not refused.ready and ["without ?writes=local" in m.where for m in refused.missing] == [True]


def test_the_pipeline_job_always_runs_and_only_advises(spec):
    result = preflight(spec, None, {})
    assert result.ready
    assert "nothing keeps it for the next run" in summary(result)
    assert "CD4ML_RUNNER" not in "".join(m.where.split(":")[0] for m in result.missing)
    sqlite = preflight(spec, None, {"CD4ML_STORE_URL": "sqlite:///x.db"})
    assert ["CD4ML_ARTIFACTS" in m.where for m in sqlite.missing] == [True]


def test_cli_writes_the_output_the_summary_and_a_notice(spec, tmp_path, monkeypatch, capsys,
                                                        pipelines_dir):
    out, step = tmp_path / "output", tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert main(["preflight", "-p", str(pipelines_dir / "wine.yaml"), "--env", "staging"]) == 0
    assert out.read_text() == "ready=false\n"
    assert "deploying wine to staging skipped" in step.read_text()
    notice = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("::"))
    # a workflow command's property may not hold ':' or ','
    assert notice.startswith("::notice title=cd4ml%3A deploying wine to staging skipped::set ")
    assert main(["preflight", "-p", str(pipelines_dir / "wine.yaml"), "--env", "nowhere"]) == 2


def test_json(capsys, pipelines_dir):
    import json

    assert main(["preflight", "-p", str(pipelines_dir / "wine.yaml"), "--env", "staging", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ready"] is False and doc["environment"] == "staging"
    assert any("CD4ML_RUNNER" in m["where"] for m in doc["missing"])
