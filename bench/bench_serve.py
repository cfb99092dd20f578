"""The cd4ml model server against MLflow's, on the same model, machine and load.

A RandomForestClassifier(n_estimators=100) is fitted on scikit-learn's wine data (a DataFrame)
and saved twice: as a cd4ml artifact and as an MLflow model. Each server is started, timed from
process start to its first answered prediction, then loaded with single-row requests (the same
``dataframe_split`` body, which both accept) at concurrency 1 and 16 over keep-alive
connections, for a fixed duration each. The load generator is ``wrk`` when installed (apt-get
install wrk), else threads with http.client. Also printed: the in-process floor
(``model.predict`` of one row, and the cd4ml predictor's shortcut).

Targets: >= 3x MLflow's req/s and <= 1/3 of its p99 at c=1 and c=16; first prediction within
1 s of process start.

MLflow runs from the Python named by ``--mlflow-python`` (or $MLFLOW_PYTHON); without one,
this Python if it has mlflow; else the shared benchmark virtualenv of bench/mlflow_env.py, made on first use; if MLflow cannot be installed
the MLflow column is skipped.

Run: python bench/bench_serve.py [--seconds 10] [--mlflow-python PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pickle
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# this bench's share of the helper port range
PORT_CD4ML, PORT_CD4ML_W2, PORT_MLFLOW = 18010, 18011, 18020
STARTS = 3  # process starts per server, for the start-up median

SAVE_MLFLOW = """
import json, pickle, sys
import pandas as pd
import mlflow.sklearn
from mlflow.models import infer_signature
model = pickle.load(open(sys.argv[1], "rb"))
X = pd.DataFrame(json.load(open(sys.argv[2])))
# MLflow 3 stores sklearn models with skops, which asks for trees to be trusted explicitly
mlflow.sklearn.save_model(model, sys.argv[3], signature=infer_signature(X, model.predict(X)),
                          skops_trusted_types=["sklearn.tree._tree.Tree"])
