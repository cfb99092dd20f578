"""The git store against real bare repositories, over file:// and over HTTP (git http-backend
behind a token check): records on the branch, the cache, the bad situations."""

from __future__ import annotations

import logging
import pickle
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from cd4ml.errors import StoreError
from cd4ml.store import Store
from cd4ml.store.gitstore import GitStore
from tests.helpers import outcome


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def branch_log(remote: Path, branch: str = "cd4ml/state") -> list[str]:
    return git("--git-dir", str(remote), "log", "--format=%s", branch).splitlines()


def rows(store: Store) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order: two stores equal row for row."""
    from cd4ml.store import metadata

    with store.read() as conn:
        return {t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key))]
                for t in metadata.sorted_tables if t.name != "schema_version"}


def open_at(url: str, home: Path, monkeypatch) -> GitStore:
    """The store as a fresh runner sees it: its own (empty) .cd4ml."""
    monkeypatch.setenv("CD4ML_HOME", str(home))
    store = Store(url)
    assert isinstance(store, GitStore)
    return store


def write_some(store: Store, pipeline: str = "wine") -> None:
    run = store.start_run(pipeline, actor="alice", params={"n": 1})
    store.record_dataset("d" * 64, "data.csv", "csv", 10, ["a"])
    store.record_metrics(run.id, [{"name": "accuracy", "value": 0.9},
                                  {"name": "accuracy", "value": float("nan"), "slice": "s"}])
    model = store.register_model(pipeline, run.id, "classification", "/nowhere", "f" * 64, {}, {})
    store.record_gate(run.id, model.id, True, [outcome("r")], None)
    dep = store.start_deployment(pipeline, "prod", model.id, "img:1", "local", "deploy", "alice")
    store.finish_deployment(dep.id, "healthy", url="http://x")
    store.finish_run(run.id, "succeeded")


def test_records_on_the_branch_rebuild_the_same_store_elsewhere(git_remote, tmp_path, monkeypatch,
                                                                caplog):
    url = f"git+file://{git_remote}"
    with open_at(url, tmp_path / "a", monkeypatch) as a:
        assert a.runs() == []  # the branch does not exist yet: an empty store
        write_some(a)
        write_some(a)
        mine = rows(a)
    log = branch_log(git_remote)
    # 8 writes, then 7: the same data set again changes nothing, so it is no commit
    assert len(log) == 15 and log[-1].startswith("start_run: wine")
    assert log[0].startswith("finish_run:") and any(s.startswith("register_model:") for s in log)
    files = git("--git-dir", str(git_remote), "ls-tree", "-r", "--name-only", "cd4ml/state").split()
    assert len(files) == 15 and all(f.startswith("records/") and f.endswith(".json") for f in files)

    with open_at(url, tmp_path / "b", monkeypatch) as b:  # a fresh runner: a cold rebuild
        assert rows(b) == mine
        assert [m.version for m in b.models("wine")] == [2, 1]
        assert b.current_deployment("wine", "prod").model_version_id == b.model("wine", 2).id
        b.register_model("wine", b.runs()[0].id, "classification", "/x", "e" * 64, {}, {})
    with caplog.at_level(logging.INFO, "cd4ml.store.git"), open_at(url, tmp_path / "a", monkeypatch) as a:
        assert "replaying 1 record(s)" in caplog.text  # only the one new commit
        assert [m.version for m in a.models("wine")] == [3, 2, 1]
        assert rows(a) == rows(Store(url))


def test_a_remote_name_of_a_shallow_clone(git_remote, tmp_path, monkeypatch):
    with open_at(f"git+file://{git_remote}", tmp_path / "seed", monkeypatch) as seed:
        write_some(seed)
    # the project's own history, and a runner's depth-1 checkout of it
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work))
    for msg in ("one", "two"):
        (work / "f").write_text(msg)
        git("add", "f", cwd=work)
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", msg, cwd=work)
    git("--git-dir", str(git_remote), "fetch", "-q", str(work), "main:main")
    git("clone", "-q", "--depth", "1", "-b", "main", f"file://{git_remote}", str(tmp_path / "runner"))
    assert git("rev-parse", "--is-shallow-repository", cwd=tmp_path / "runner").strip() == "true"
    monkeypatch.chdir(tmp_path / "runner")
    with open_at("git+origin", tmp_path / "runner-home", monkeypatch) as store:
        assert store.latest_model("wine").version == 1
        write_some(store)
    assert len(branch_log(git_remote)) == 15
    assert git("rev-parse", "--is-shallow-repository", cwd=tmp_path / "runner").strip() == "true"

    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="no git remote 'upstream'"):
        Store("git+upstream")


def test_a_fresh_runner_loads_the_production_model_from_the_branch(git_remote, tmp_path, monkeypatch):
    from cd4ml import artifacts
    from cd4ml.stages.evaluate import load_model
    from cd4ml.stages.train import register_artifact

    url = f"git+file://{git_remote}#models"
    monkeypatch.setenv("CD4ML_ARTIFACTS", str(tmp_path / "first-artifacts"))
    with open_at(url, tmp_path / "first", monkeypatch) as first:
        run = first.start_run("wine")
        model, _ = register_artifact(first, pipeline="wine", run_id=run.id, task="classification",
                                     estimator={"weights": [1, 2, 3]}, signature={}, stats={},
                                     data_hash=None, git_commit=None, spec_hash=None)
    assert f"artifacts/wine/v{model.version}/model.pkl" in git(
        "--git-dir", str(git_remote), "ls-tree", "-r", "--name-only", "models")
    monkeypatch.setenv("CD4ML_ARTIFACTS", str(tmp_path / "second-artifacts"))
    import shutil

    shutil.rmtree(tmp_path / "first-artifacts")  # the first runner is gone
    with open_at(url, tmp_path / "second", monkeypatch) as second:
        prod = second.production_model("wine", None)
        assert prod is None  # not blessed yet
        again = second.model("wine", model.version)
        assert again.artifact_uri == str(tmp_path / "second-artifacts" / "wine" / "v1")
        assert load_model(again) == {"weights": [1, 2, 3]}
        # the sha256 check still guards the load
        (Path(again.artifact_uri) / "model.pkl").write_bytes(pickle.dumps({"weights": "evil"}))
        from cd4ml.errors import ArtifactError

        with pytest.raises(ArtifactError, match="does not match the recorded"):
            load_model(second.model("wine", model.version))
    assert artifacts.META_FILE == "model.json"


def test_a_model_over_the_size_limit_stays_local_with_a_warning(git_remote, tmp_path, monkeypatch, caplog):
    from cd4ml.stages.train import register_artifact

    monkeypatch.setenv("CD4ML_GIT_STORE_ARTIFACT_MB", "0.001")
    with open_at(f"git+file://{git_remote}", tmp_path / "h", monkeypatch) as store:
        run = store.start_run("wine")
        with caplog.at_level(logging.WARNING, "cd4ml.store.git"):
            register_artifact(store, pipeline="wine", run_id=run.id, task="classification",
                              estimator=list(range(2000)), signature={}, stats={}, data_hash=None,
                              git_commit=None, spec_hash=None)
    assert "over CD4ML_GIT_STORE_ARTIFACT_MB=0.001" in caplog.text
    assert "artifacts/" not in git("--git-dir", str(git_remote), "ls-tree", "-r", "--name-only",
                                   "cd4ml/state")


def test_branch_protection_refuses_with_one_clear_line(git_remote, tmp_path, monkeypatch):
    with open_at(f"git+file://{git_remote}", tmp_path / "h", monkeypatch) as store:
        write_some(store)
        hook = git_remote / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\necho 'GH006: Protected branch update failed' >&2\nexit 1\n")
        hook.chmod(0o755)
        before = rows(store)
        with pytest.raises(StoreError) as e:
            store.start_run("wine")
        assert "refused the push to branch 'cd4ml/state'" in str(e.value)
        assert "branch protection" in str(e.value) and "\n" not in str(e.value)
        assert rows(store) == before  # nothing half-written in the cache either
    assert len(branch_log(git_remote)) == 8


def test_http_with_the_workflow_token(git_http, tmp_path, monkeypatch):
    url = f"git+{git_http.url}"
    with pytest.raises(StoreError, match="cannot fetch branch 'cd4ml/state'.*GITHUB_TOKEN") as e:
        open_at(url, tmp_path / "none", monkeypatch)
    assert git_http.token not in str(e.value)

    monkeypatch.setenv("GITHUB_TOKEN", git_http.token)
    with open_at(url, tmp_path / "a", monkeypatch) as a:
        write_some(a)
        mine = rows(a)
    with open_at(url, tmp_path / "b", monkeypatch) as b:
        assert rows(b) == mine
    # the token is sent, and kept nowhere on disk
    assert all(auth for _, _, auth in git_http.requests[-3:])
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            assert git_http.token.encode() not in path.read_bytes(), path
    for commit_file in git("--git-dir", str(git_http.repo), "log", "-p", "cd4ml/state"):
        assert git_http.token not in commit_file


def test_a_network_failure_mid_write_is_all_or_nothing(git_http, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", git_http.token)
    with open_at(f"git+{git_http.url}", tmp_path / "a", monkeypatch) as store:
        run = store.start_run("wine")
        git_http.break_push = "before"
        with pytest.raises(StoreError, match=r"was not written") as e:
            store.finish_run(run.id, "succeeded")
        assert "\n" not in str(e.value) and git_http.token not in str(e.value)
        assert store.run(run.id).status == "running"  # not in the cache either
        assert len(branch_log(git_http.repo)) == 1

        git_http.break_push = "after"  # the branch moved, the answer was lost: it is written
        assert store.finish_run(run.id, "succeeded").status == "succeeded"
        git_http.break_push = None
        assert len(branch_log(git_http.repo)) == 2
        store.finish_run(run.id, "failed")
    with open_at(f"git+{git_http.url}", tmp_path / "b", monkeypatch) as other:
        assert other.run(run.id).status == "failed"


def add_file(remote: Path, tmp_path: Path, path: str, content: bytes, message: str) -> None:
    """Commit a file on the state branch by hand, as a person with push rights could."""
    work = tmp_path / "hand"
    if not work.exists():
        git("clone", "-q", "-b", "cd4ml/state", f"file://{remote}", str(work))
    git("pull", "-q", cwd=work)
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_bytes(content)
    git("add", path, cwd=work)
    git("-c", "user.name=h", "-c", "user.email=h@h", "commit", "-qm", message, cwd=work)
    git("push", "-q", "origin", "cd4ml/state", cwd=work)


def test_bad_records_are_named_and_skipped_or_refused(git_remote, tmp_path, monkeypatch, caplog):
    url = f"git+file://{git_remote}"
    with open_at(url, tmp_path / "a", monkeypatch) as a:
        write_some(a)
        good = rows(a)
    files = git("--git-dir", str(git_remote), "ls-tree", "-r", "--name-only", "cd4ml/state").split()
    first = next(f for f in files if "start_run" in f)
    original = git("--git-dir", str(git_remote), "show", f"cd4ml/state:{first}")
    add_file(git_remote, tmp_path, first, original.replace('"alice"', '"eve"').encode(), "edit")
    add_file(git_remote, tmp_path, "records/2026-01-01/zz/bad.json", b"{not json", "junk")
    forged = original.replace('"alice"', '"mallory"')
    add_file(git_remote, tmp_path, "records/2026-01-01/zz/forged.json", forged.encode(), "forged")

    with caplog.at_level(logging.WARNING, "cd4ml.store.git"), open_at(url, tmp_path / "b", monkeypatch) as b:
        assert rows(b) == good
        b.start_run("after")  # writes go on after skipped records
    assert f"changed {first} after it was written" in caplog.text
    assert "records/2026-01-01/zz/bad.json" in caplog.text and "not JSON" in caplog.text
    assert "forged.json" in caplog.text and "does not match its sha256" in caplog.text

    monkeypatch.setenv("CD4ML_GIT_STORE_BAD_RECORDS", "refuse")
    with pytest.raises(StoreError, match=r"record records/2026-01-01/zz/bad.json \(commit \w+\): not JSON"):
        open_at(url, tmp_path / "c", monkeypatch)


def test_a_rewritten_branch_rebuilds_the_cache(git_remote, tmp_path, monkeypatch, caplog):
    url = f"git+file://{git_remote}"
    with open_at(url, tmp_path / "a", monkeypatch) as a:
        write_some(a)
        git("--git-dir", str(git_remote), "update-ref", "refs/heads/cd4ml/state", "cd4ml/state~4")
        with caplog.at_level(logging.WARNING, "cd4ml.store.git"):
            a.sync()
        assert "was deleted or rewritten" in caplog.text
        assert len(a.runs()) == 1 and a.models("wine")[0].version == 1
        assert a.deployments() == []  # the deployment records were dropped with the commits
    with open_at(url, tmp_path / "b", monkeypatch) as b:
        assert rows(b) == rows(Store(url))


def test_a_lock_is_held_by_one_store_at_a_time(git_remote, tmp_path, monkeypatch):
    url = f"git+file://{git_remote}"
    a = open_at(url, tmp_path / "a", monkeypatch)
    b = open_at(url, tmp_path / "b", monkeypatch)
    with (a.lock("deploy:wine:prod", "job-a"),
          pytest.raises(StoreError, match="lock 'deploy:wine:prod' is held by job-a"),
          b.lock("deploy:wine:prod", "job-b", timeout=0.5)):
        pass
    with b.lock("deploy:wine:prod", "job-b", timeout=5):
        pass
    assert [s.split(":")[0] for s in branch_log(git_remote)] == ["unlock", "lock", "unlock", "lock"]


def test_a_long_lived_reader_keeps_up(git_remote, tmp_path, monkeypatch):
    url = f"git+file://{git_remote}"
    reader = open_at(url, tmp_path / "reader", monkeypatch)
    with open_at(url, tmp_path / "writer", monkeypatch) as writer:
        writer.start_run("wine")
    seen = reader.fingerprint()
    assert reader.runs() == []  # within the refresh interval: the cache as it was
    reader.refresh = 0.0
    assert reader.fingerprint() != seen  # the web view's cache key moves with the branch
    assert [r.pipeline for r in reader.runs()] == ["wine"]


def test_monitoring_writes_retry_when_the_branch_moved(git_remote, tmp_path, monkeypatch):
    """The WatchRecords mixin's writes (labels, monitoring) are named, and re-run on the
    branch's new state when another runner wrote first: nothing lost, nothing refused."""
    url = f"git+file://{git_remote}"
    with open_at(url, tmp_path / "a", monkeypatch) as a:
        write_some(a)
        model_id = a.model("wine", 1).id
    a, b = open_at(url, tmp_path / "a", monkeypatch), open_at(url, tmp_path / "b", monkeypatch)

    def label(request_id: str) -> dict:
        return {"pipeline": "wine", "request_id": request_id, "row_index": 0, "label": 1,
                "slices": {}, "label_time": None, "prediction_time": "2026-01-01T00:00:00",
                "model_version": 1, "source": "f" * 64}

    def monitoring(store: GitStore, rows: int):
        return store.record_monitoring("wine", "prod", model_id, "2026-01-01", "2026-01-02",
                                       rows, False, {})

    # a moves the branch; b, which has not seen it, writes on top
    assert a.record_labels([label("r1"), label("r2")]) == 2
    assert b.record_labels([label("r2"), label("r3")]) == 1  # r2 was a's: only r3 is new
    monitoring(a, 10)
    assert monitoring(b, 20).id == 2  # a's took id 1
    with open_at(url, tmp_path / "c", monkeypatch) as c:
        assert sorted(c.recorded_labels("wine", ["r1", "r2", "r3"])) == [
            ("r1", 0), ("r2", 0), ("r3", 0)]
        assert [m.rows for m in c.monitorings("wine")] == [20, 10]
        a.sync()
        assert rows(c) == rows(a) == rows(b)
    ops = [s.split(":")[0] for s in branch_log(git_remote)[:4]]
    assert ops == ["record_monitoring", "record_monitoring", "record_labels", "record_labels"]
    a.close()
    b.close()


def test_a_branch_written_in_the_layout_before_is_read(git_remote, tmp_path, monkeypatch):
    """Records of the one-level layout (``records/<day>/<xx>/``) and of today's two-level one
    on the same branch: a cold rebuild replays both, in commit order."""
    from cd4ml.store.journal import Record

    url = f"git+file://{git_remote}"

    def before(record: Record) -> str:
        clock = record.at[11:19].replace(":", "")
        return f"records/{record.at[:10]}/{record.id[:2]}/{clock}Z-{record.op}-{record.id}.json"

    with monkeypatch.context() as m, open_at(url, tmp_path / "old", monkeypatch) as old:
        m.setattr(Record, "path", property(before))
        write_some(old)
    with open_at(url, tmp_path / "new", monkeypatch) as new:
        write_some(new)
        mine = rows(new)
    depths = {f.count("/") for f in git("--git-dir", str(git_remote), "ls-tree", "-r",
                                          "--name-only", "cd4ml/state").split()}
    assert depths == {3, 4}
    with open_at(url, tmp_path / "cold", monkeypatch) as cold:
        assert rows(cold) == mine
        assert [m.version for m in cold.models("wine")] == [2, 1]
