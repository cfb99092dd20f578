"""A tracked run (``cd4ml.start_run`` in a script of one's own, without ``cd4ml run``) beats while
the script works, and one whose script was killed is shown abandoned, marked so by the next run,
and the model version it registered but never got blessed is marked bad: nothing builds or
deploys it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cd4ml
from cd4ml.cli import main
from cd4ml.store import Store, liveness
from tests.helpers import ROOT

SCRIPT = """
import sys, time
import pandas as pd
from sklearn.tree import DecisionTreeClassifier
import cd4ml

frame = pd.read_csv(sys.argv[2])
X, y = frame.drop(columns=["target", "alcohol_level"]), frame["target"]
run = cd4ml.start_run("wine", store=sys.argv[1])
run.log_model(DecisionTreeClassifier(max_depth=2).fit(X, y), signature_from=X, y=y)
print(run.id, run.model.version, flush=True)
time.sleep(120)  # killed here, before the run is gated or ended
"""


def test_a_tracked_run_beats_while_the_script_works(tmp_path, monkeypatch):
    monkeypatch.setattr(liveness, "BEAT_EVERY", 0.05)
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        run = cd4ml.start_run("wine", store=store)
        started = store.run(run.id).heartbeat_at
        time.sleep(0.4)
        beating = store.run(run.id).heartbeat_at
        run.end()
        ended = store.run(run.id).heartbeat_at
        time.sleep(0.2)
        assert beating > started
        assert store.run(run.id).heartbeat_at == ended  # the beat stops with the run


def test_a_killed_tracked_script_is_abandoned_and_its_unblessed_model_marked_bad(
        tmp_path, pipelines_dir, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), url, str(pipelines_dir / "data" / "wine.csv")],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        run_id, version = proc.stdout.readline().split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    assert main(["runs", "--store", url]) == 0
    assert "abandoned" in capsys.readouterr().out
    with Store(url) as store:
        assert not store.model("wine", int(version)).bad
        cd4ml.start_run("wine", store=store).end()  # the next run of the pipeline
        dead = store.run(run_id)
        assert dead.status == "abandoned" and "ended without finishing" in dead.error
        model = store.model("wine", int(version))
        assert model.bad and not model.blessed
        assert store.latest_model("wine", blessed=True) is None