"""


# ------------------------------------------------------------------------------- the model


def make_models(work: Path, mlflow_python: str | None) -> dict:
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    from cd4ml import artifacts
    from cd4ml.stages.drift import feature_stats
    from cd4ml.stages.train import input_signature

    X, y = load_wine(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)
    directory, sha = artifacts.save(work / "cd4ml", "wine", model)
    artifacts.write_meta(directory, artifacts.ArtifactMeta(
        pipeline="wine", task="classification", sha256=sha, version=1,
        signature=input_signature(X, "target", sorted(int(c) for c in y.unique())),
        stats=feature_stats(X, list(X.columns))))
    mlflow_dir = None
    if mlflow_python:
        (work / "model.pkl").write_bytes(pickle.dumps(model))
        (work / "X.json").write_text(X.to_json(orient="columns"))
        mlflow_dir = work / "mlflow-model"
        subprocess.run([mlflow_python, "-c", SAVE_MLFLOW, str(work / "model.pkl"),
                        str(work / "X.json"), str(mlflow_dir)], check=True, capture_output=True)
    row = X.iloc[[0]]
    body = json.dumps({"dataframe_split": {"columns": list(X.columns),
                                           "data": row.to_numpy().tolist()}}).encode()
    return {"model": model, "X": X, "row": row, "cd4ml_dir": directory, "mlflow_dir": mlflow_dir,
            "body": body}


def in_process(m: dict) -> dict[str, float]:
    """Median milliseconds of one-row predictions in this process: the floor of any server."""
    from cd4ml.artifacts import read_meta
    from cd4ml.serve.predictor import Predictor, quiet_positional
    from cd4ml.serve.schema import decode, fields_of, parse

    model, row = m["model"], m["row"]
    meta = read_meta(m["cd4ml_dir"])
    predictor = Predictor(model, fields_of(meta.signature), meta.task, meta.stats)
    quiet_positional()
    rows = parse(decode(m["body"]), predictor.fields).rows

    def median_ms(f, n=300) -> float:
        f()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3

    return {"model.predict": median_ms(lambda: model.predict(row)),
            "model.predict_proba": median_ms(lambda: model.predict_proba(row)),
            "cd4ml predictor (labels+proba)": median_ms(lambda: predictor.predict(rows))}


# ------------------------------------------------------------------------------- servers


def post(url: str, body: bytes, timeout: float = 2.0) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except OSError:
        return 0


class Proc:
    def __init__(self, argv: list[str], url: str, body: bytes, logs: Path, env: dict | None = None):
        self.url, self.body = url, body
        # open for the server's lifetime, closed in stop()
        self.out = open(logs.with_suffix(".out"), "w")  # noqa: SIM115
        self.err = open(logs.with_suffix(".err"), "w")  # noqa: SIM115
        self.t0 = time.perf_counter()
        # a process group of its own: MLflow's server is a tree of processes
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.err, cwd=ROOT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def first_prediction(self, timeout: float = 120) -> float:
        while time.perf_counter() - self.t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args[:4]} exited {self.proc.returncode}; see "
                                   f"{self.err.name}")
            if post(self.url, self.body, timeout=1.0) == 200:
                return time.perf_counter() - self.t0
            time.sleep(0.01)
        raise RuntimeError(f"no prediction from {self.url} within {timeout} s; see {self.err.name}")

    def stop(self) -> None:
        """Stop the whole process group and wait until none of it is left.

        MLflow's uvicorn is a child that outlives its parent by a moment: a next start could
        otherwise be answered by the old server, and then find its port taken."""
        _signal_group(self.proc.pid, signal.SIGTERM)
        for patience, then in ((30, signal.SIGKILL), (10, None)):
            deadline = time.monotonic() + patience
            while _signal_group(self.proc.pid, 0) and time.monotonic() < deadline:
                self.proc.poll()  # reap our own child, or the group never empties
                time.sleep(0.05)
            if not _signal_group(self.proc.pid, 0) or then is None:
                break
            _signal_group(self.proc.pid, then)
        self.proc.wait()
        self.out.close()
        self.err.close()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False once the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # only zombies left, waiting to be reaped
        return True


def cd4ml_argv(m: dict, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "cd4ml.serve", "--model-dir", str(m["cd4ml_dir"]), "--host",
            "127.0.0.1", "--port", str(port), "--workers", str(workers)]


def mlflow_argv(python: str, m: dict) -> list[str]:
    return [python, "-m", "mlflow", "models", "serve", "-m", str(m["mlflow_dir"]),
            "--env-manager", "local", "--host", "127.0.0.1", "-p", str(PORT_MLFLOW)]


# ------------------------------------------------------------------------------- load


def wrk(url: str, body: bytes, concurrency: int, seconds: float, work: Path) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = {json.dumps(body.decode())}\n")
    threads = min(concurrency, 2)
    done = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s",
                           "--timeout", "10s", "--latency", "-s", str(script), url],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed against {url}: {(done.stderr or done.stdout).strip()}")
    out = done.stdout

    def ms(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        value, unit = found.groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": ms("50"), "p99": ms("99"),
            "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def threads_load(url: str, body: bytes, concurrency: int, seconds: float, work: Path,
                 ) -> dict[str, float]:
    """Closed-loop keep-alive clients in threads (when wrk is missing; it caps the rate)."""
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    latencies: list[float] = []
    errors = [0]
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        mine = []
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            mine.append(time.perf_counter() - t)
            if r.status != 200:
                errors[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2] * 1e3,
            "p99": latencies[int(len(latencies) * 0.99)] * 1e3, "errors": errors[0],
            "socket_errors": ""}


def measure(name: str, argv: list[str], url: str, m: dict, seconds: float, work: Path,
            load, env: dict | None = None) -> dict:
    starts = []
    for i in range(STARTS):
        p = Proc(argv, url, m["body"], work / f"{name}-{i}", env)
        try:
            starts.append(p.first_prediction())
            if i < STARTS - 1:
                continue
            load(url, m["body"], 4, min(2.0, seconds), work)  # warm-up, not counted
            result = {"start": statistics.median(starts),
                      1: load(url, m["body"], 1, seconds, work),
                      16: load(url, m["body"], 16, seconds, work)}
        finally:
            p.stop()
    print(f"  {name}: measured", file=sys.stderr, flush=True)
    return result


def hidden_pandas(work: Path) -> dict[str, str]:
    """An environment in which pandas cannot be imported, as in an image built without it."""
    stub = work / "no-pandas" / "pandas"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text('raise ImportError("pandas is not installed here")\n')
    return {"PYTHONPATH": os.pathsep.join([str(stub.parent), str(ROOT)])}


def start_only(argv: list[str], url: str, m: dict, work: Path, env: dict) -> float:
    starts = []
    for i in range(STARTS):
        p = Proc(argv, url, m["body"], work / f"start-only-{i}", env)
        try:
            starts.append(p.first_prediction())
        finally:
            p.stop()
    return statistics.median(starts)


# ------------------------------------------------------------------------------- report


def find_mlflow(given: str | None) -> str | None:
    from mlflow_env import mlflow_python

    candidates = [given, os.environ.get("MLFLOW_PYTHON"), sys.executable]
    for python in filter(None, candidates):
        ok = subprocess.run([python, "-c", "import mlflow"], capture_output=True, check=False)
        if ok.returncode == 0:
            return python
    try:
        return str(mlflow_python())
    except subprocess.CalledProcessError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="load duration per measurement")
    ap.add_argument("--mlflow-python", help="a Python with mlflow installed (default: "
                    "$MLFLOW_PYTHON, else this one if it has mlflow)")
    args = ap.parse_args()
    mlflow_python = find_mlflow(args.mlflow_python)
    load = wrk if shutil.which("wrk") else threads_load
    work = Path(tempfile.mkdtemp(prefix="cd4ml-bench-serve-"))
    try:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; load generator: "
              f"{'wrk' if load is wrk else 'Python threads (install wrk for a truer figure)'}; "
              f"{args.seconds:g} s per measurement", file=sys.stderr, flush=True)
        m = make_models(work, mlflow_python)
        floor = in_process(m)
        results = {
            "cd4ml": measure("cd4ml", cd4ml_argv(m, PORT_CD4ML, 1),
                             f"http://127.0.0.1:{PORT_CD4ML}/predict", m, args.seconds, work, load),
            "cd4ml -w2": measure("cd4ml-w2", cd4ml_argv(m, PORT_CD4ML_W2, 2),
                                 f"http://127.0.0.1:{PORT_CD4ML_W2}/predict", m, args.seconds,
                                 work, load)}
        image_like = start_only(cd4ml_argv(m, PORT_CD4ML, 1),
                                f"http://127.0.0.1:{PORT_CD4ML}/predict", m, work,
                                hidden_pandas(work))
        if mlflow_python:
            # MLflow runs `uvicorn` by name: its venv's bin must come first on PATH
            path = os.pathsep.join([str(Path(mlflow_python).parent), os.environ.get("PATH", "")])
            results["mlflow"] = measure("mlflow", mlflow_argv(mlflow_python, m),
                                        f"http://127.0.0.1:{PORT_MLFLOW}/invocations", m,
                                        args.seconds, work, load, env={"PATH": path})
        report(results, floor, image_like, mlflow_python)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict, floor: dict[str, float], image_like: float,
           mlflow_python: str | None) -> None:
    names = list(results)
    ml = results.get("mlflow")
    rows = []
    for c in (1, 16):
        rows.append((f"req/s, c={c}", [r[c]["rps"] for r in results.values()], "rps", c))
        rows.append((f"p50 ms, c={c}", [r[c]["p50"] for r in results.values()], None, c))
        rows.append((f"p99 ms, c={c}", [r[c]["p99"] for r in results.values()], "p99", c))
    rows.append(("start -> 1st prediction, s", [r["start"] for r in results.values()], "start", 0))
    width = 30
    print(f"\n{'measure':<{width}}" + "".join(f"{n:>11}" for n in names)
          + f"  {'target':<18}{'verdict':<8}")
    verdicts = []
    for label, values, kind, c in rows:
        line = f"{label:<{width}}" + "".join(f"{v:>11.{1 if v >= 100 else 2}f}" for v in values)
        target, verdict = "", ""
        ours = values[0]
        if kind == "rps" and ml:
            need = 3 * ml[c]["rps"]
            target, verdict = f">= {need:.0f} (3x)", "PASS" if ours >= need else "FAIL"
        elif kind == "p99" and ml:
            need = ml[c]["p99"] / 3
            target, verdict = f"<= {need:.1f} (1/3)", "PASS" if ours <= need else "FAIL"
        elif kind == "start":
            target, verdict = "<= 1.0", "PASS" if ours <= 1.0 else "FAIL"
        verdicts.append(verdict)
        print(line + f"  {target:<18}{verdict:<8}")
    errors = {n: (r[1]["errors"] + r[16]["errors"], r[1]["socket_errors"], r[16]["socket_errors"])
              for n, r in results.items()}
    print(f"{'start, pandas absent (image)':<{width}}{image_like:>11.2f}"
          + " " * 11 * (len(names) - 1) + f"  {'<= 1.0':<18}{'PASS' if image_like <= 1.0 else 'FAIL'}")
    print("\nin-process floor, one row (median ms): "
          + ", ".join(f"{k} {v:.2f}" for k, v in floor.items()))
    print("non-2xx responses / socket errors: "
          + "; ".join(f"{n} {e[0]} / {e[1] or '-'} {e[2] or '-'}" for n, e in errors.items()))
    if not ml:
        print("MLflow: not measured (no Python with mlflow; pass --mlflow-python)")
    else:
        print(f"MLflow: {mlflow_python}")
    print("Verdicts are for cd4ml's default (1 worker); 'cd4ml -w2' is --workers 2.")


if __name__ == "__main__":
    main()
