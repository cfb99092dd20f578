"""What ``cd4ml monitor`` costs on a long prediction log, next to the obvious pandas way.

A log of ROWS predictions of the wine model (the wine rows over and over, each line as the
server writes it: inputs, prediction, probabilities, a fresh request id), then, each in its own
process so that peak memory (max RSS) is its own:

  (a) cd4ml: ``monitor`` of the log over a window that holds it all (streaming; drift of 13
      features, prediction drift, input quality, confidence estimate; recorded in a store);
  (b) the peer: ``pandas.read_json(lines=True)`` of the same log, the inputs flattened with
      ``json_normalize``, and a numpy PSI per feature against the same training bins (drift
      only, nothing else).

(a) reads a log this long with one process per core (at most four); the peak memory of the
main process and of its largest worker are shown apart, and CPU time is the sum of all.
Target: (a) <= 10 s and <= 500 MB. Run: python bench/bench_monitor.py [ROWS]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000


def prepare(tmp: Path) -> tuple[str, Path]:
    """Train the wine model into a store under ``tmp``; write the log. (store URL, log path)"""
    import orjson

    from cd4ml.spec import load_spec
    from cd4ml.stages.data import load_frame
    from cd4ml.stages.evaluate import evaluate, load_model
    from cd4ml.stages.train import train
    from cd4ml.store import Store

    os.environ["CD4ML_ARTIFACTS"] = str(tmp / "artifacts")
    spec = load_spec(ROOT / "pipelines" / "wine.yaml")
    url = f"sqlite:///{tmp / 'store.db'}"
    with Store(url) as store:
        run = store.start_run(spec.name)
        model = train(spec, store, run.id).model
        evaluate(spec, store, model, run.id)
    names = [i["name"] for i in model.signature["inputs"]]
    frame = load_frame(spec.data)[names]
    estimator = load_model(model)
    labels, proba = estimator.predict(frame), estimator.predict_proba(frame)
    classes = [str(c) for c in estimator.classes_]
    rows = [{k: float(v) for k, v in zip(names, r)} for r in frame.itertuples(index=False)]
    head = {"pipeline": spec.name, "model_version": model.version, "model_sha256": model.sha256}
    log = tmp / "predictions.jsonl"
    start = time.time() - ROWS / 1000  # a thousand predictions a second, ending now
    with open(log, "wb") as f:
        for i in range(ROWS):
            j = i % len(rows)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i / 1000))
            f.write(orjson.dumps({"time": f"{stamp}.{i % 1000:03d}000Z",
                                  "request_id": uuid.uuid4().hex, **head, "inputs": [rows[j]],
                                  "predictions": [int(labels[j])],
                                  "probabilities": [dict(zip(classes, proba[j].tolist()))]})
                    + b"\n")
    return url, log


def child_cd4ml(url: str, log: str) -> None:
    from cd4ml.spec import load_spec
    from cd4ml.store import Store
    from cd4ml.watch.monitor import MonitorConfig, monitor
    from cd4ml.watch.window import window

    spec = load_spec(ROOT / "pipelines" / "wine.yaml")
    with Store(url) as store:
        result = monitor(spec, store, MonitorConfig("production", window("30d"), logs=(log,),
                                                    scrape=False))
    v = result.versions[0]
    me, workers = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(json.dumps({"rows": v.rows, "drifted": [d.feature for d in v.drift if d.drifted],
                      "workers_peak_mb": workers.ru_maxrss / 1024,
                      "cpu_s": me.ru_utime + me.ru_stime + workers.ru_utime + workers.ru_stime,
                      "peak_mb": me.ru_maxrss / 1024}))


def child_pandas(url: str, log: str) -> None:
    import numpy as np
    import pandas as pd

    from cd4ml.store import Store

    with Store(url) as store:
        stats = store.models("wine")[0].stats
    frame = pd.read_json(log, lines=True)  # dtype inference as pandas does it by default
    inputs = pd.json_normalize(frame["inputs"].str[0])
    drifted = []
    for name, s in stats.items():
        interior = np.asarray(s["edges"])[1:-1]
        values = inputs[name].to_numpy(dtype="float64")
        actual = np.bincount(np.searchsorted(interior, values, side="right"), minlength=10) / len(values)
        e = np.maximum(np.asarray(s["proportions"]), 1e-4)
        a = np.maximum(actual, 1e-4)
        if float(np.sum((a - e) * np.log(a / e))) > 0.25:
            drifted.append(name)
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"rows": len(inputs), "drifted": drifted, "cpu_s": me.ru_utime + me.ru_stime,
                      "workers_peak_mb": 0, "peak_mb": me.ru_maxrss / 1024}))


def measure(which: str, url: str, log: Path) -> tuple[float, dict, str]:
    """Seconds (the whole process: start-up and imports included), its resources (peak MB of
    the process and of its largest worker, CPU seconds of all), and what it found."""
    began = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, f"--child={which}", url, str(log)],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    took = time.perf_counter() - began
    found = json.loads(out.stdout.strip().splitlines()[-1])
    used = {k: found.pop(k) for k in ("peak_mb", "workers_peak_mb", "cpu_s")}
    return took, used, json.dumps(found)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        url, log = prepare(tmp)
        size = log.stat().st_size / 1e6
        print(f"log: {ROWS:,} predictions, {size:.0f} MB, written in "
              f"{time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.1f}")
        cd_time, cd_used, cd_out = measure("cd4ml", url, log)
        pd_time, pd_used, pd_out = measure("pandas", url, log)
    print(f"{'path':<44} {'wall':>8} {'CPU':>8} {'peak RSS':>9} {'worker peak':>12}")
    for label, took, used in (("cd4ml monitor (streaming, everything)", cd_time, cd_used),
                              ("pandas read_json + numpy PSI (drift only)", pd_time, pd_used)):
        print(f"{label:<44} {took:>7.2f}s {used['cpu_s']:>7.2f}s {used['peak_mb']:>7.0f}MB "
              f"{used['workers_peak_mb']:>10.0f}MB")
    print(f"  cd4ml: {cd_out}\n  pandas: {pd_out}")
    ok = cd_time <= 10 and max(cd_used["peak_mb"], cd_used["workers_peak_mb"]) <= 500
    print(f"target <= 10 s and <= 500 MB: {'pass' if ok else 'FAIL'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("--child="):
        {"cd4ml": child_cd4ml, "pandas": child_pandas}[sys.argv[1].split("=", 1)[1]](*sys.argv[2:4])
    else:
        main()
