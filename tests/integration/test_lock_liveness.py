"""A lock whose holder was killed is taken over at once on every store backend: a real
PostgreSQL (tests/fixtures/postgres.py) and the git store over file:// (each process with its
own cache, as two CI runners), as on SQLite (tests/unit/test_lock_liveness.py)."""

from __future__ import annotations

import time

import pytest

from cd4ml.store import Lock, Store
from tests.helpers import killed_lock_holder


@pytest.fixture(params=["postgresql", "git"])
def backend(request, tmp_path, monkeypatch):
    """(store URL, environment of the killed process)."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url"), {}
    remote = request.getfixturevalue("git_remote")
    monkeypatch.setenv("CD4ML_HOME", str(tmp_path / "taker"))
    return f"git+file://{remote}", {"CD4ML_HOME": str(tmp_path / "killed")}


def test_the_lock_of_a_killed_process_is_taken_over_at_once(backend):
    url, env = backend
    killed_lock_holder(url, "deploy:wine:production", "alice", env)
    taken: list[Lock] = []
    with Store(url) as store:
        started = time.monotonic()
        with store.lock("deploy:wine:production", "bob", timeout=20, on_takeover=taken.append):
            held = store.held_lock("deploy:wine:production")
        took = time.monotonic() - started
        assert store.held_lock("deploy:wine:production") is None
    assert took < 10, took  # not the 15 minutes of its expiry
    assert [t.holder.split("#")[0] for t in taken] == ["alice"]
    assert held is not None and held.holder.startswith("bob#")
