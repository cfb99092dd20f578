"""Monitoring a real deployment: the wine model served by its cd4ml image on the local target,
answering HTTP requests; normal rows, then rows with two features shifted; labels for part of
the requests; a second version deployed mid-window. Everything ``cd4ml monitor`` reads is what
the containers wrote to the host's prediction logs and what their /metrics say.

Ports 18901 (staging) from this suite's own range (18900-18999)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import yaml

from tests.helpers import ROOT, build_env, wine_spec_dict
from tests.watch_world import SHIFTED, shifted

pytestmark = pytest.mark.docker
PORT = 18901


@pytest.fixture(scope="module")
def live(tmp_path_factory, docker_client):
    """A spec with one local environment, two evaluated, built and validated versions."""
    from cd4ml.release.build import build
    from cd4ml.spec import load_spec
    from cd4ml.stages.evaluate import evaluate
    from cd4ml.store import Store
    from tests.helpers import train_version

    tmp = tmp_path_factory.mktemp("monitor")
    raw = wine_spec_dict()
    raw["image"]["repository"] = "cd4ml-test/monitor-wine"
    raw["environments"] = {"staging": {"target": "local", "port": PORT, "health_timeout": 30}}
    raw["monitoring"] = {"min_labels": 20}
    spec_path = tmp / "wine.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    url = f"sqlite:///{tmp / 'store.db'}"
    with build_env(tmp) as env:
        spec = load_spec(spec_path)
        with Store(url) as store:
            versions = {}
            for seed in (1, 2):
                model = train_version(spec, store, seed)
                evaluate(spec, store, model, model.run_id)
                assert build(spec, store, model, latency_requests=20).infra.passed
                versions[model.version] = store.model_by_id(model.id)
        yield {"spec_path": spec_path, "url": url, "env": env, "versions": versions, "tmp": tmp}
    from docker.errors import ImageNotFound

    for tag in ("1", "2"):
        try:  # untag only: the layers stay as the build cache of the next run
            docker_client.images.remove(f"cd4ml-test/monitor-wine:{tag}", force=True, noprune=True)
        except ImageNotFound:
            continue


def _cli(live, *args):
    env = {**live["env"], "CD4ML_HOME": os.environ["CD4ML_HOME"], "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cd4ml", *args, "-p", str(live["spec_path"]),
                           "--store", live["url"]], capture_output=True, text=True, env=env,
                          timeout=300, check=False, cwd=ROOT)


def _send(session, frame, names, prefix):
    """One request per row, each with its own X-Request-ID; the ids."""
    ids = []
    for i, row in enumerate(frame[names].itertuples(index=False)):
        rid = f"{prefix}-{i}"
        body = {"instances": [{n: float(v) for n, v in zip(names, row)}]}
        r = session.post(f"http://127.0.0.1:{PORT}/predict", json=body, timeout=30,
                         headers={"X-Request-ID": rid})
        assert r.status_code == 200, r.text
        ids.append(rid)
    return ids


def _now():
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_monitor_a_live_deployment(live):
    import pandas as pd
    import requests
    from sklearn.metrics import accuracy_score

    from cd4ml.release.deploy import deploy
    from cd4ml.release.targets.local import LocalTarget
    from cd4ml.spec import load_spec
    from cd4ml.stages.evaluate import load_model
    from cd4ml.store import Store

    spec = load_spec(live["spec_path"])
    v1 = live["versions"][1]
    names = [i["name"] for i in v1.signature["inputs"]]
    frame = pd.read_csv(spec.data.path).sample(frac=1.0, random_state=0)
    session = requests.Session()
    try:
        with Store(live["url"]) as store:
            assert deploy(spec, store, "staging", 1).status == "healthy"
        t0 = _now()
        normal = _send(session, frame, names, "normal")
        bad = session.post(f"http://127.0.0.1:{PORT}/predict", json={"instances": [{"x": 1}]},
                           headers={"X-Request-ID": "refused-1"}, timeout=30)
        assert bad.status_code == 422
        time.sleep(0.05)
        t1 = _now()
        _send(session, shifted(frame), names, "shifted")
        time.sleep(0.05)
        t2 = _now()
        with Store(live["url"]) as store:
            assert deploy(spec, store, "staging", 2).status == "healthy"
        _send(session, frame.iloc[:60], names, "second")
        time.sleep(1.0)  # the servers' log writers flush in the background
        t3 = _now()

        # the normal window passes; the server's own /metrics are read beside the log
        quiet = _cli(live, "monitor", "--env", "staging", "--from", t0, "--to", t1, "--json")
        assert quiet.returncode == 0, quiet.stderr + quiet.stdout
        found = json.loads(quiet.stdout)
        (v,) = found["versions"]
        assert (v["model_version"], v["rows"], v["refused"]) == (1, len(frame), 1)
        assert not v["breaches"] and v["judged"]
        assert found["traffic"] and found["traffic"][0]["model_version"] == "2"

        # the shifted window: exactly the two features, and the predictions
        loud = _cli(live, "monitor", "--env", "staging", "--from", t1, "--to", t2)
        assert loud.returncode == 1, loud.stderr + loud.stdout
        assert "monitoring: 3 breaches" in loud.stdout
        shifted_json = json.loads(_cli(live, "monitor", "--env", "staging", "--from", t1,
                                       "--to", t2, "--json", "--no-scrape").stdout)
        (s,) = shifted_json["versions"]
        assert sorted(d["feature"] for d in s["drift"] if d["drifted"]) == sorted(SHIFTED)
        assert s["prediction_drift"]["drifted"]

        # labels for every other normal request: realised accuracy is scikit-learn's
        labelled = frame.iloc[::2]
        labels = live["tmp"] / "labels.csv"
        labels.write_text("request_id,label,alcohol_level\n" + "".join(
            f"{normal[i]},{frame['target'].iloc[i]},{frame['alcohol_level'].iloc[i]}\n"
            for i in range(0, len(frame), 2)))
        added = _cli(live, "labels", "add", str(labels))
        assert added.returncode == 0, added.stderr + added.stdout
        assert f"{len(labelled)} added" in added.stdout
        again = _cli(live, "labels", "add", str(labels))
        assert "0 added" in again.stdout and f"{len(labelled)} already recorded" in again.stdout
        judged = json.loads(_cli(live, "monitor", "--env", "staging", "--from", t0, "--to", t1,
                                 "--json", "--no-scrape").stdout)
        (j,) = judged["versions"]
        overall = next(r for r in j["realised"] if r["metric"] == "accuracy" and not r["slice"])
        expected = accuracy_score(labelled["target"], load_model(v1).predict(labelled[names]))
        assert overall["rows"] == len(labelled)
        assert overall["value"] == pytest.approx(expected, abs=1e-12)
        assert overall["low"] <= overall["value"] <= overall["high"]
        assert j["estimate"]["is_estimate"]

        # the version deployed mid-window is reported on its own
        whole = json.loads(_cli(live, "monitor", "--env", "staging", "--from", t0, "--to", t3,
                                "--json", "--no-scrape").stdout)
        assert [(x["model_version"], x["rows"]) for x in whole["versions"]] == [
            (1, 2 * len(frame)), (2, 60)]
        assert whole["versions"][1]["first"] > t2

        # lineage lists what monitoring found for the version
        lineage = json.loads(_cli(live, "lineage", "wine:1", "--json").stdout)
        assert any(m["breached"] for m in lineage["monitorings"])
        assert all(m["environment"] == "staging" for m in lineage["monitorings"])
    finally:
        LocalTarget().teardown(spec, spec.environment("staging"))
