"""A run left running by a process that died (kill -9, a cancelled job) is abandoned: shown so at
once, and marked so by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cd4ml.cli import main
from cd4ml.store import Store
from cd4ml.store.liveness import STALE_AFTER, is_abandoned

ROOT = Path(__file__).resolve().parents[2]


def _killed_run(url: str) -> str:
    """Start a run in another process, kill -9 it mid-way, return the run's id."""
    code = ("import sys, time; from cd4ml.store import Store; "
            f"r = Store({url!r}).start_run('wine'); print(r.id, flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    run_id = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return run_id


def test_a_killed_run_is_abandoned_and_the_next_run_marks_it(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    run_id = _killed_run(url)
    store = Store(url)
    assert store.run(run_id).status == "running"
    assert is_abandoned(store.run(run_id))
    assert main(["runs", "--store", url]) == 0
    assert "abandoned" in capsys.readouterr().out
    assert [r.id for r in store.abandon_dead_runs("wine")] == [run_id]
    marked = store.run(run_id)
    assert marked.status == "abandoned" and "ended without finishing" in marked.error
    assert store.abandon_dead_runs("wine") == []


def test_a_live_run_is_not_abandoned(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    run = store.start_run("wine")
    assert not is_abandoned(run)
    assert store.abandon_dead_runs("wine") == []


def test_a_run_on_another_host_is_abandoned_when_its_heartbeat_is_stale(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    run = replace(store.start_run("wine"), holder="ci-runner-7:4242:1")
    now = datetime.now(UTC)
    fresh = (now - timedelta(seconds=STALE_AFTER / 2)).isoformat()
    stale = (now - timedelta(seconds=STALE_AFTER * 2)).isoformat()
    assert not is_abandoned(replace(run, heartbeat_at=fresh), now)
    assert is_abandoned(replace(run, heartbeat_at=stale), now)


def test_the_heartbeat_moves_while_a_run_works(tmp_path):
    from cd4ml.store.liveness import Heartbeat

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    run = store.start_run("wine")
    with Heartbeat(store, run.id, every=0.05):
        time.sleep(0.3)
    assert store.run(run.id).heartbeat_at > run.heartbeat_at
