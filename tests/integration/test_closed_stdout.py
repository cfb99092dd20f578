"""``cd4ml run ... | head -3``: the reader closing the pipe is not a failed pipeline. A real
shell pipe, a training entry point that keeps printing after the reader has gone, and the store
afterwards: the run is recorded as succeeded, and cd4ml exits quietly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cd4ml.store import Store

ROOT = Path(__file__).resolve().parents[2]

#: an entry point that writes far more than a pipe holds (64 KiB), before and after training
CHATTY = '''
import sys


def train(run, data):
    from sklearn.tree import DecisionTreeClassifier

    for i in range(20_000):
        print(f"epoch {i}: still training, and saying so at length")
    model = DecisionTreeClassifier(random_state=data.seed).fit(data.X, data.y)
    print("trained", file=sys.stderr)
    for i in range(20_000):
        print(f"after {i}: logging")
    run.log_model(model, signature_from=data.X)
'''


@pytest.fixture
def chatty(tmp_path):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    shutil.copytree(ROOT / "pipelines" / "data", pipelines / "data")
    raw = yaml.safe_load((ROOT / "pipelines" / "wine.yaml").read_text())
    raw.pop("expectations", None)
    raw["name"] = "chatty"
    raw["model"] = {"task": "classification", "entry_point": "chatty_train.py", "seed": 1}
    raw["gates"] = [{"metric": "accuracy", "min": 0.5}]
    (pipelines / "chatty.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (pipelines / "chatty_train.py").write_text(CHATTY)
    return tmp_path


@pytest.mark.parametrize("redirect", ["", "2>&1"], ids=["stdout", "stdout-and-stderr"])
def test_run_piped_into_head_is_recorded_as_succeeded(chatty, redirect):
    url = f"sqlite:///{chatty / 'store.db'}"
    env = {**os.environ, "CD4ML_STORE_URL": url, "NO_COLOR": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = (f"{sys.executable} -m cd4ml run -p chatty {redirect} | head -3; "
               "echo \"exit=${PIPESTATUS[0]}\" >&2")
    done = subprocess.run(["bash", "-c", command], cwd=chatty, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert len(done.stdout.splitlines()) == 3
    assert done.stderr.strip().splitlines()[-1] == "exit=0", done.stderr
    assert "Error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    with Store(url) as store:
        runs = store.runs("chatty")
        assert [(r.status, r.error) for r in runs] == [("succeeded", None)]
        assert store.model_for_run(runs[0].id).blessed
