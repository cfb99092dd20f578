"""``--commit SHA`` on ``build`` and ``deploy``: the version the run of that commit trained or
reused, never merely the newest blessed one (which a run of another commit may have made)."""

from __future__ import annotations

import pytest

from cd4ml.cli import main
from cd4ml.errors import StoreError, UsageError
from cd4ml.refs import model_of_commit
from cd4ml.states import RunStatus

A, B, C = "a" * 40, "b" * 40, "c" * 40


def _run(store, commit: str, *, blessed: bool = True, reused_from: str | None = None):
    run = store.start_run("wine", git_commit=commit, actor="ci")
    model = None
    if reused_from is None:
        model = store.register_model("wine", run.id, "classification", "/x", "f" * 64, {}, {})
        store.set_model_flags(model.id, blessed=blessed)
    store.finish_run(run.id, RunStatus.SUCCEEDED, reused_from=reused_from)
    return run, model


def test_the_model_of_a_commit_not_the_newest_blessed(store):
    run_a, _ = _run(store, A)
    _run(store, B)  # another commit's model, newer and blessed
    _run(store, C, reused_from=run_a.id)  # inputs unchanged: the cached run answers
    assert store.latest_model("wine", blessed=True).version == 2
    assert model_of_commit(store, "wine", A).version == 1
    assert model_of_commit(store, "wine", B[:7]).version == 2
    assert model_of_commit(store, "wine", C).version == 1


def test_the_newest_run_of_the_commit_decides(store):
    _run(store, A)
    _run(store, A, blessed=False)  # re-run on the same commit, gate failed
    chosen = model_of_commit(store, "wine", A)
    assert chosen.version == 2 and not chosen.blessed  # build and deploy refuse it, naming it


def test_no_run_of_the_commit_and_no_commit_id(store):
    _run(store, A)
    with pytest.raises(StoreError, match=r"no run of wine at commit bbbbbbbbbbbb .*cd4ml run"):
        model_of_commit(store, "wine", B)
    with pytest.raises(UsageError, match="git commit id"):
        model_of_commit(store, "wine", "main")


def test_build_and_deploy_take_the_commit(pipelines_dir, capsys):
    spec = str(pipelines_dir / "wine.yaml")
    assert main(["build", "-p", spec, "1", "--commit", A]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(["deploy", "-p", spec, "--env", "staging", "--commit", A]) == 2
    assert "no run of wine at commit aaaaaaaaaaaa" in capsys.readouterr().err
    assert main(["build", "-p", spec, "--commit", "HEAD"]) == 2
    assert "git commit id" in capsys.readouterr().err
