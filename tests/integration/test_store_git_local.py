"""The git store read but never written (``git+<remote>?writes=local``), what a pull request's
job uses: it sees the branch's records and artifacts, keeps its own writes on the runner, and
leaves the branch exactly as it was (over file:// and over HTTP with a read-only fetch)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

from cd4ml.store import Store
from cd4ml.store.gitlocal import LocalWritesGitStore
from cd4ml.store.gitstore import GitStore
from tests.integration.test_store_git import branch_log, git, open_at, rows, write_some


def _model(tmp_path, store: Store, pipeline: str = "wine"):
    """A run that trains and registers a model with its files, as the stages do."""
    art = tmp_path / f"art-{pipeline}"
    art.mkdir(exist_ok=True)
    (art / "model.pkl").write_bytes(pickle.dumps({"a": 1}))
    (art / "model.json").write_text("{}")
    run = store.start_run(pipeline, actor="dana")
    model = store.register_model(pipeline, run.id, "classification", str(art), "e" * 64, {}, {})
    return store.set_artifact_uri(model.id, str(art))


def test_reads_the_branch_and_keeps_its_writes_on_this_machine(git_remote, tmp_path, monkeypatch):
    url = f"git+file://{git_remote}"
    with open_at(url, tmp_path / "main", monkeypatch) as main:
        write_some(main)
        _model(tmp_path, main)
        on_main = rows(main)
    shutil.rmtree(tmp_path / "art-wine")  # main's runner is gone
    before = branch_log(git_remote)
    tip = git("--git-dir", str(git_remote), "rev-parse", "cd4ml/state")

    monkeypatch.setenv("CD4ML_HOME", str(tmp_path / "pr"))
    with Store(url + "?writes=local") as pr:
        assert isinstance(pr, LocalWritesGitStore) and "writes=local" in repr(pr)
        assert rows(pr) == on_main  # everything main recorded
        production = pr.model("wine", 2)  # its files come from the branch to this runner
        assert (Path(production.artifact_uri) / "model.pkl").read_bytes() == pickle.dumps({"a": 1})
        assert Path(production.artifact_uri).is_relative_to(tmp_path / "pr")
        write_some(pr)
        mine = _model(tmp_path, pr)
        assert mine.version == 4
        assert [m.version for m in pr.models("wine")] == [4, 3, 2, 1]
    # the branch did not move: nothing the PR did can be picked up
    assert branch_log(git_remote) == before
    assert git("--git-dir", str(git_remote), "rev-parse", "cd4ml/state") == tip

    with open_at(url, tmp_path / "main", monkeypatch) as main:  # main writes on
        write_some(main)
        assert [m.version for m in main.models("wine")] == [3, 2, 1]  # the PR's are not there
    monkeypatch.setenv("CD4ML_HOME", str(tmp_path / "pr"))
    with Store(url + "?writes=local") as pr:  # the job's next step: its own records, as they were
        assert [m.version for m in pr.models("wine")] == [4, 3, 2, 1]
    monkeypatch.setenv("CD4ML_HOME", str(tmp_path / "pr2"))
    with Store(f"git+file://{git_remote}?writes=local#cd4ml/state") as fresh:  # a new PR job
        assert [m.version for m in fresh.models("wine")] == [3, 2, 1]


def test_over_http_it_only_fetches(git_http, tmp_path, monkeypatch):
    url = f"git+{git_http.url}"
    monkeypatch.setenv("GITHUB_TOKEN", git_http.token)
    with open_at(url, tmp_path / "main", monkeypatch) as main:
        write_some(main)
    git_http.requests.clear()
    monkeypatch.setenv("CD4ML_HOME", str(tmp_path / "pr"))
    with Store(url + "?writes=local") as pr:
        assert isinstance(pr, LocalWritesGitStore) and len(pr.runs()) == 1
        write_some(pr)
        assert len(pr.runs()) == 2
    assert git_http.requests and not any("receive-pack" in path for _, path, _ in git_http.requests)


def test_the_writing_store_is_still_the_git_store(git_remote, tmp_path, monkeypatch):
    store = open_at(f"git+file://{git_remote}", tmp_path, monkeypatch)
    assert type(store) is GitStore
    store.close()
