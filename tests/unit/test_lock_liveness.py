"""The store's lock knows its holder: a lock whose process is gone is taken over at once (and
said so), a live one is waited for (and said who, since when), and its heartbeat moves while
it is held. The same on PostgreSQL and the git store: tests/integration/test_lock_liveness.py."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from cd4ml.errors import StoreError
from cd4ml.store import Lock, Store, liveness, locks, now
from tests.helpers import killed_lock_holder


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 's.db'}") as s:
        yield s


def _plant(store: Store, owner: str, heartbeat: datetime) -> None:
    """A lock row as another process (here: another host) left it."""
    with store.tx() as conn:
        conn.execute(locks.insert().values(name="deploy:wine:prod", holder="ci-bot@runner-7:4242#ab",
                                           expires_at=time.time() + 900, owner=owner,
                                           acquired_at=heartbeat.isoformat(),
                                           heartbeat_at=heartbeat.isoformat()))


def test_the_lock_of_a_killed_process_is_taken_over_at_once(store):
    killed_lock_holder(store.url, "deploy:wine:prod", "alice")
    taken: list[Lock] = []
    started = time.monotonic()
    with store.lock("deploy:wine:prod", "bob", timeout=10, on_takeover=taken.append):
        held = store.held_lock("deploy:wine:prod")
    assert time.monotonic() - started < 3  # not the 15 minutes of its expiry
    assert [t.holder.split("#")[0] for t in taken] == ["alice"]
    assert "alice (pid " in taken[0].who and " since " in taken[0].who
    assert held.holder.startswith("bob#") and held.owner == liveness.holder()
    assert store.held_lock("deploy:wine:prod") is None


def test_a_waiter_says_who_it_waits_for_and_a_live_holder_is_not_taken_over(store):
    waits: list[Lock] = []
    with store.lock("deploy:wine:prod", "alice"), \
            pytest.raises(StoreError, match=r"held by alice \(pid \d+ on .*\) since .*still working"), \
            store.lock("deploy:wine:prod", "bob", timeout=0.5, on_wait=waits.append,
                       on_takeover=lambda held: pytest.fail("a live holder was taken over")):
        pass
    assert len(waits) == 1 and waits[0].owner == liveness.holder()  # said once, not per retry


def test_a_holder_on_another_host_is_gone_when_its_heartbeat_is_stale(store):
    fresh = datetime.now(UTC) - timedelta(seconds=liveness.STALE_AFTER / 2)
    _plant(store, "runner-7:4242:99", fresh)
    with pytest.raises(StoreError, match="ci-bot"), store.lock("deploy:wine:prod", "bob", timeout=0.3):
        pass
    with store.tx() as conn:
        conn.execute(locks.delete())
    _plant(store, "runner-7:4242:99", datetime.now(UTC) - timedelta(seconds=liveness.STALE_AFTER * 2))
    taken: list[Lock] = []
    with store.lock("deploy:wine:prod", "bob", timeout=5, on_takeover=taken.append):
        pass
    assert [t.owner for t in taken] == ["runner-7:4242:99"]


def test_a_reused_pid_is_not_the_holder(store):
    # this very pid, but a process that started at another time: the holder is gone
    me = liveness.holder()
    host, pid, _ = me.split(":")
    _plant(store, f"{host}:{pid}:1", datetime.now(UTC))
    with store.lock("deploy:wine:prod", "bob", timeout=5):
        pass
    assert pid == str(os.getpid())


def test_the_heartbeat_moves_while_the_lock_is_held(store, monkeypatch):
    monkeypatch.setattr(liveness, "BEAT_EVERY", 0.05)
    with store.lock("deploy:wine:prod", "alice"):
        first = store.held_lock("deploy:wine:prod")
        time.sleep(0.4)
        later = store.held_lock("deploy:wine:prod")
    assert later.heartbeat_at > first.heartbeat_at and later.expires_at > first.expires_at
    assert later.acquired_at == first.acquired_at and first.acquired_at <= now()
