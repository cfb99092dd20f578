"""Eight CI jobs on eight fresh runners write one git store at once: each its own clone and its
own empty ``.cd4ml/``, each running ``cd4ml run -p pipelines/wine.yaml --force`` and then taking
the deploy lock. Over file:// and over HTTP.

No record may be lost, the model versions must be 1..8, the lock never held by two jobs at once,
every job's cache must equal a cold rebuild from the branch row for row, and the store must hold
the same rows as the same work written into one SQLite file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.test_store_git import git, rows

WRITERS = 8
ROOT = Path(__file__).resolve().parents[2]

LOCKER = """
import sys, time
from cd4ml.store import Store
store = Store()
with store.lock("deploy:wine:production", holder=sys.argv[1], timeout=300):
    entered = time.time()
    time.sleep(0.3)
    left = time.time()
with open(sys.argv[2], "a") as f:
    f.write(f"{sys.argv[1]} {entered} {left}\\n")
"""


def project(tmp: Path) -> Path:
    """The example project, as a git repository (the runners clone it)."""
    src = tmp / "project"
    shutil.copytree(ROOT / "pipelines", src / "pipelines")
    wine = src / "pipelines" / "wine.yaml"
    wine.write_text(wine.read_text().replace("n_estimators: 100", "n_estimators: 10"))
    git("init", "-q", "-b", "main", str(src))
    git("add", ".", cwd=src)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project", cwd=src)
    return src


def run_jobs(tmp: Path, src: Path, store_url: str, extra_env: dict[str, str]) -> list[Path]:
    """WRITERS jobs at once, each in its own clone; their clones."""
    clones, procs = [], []
    held = tmp / "held.txt"
    for i in range(WRITERS):
        clone = tmp / f"runner{i}"
        git("clone", "-q", "--depth", "1", f"file://{src}", str(clone))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CD4ML_"))}
        env.update(extra_env, PYTHONPATH=str(ROOT), CD4ML_HOME=str(clone / ".cd4ml"),
                   CD4ML_STORE_URL=store_url, GITHUB_ACTOR=f"job{i}")
        script = (f"{sys.executable} -m cd4ml run -p pipelines/wine.yaml --force >out.txt 2>&1 && "
                  f"{sys.executable} -c '{LOCKER}' job{i} {held} >>out.txt 2>&1")
        procs.append(subprocess.Popen(["sh", "-c", script], cwd=clone, env=env))
        clones.append(clone)
    deadline = time.monotonic() + 600
    for proc, clone in zip(procs, clones, strict=True):
        code = proc.wait(timeout=max(1, deadline - time.monotonic()))
        assert code == 0, f"{clone.name} failed:\n{(clone / 'out.txt').read_text()[-3000:]}"
    spans = sorted(tuple(map(float, line.split()[1:])) for line in held.read_text().splitlines())
    assert len(spans) == WRITERS
    for (_, left), (entered, _) in pairwise(spans):
        assert entered >= left, "two jobs held the deploy lock at once"
    return clones


def summary(store) -> dict:
    """What the work produced, without what differs between two runs of it (ids, times, paths,
    which job came first)."""
    from cd4ml.store import metadata

    out = {}
    with store.read() as conn:
        for t in metadata.sorted_tables:
            # production metrics: how many jobs found a blessed model to compare with depends on
            # who finished first, on any store
            if t.name not in ("schema_version", "metrics"):
                out[f"count {t.name}"] = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
    out["versions"] = sorted(m.version for m in store.models("wine", limit=100))
    out["statuses"] = Counter(r.status for r in store.runs(limit=100))
    out["candidate metrics"] = Counter(
        (m.name, m.value, m.slice, m.slice_value) for r in store.runs(limit=100)
        for m in store.metrics(r.id) if m.scope == "candidate")
    out["gates"] = Counter(store.gate(r.id).passed for r in store.runs(limit=100))
    out["datasets"] = [(d.hash, d.rows) for d in (store.dataset(r.data_hash) for r in store.runs(limit=1)) if d]
    return out


@pytest.fixture(scope="module")
def sqlite_summary(tmp_path_factory):
    """The same work written into one SQLite file."""
    from cd4ml.store import Store

    tmp = tmp_path_factory.mktemp("sqlite")
    url = f"sqlite:///{tmp / 'shared.db'}"
    run_jobs(tmp, project(tmp), url, {})
    with Store(url) as store:
        return summary(store)


@pytest.mark.parametrize("transport", ["file", "http"])
def test_eight_jobs_write_one_git_store(transport, tmp_path, monkeypatch, request, sqlite_summary):
    from cd4ml.store import Store

    if transport == "file":
        remote = tmp_path / "state.git"
        git("init", "-q", "--bare", str(remote))
        url, env = f"git+file://{remote}", {}
    else:
        server = request.getfixturevalue("git_http")
        remote, url, env = server.repo, f"git+{server.url}", {"GITHUB_TOKEN": server.token}
        monkeypatch.setenv("GITHUB_TOKEN", server.token)
    clones = run_jobs(tmp_path, project(tmp_path), url, env)

    monkeypatch.setenv("CD4ML_HOME", str(tmp_path / "auditor"))
    with Store(url) as cold:
        built = rows(cold)
        assert summary(cold) == sqlite_summary
        assert sorted(m.version for m in cold.models("wine")) == list(range(1, WRITERS + 1))
    # every job's own cache, brought up to date, is the same store row for row
    for clone in clones:
        monkeypatch.setenv("CD4ML_HOME", str(clone / ".cd4ml"))
        with Store(url) as store:
            assert rows(store) == built, clone.name
    log = git("--git-dir", str(remote), "log", "--format=%an %s", "cd4ml/state").splitlines()
    assert sum(" register_model: " in line for line in log) == WRITERS
    assert {line.split()[0] for line in log} == {f"job{i}" for i in range(WRITERS)}
