"""The cd4ml model server against MLflow's, on four model families, same machine and load.

Families (issue 19): the wine RandomForest(100); a HistGradientBoosting classifier on a
100,000-row, 30-feature synthetic set; a penguins-like preprocessing pipeline (text categories
one-hot encoded, numbers scaled, logistic regression); a GradientBoosting regressor on diabetes.
Each is saved as a cd4ml artifact twice — as trained (runtime sklearn) and with the compiled
model beside it (runtime onnx: model.onnx + compiled.json from :mod:`cd4ml.serve.compile`, which
checks parity first) — and as an MLflow model. Each server starts with its default settings
(cd4ml: one worker per CPU; the onnx one with scikit-learn, scipy and pandas hidden, as in its
image), is timed from process start to its first answered prediction (median of 3 starts), then
loaded with single-row requests (the same ``dataframe_split`` body, which both accept) at
concurrency 1 and 16 and with 1,000-row batches at concurrency 1 over keep-alive connections,
for a fixed duration each. The load generator is ``wrk`` (apt-get install wrk), else threads.
Also printed: the in-process floors (one row, median ms; 1,000 rows, rows/s) of the model's
``predict``, the cd4ml predictor (scikit-learn: its forest shortcut or single call) and the
compiled predictor (ONNX Runtime).

Targets for the onnx runtime, per family: >= 5x MLflow's req/s and <= 1/5 of its p99 at c=1
and c=16, >= 2x its rows/s on 1,000-row batches, start to first answer <= 0.5 s.

MLflow runs from the Python named by ``--mlflow-python`` (or $MLFLOW_PYTHON); without one,
this Python if it has mlflow; else the shared benchmark virtualenv of bench/mlflow_env.py, made
on first use; if MLflow cannot be installed the MLflow column is skipped.

With ``--images`` it builds each family's image for both runtimes instead (the build's own
context and Dockerfile template) and prints the bytes each adds over the base image and the
time from ``docker run`` to the first answered prediction.

Run: python bench/bench_serve.py [--seconds 5] [--family wine-rf ...] [--mlflow-python PATH]
     flock /work/locks/docker.lock python bench/bench_serve.py --images
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

from bench.timing import median_seconds

PORT = 19200  # 19200-19209: below the ephemeral range (32768-60999) client connections use
STARTS = 3  # process starts per server, for the start-up median
BATCH = 1000  # rows per request of the batch load

SAVE_MLFLOW = """
import json, pickle, sys
import pandas as pd
import mlflow.sklearn
from mlflow.models import infer_signature
model = pickle.load(open(sys.argv[1], "rb"))
X = pd.read_json(sys.argv[2], orient="split")
mlflow.sklearn.save_model(model, sys.argv[3], signature=infer_signature(X, model.predict(X)),
                          serialization_format="cloudpickle")
"""


# ------------------------------------------------------------------------------- the models


def wine_rf():
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_wine(return_X_y=True, as_frame=True)
    return RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y), X, y, "classification"


def hgb_100k():
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = make_classification(100_000, 30, n_informative=12, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(30)])
    y = pd.Series(y, name="y")
    return HistGradientBoostingClassifier(random_state=0).fit(X, y), X, y, "classification"


def penguins_pipeline():
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame({
        "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
        "sex": rng.choice(["male", "female"], n),
        "bill_mm": rng.normal(44, 5, n).round(1), "flipper_mm": rng.integers(170, 230, n),
        "mass_g": rng.normal(4200, 800, n).round(0)})
    y = np.where(X.bill_mm + (X.island == "Dream") * 3 + rng.normal(0, 2, n) > 45, "Adelie", "Gentoo")
    y[X.flipper_mm > 215] = "Chinstrap"
    model = make_pipeline(ColumnTransformer([
        ("text", OneHotEncoder(handle_unknown="ignore"), ["island", "sex"]),
        ("numbers", StandardScaler(), ["bill_mm", "flipper_mm", "mass_g"])]),
        LogisticRegression(max_iter=2000))
    y = pd.Series(y, name="species")
    return model.fit(X, y), X, y, "classification"


def diabetes_gbr():
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return GradientBoostingRegressor(random_state=0).fit(X, y), X, y, "regression"


FAMILIES = {"wine-rf": wine_rf, "hgb-100k": hgb_100k, "penguins-pipeline": penguins_pipeline,
            "diabetes-gbr": diabetes_gbr}


def make_family(name: str, work: Path, mlflow_python: str | None) -> dict:
    """Fit, save as cd4ml (sklearn and compiled) and MLflow models; the request bodies."""
    from cd4ml import artifacts
    from cd4ml.serve.compile import compile_model
    from cd4ml.serve.compiled import ONNX_FILE, REPORT_FILE
    from cd4ml.serve.schema import fields_of
    from cd4ml.stages.drift import feature_stats
    from cd4ml.stages.train import input_signature

    model, X, y, task = FAMILIES[name]()
    classes = sorted(y.unique().tolist()) if task == "classification" else None
    signature = input_signature(X, str(y.name or "target"), classes)
    stats = feature_stats(X, list(X.columns))
    directory, sha = artifacts.save(work / name / "sklearn", name, model)
    meta = artifacts.ArtifactMeta(pipeline=name, task=task, sha256=sha, version=1,
                                  signature=signature, stats=stats)
    artifacts.write_meta(directory, meta)
    fields = fields_of(signature)
    sample = X.sample(min(len(X), 2000), random_state=1)
    held_out = [list(r) for r in sample.astype(object).itertuples(index=False, name=None)]
    compiled = compile_model(model, fields, task, stats, held_out, sha)
    onnx_dir = None
    if compiled.graph is not None:
        onnx_dir, _ = artifacts.save(work / name / "onnx", name, model)
        artifacts.write_meta(onnx_dir, meta)
        (onnx_dir / ONNX_FILE).write_bytes(compiled.graph)
        (onnx_dir / REPORT_FILE).write_text(json.dumps(compiled.report))
    mlflow_dir = None
    if mlflow_python:
        (work / name / "model.pkl").write_bytes(pickle.dumps(model))
        X.head(200).to_json(work / name / "X.json", orient="split")
        mlflow_dir = work / name / "mlflow-model"
        subprocess.run([mlflow_python, "-c", SAVE_MLFLOW, str(work / name / "model.pkl"),
                        str(work / name / "X.json"), str(mlflow_dir)], check=True,
                       capture_output=True)

    def body(rows) -> bytes:
        return json.dumps({"dataframe_split": {"columns": list(X.columns),
                                               "data": rows.astype(object).values.tolist()}}).encode()

    return {"name": name, "model": model, "X": X, "fields": fields, "meta": meta,
            "compiled": compiled, "sklearn_dir": directory, "onnx_dir": onnx_dir,
            "mlflow_dir": mlflow_dir, "body": body(X.iloc[[0]]),
            "batch": body(X.sample(BATCH, replace=len(X) < BATCH, random_state=2))}


def in_process(m: dict) -> dict[str, tuple[float, float]]:
    """One row (median ms) and 1,000 rows (rows/s) in this process: the floors of any server."""
    from cd4ml.serve.compiled import OnnxPredictor
    from cd4ml.serve.predictor import Predictor, quiet_positional
    from cd4ml.serve.schema import decode, parse

    model, meta, fields = m["model"], m["meta"], m["fields"]
    predictor = Predictor(model, fields, meta.task, meta.stats)
    quiet_positional()
    one = parse(decode(m["body"]), fields).rows
    many = parse(decode(m["batch"]), fields).rows
    X1, Xn = predictor.matrix(one), predictor.matrix(many)

    timed = median_seconds
    out = {"model.predict": (timed(lambda: model.predict(X1), 200) * 1e3,
                             BATCH / timed(lambda: model.predict(Xn), 10)),
           "cd4ml sklearn predictor": (timed(lambda: predictor.predict(one), 200) * 1e3,
                                       BATCH / timed(lambda: predictor.predict(many), 10))}
    if m["compiled"].graph is not None:
        onnx = OnnxPredictor(m["compiled"].graph, fields, m["compiled"].report)
        out["cd4ml onnx predictor"] = (timed(lambda: onnx.predict(one), 500) * 1e3,
                                       BATCH / timed(lambda: onnx.predict(many), 20))
    return out


# ------------------------------------------------------------------------------- servers


def post(url: str, body: bytes, timeout: float = 2.0) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except (OSError, http.client.HTTPException):  # not up yet, or not speaking HTTP yet
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
                self.err.flush()
                tail = Path(self.err.name).read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"{self.proc.args[:4]} exited {self.proc.returncode}: "
                                   + " | ".join(tail))
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



def cd4ml_argv(model_dir: Path, port: int) -> list[str]:
    # the server's defaults (workers: one per CPU), as in the image
    return [sys.executable, "-m", "cd4ml.serve", "--model-dir", str(model_dir), "--host",
            "127.0.0.1", "--port", str(port)]


def mlflow_argv(python: str, model_dir: Path, port: int) -> list[str]:
    return [python, "-m", "mlflow", "models", "serve", "-m", str(model_dir),
            "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)]


def hidden(work: Path, modules: tuple[str, ...]) -> dict[str, str]:
    """An environment in which ``modules`` cannot be imported, as in an image built without them."""
    root = work / "hidden"
    for name in modules:
        stub = root / name
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text(f'raise ImportError("{name} is not installed here")\n')
    return {"PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}



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
    result: dict = {}
    for i in range(STARTS):
        p = Proc(argv, url, m["body"], work / f"{m['name']}-{name}-{i}", env)
        try:
            starts.append(p.first_prediction())
            if i < STARTS - 1:
                continue
            load(url, m["body"], 4, min(2.0, seconds), work)  # warm-up, not counted
            result = {"start": statistics.median(starts),
                      1: load(url, m["body"], 1, seconds, work),
                      16: load(url, m["body"], 16, seconds, work),
                      "batch": load(url, m["batch"], 1, seconds, work)}
        finally:
            p.stop()
    print(f"  {m['name']} {name}: measured", file=sys.stderr, flush=True)
    return result


# ------------------------------------------------------------------------------- images


def images(m: dict, work: Path) -> dict[str, dict]:
    """Build the family's image for each runtime (the build's own context, from the same
    Dockerfile template), then time ``docker run`` to the first answered prediction (median of
    3). Bytes are those added over the base image. Tags cd4ml-bench/serve-*, removed after."""
    import dataclasses

    from cd4ml.integrations.docker import client, image_size
    from cd4ml.release import dockerfile
    from cd4ml.serve.predictor import Predictor
    from cd4ml.spec import load_spec
    from cd4ml.store.records import ModelVersion

    if os.environ.get("PIP_CERT") and not os.environ.get(dockerfile.CA_ENV):
        # this machine's pip goes through a TLS proxy: the build's pip must trust it too
        os.environ[dockerfile.CA_ENV] = os.environ["PIP_CERT"]
    c = client()
    spec = load_spec(ROOT / "pipelines" / "wine.yaml")
    spec = dataclasses.replace(spec, name=m["name"])
    base = image_size(c, dockerfile.base_image(spec)) or 0
    meta = m["meta"]
    frame = Predictor(m["model"], m["fields"], meta.task, meta.stats).needs_frame
    record = ModelVersion(1, m["name"], 1, "bench", meta.task, str(m["sklearn_dir"]), meta.sha256,
                          {**meta.signature, "frame": frame}, meta.stats, True, False,
                          "2026-01-01T00:00:00Z")
    out: dict[str, dict] = {}
    for runtime, compiled in (("sklearn", None), ("onnx", m["onnx_dir"])):
        if runtime == "onnx" and compiled is None:
            continue
        tag = f"cd4ml-bench/serve-{m['name']}:{runtime}"
        ctx = dockerfile.make_context(work / "ctx" / m["name"] / runtime, spec, record,
                                      git_commit=None, data_hash=None, ca=dockerfile.ca_bundle(),
                                      index_url=dockerfile.pip_index_url(), compiled=compiled)
        c.images.build(path=str(ctx.directory), tag=tag, rm=True, network_mode="host",
                       buildargs=ctx.buildargs or None)
        starts = []
        for _ in range(STARTS):
            t0 = time.perf_counter()
            container = c.containers.run(tag, detach=True, ports={"8080/tcp": ("127.0.0.1", PORT + 5)},
                                         labels={"cd4ml.role": "bench"})
            try:
                while post(f"http://127.0.0.1:{PORT + 5}/predict", m["body"], timeout=1.0) != 200:
                    if time.perf_counter() - t0 > 120:
                        raise RuntimeError(f"{tag} gave no prediction within 120 s")
                    time.sleep(0.01)
                starts.append(time.perf_counter() - t0)
            finally:
                container.remove(force=True)
        out[runtime] = {"added_mb": ((image_size(c, tag) or 0) - base) / 1e6,
                        "start": statistics.median(starts)}
        c.images.remove(tag, force=True, noprune=True)
    print(f"images of {m['name']} (MB added over the base; docker run -> first prediction, s): "
          + ", ".join(f"{k} {v['added_mb']:.0f} MB, {v['start']:.2f} s" for k, v in out.items()),
          flush=True)
    return out


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
    global PORT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="load duration per measurement")
    ap.add_argument("--family", action="append", choices=list(FAMILIES),
                    help="measure only these (repeatable; default: all four)")
    ap.add_argument("--mlflow-python", help="a Python with mlflow installed (default: "
                    "$MLFLOW_PYTHON, else this one if it has mlflow)")
    ap.add_argument("--port", type=int, default=PORT, help=f"first of the 6 ports the servers "
                    f"use (default {PORT}); give your own range on a shared machine")
    ap.add_argument("--no-sklearn", action="store_true", help="serve only the compiled model "
                    "(and MLflow): the targets are the compiled runtime's")
    ap.add_argument("--images", action="store_true", help="only build each family's images "
                    "(both runtimes) and time docker run to the first answer; run it under "
                    "flock /work/locks/docker.lock where the engine is shared")
    args = ap.parse_args()
    PORT = args.port
    mlflow_python = find_mlflow(args.mlflow_python)
    load = wrk if shutil.which("wrk") else threads_load
    work = Path(tempfile.mkdtemp(prefix="cd4ml-bench-serve-"))
    try:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; load generator: "
              f"{'wrk' if load is wrk else 'Python threads (install wrk for a truer figure)'}; "
              f"{args.seconds:g} s per measurement", file=sys.stderr, flush=True)
        image_env = hidden(work, ("sklearn", "scipy", "pandas", "threadpoolctl", "joblib"))
        for name in args.family or list(FAMILIES):
            m = make_family(name, work, None if args.images else mlflow_python)
            if args.images:
                images(m, work)
                continue
            floor = in_process(m)
            results = {} if args.no_sklearn else {"cd4ml sklearn": measure(
                "sklearn", cd4ml_argv(m["sklearn_dir"], PORT), f"http://127.0.0.1:{PORT}/predict",
                m, args.seconds, work, load)}
            if m["onnx_dir"] is not None:
                results["cd4ml onnx"] = measure(
                    "onnx", cd4ml_argv(m["onnx_dir"], PORT + 1),
                    f"http://127.0.0.1:{PORT + 1}/predict", m, args.seconds, work, load, image_env)
            if mlflow_python:
                # MLflow runs `uvicorn` by name: its venv's bin must come first on PATH
                path = os.pathsep.join([str(Path(mlflow_python).parent), os.environ.get("PATH", "")])
                try:
                    results["mlflow"] = measure(
                        "mlflow", mlflow_argv(mlflow_python, m["mlflow_dir"], PORT + 2),
                        f"http://127.0.0.1:{PORT + 2}/invocations", m, args.seconds, work, load,
                        env={"PATH": path})
                except RuntimeError as e:  # cd4ml's figures still stand; say why MLflow's are missing
                    print(f"  {name} mlflow: not measured: {str(e)[:300]}", file=sys.stderr)
            report(m, results, floor)
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}; MLflow: "
              f"{mlflow_python or 'not measured (no Python with mlflow; pass --mlflow-python)'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(m: dict, results: dict, floor: dict) -> None:
    names = list(results)
    ml = results.get("mlflow")
    ours = results.get("cd4ml onnx") or results["cd4ml sklearn"]
    onnx_col = names.index("cd4ml onnx" if "cd4ml onnx" in results else "cd4ml sklearn")
    compiled = m["compiled"].report
    print(f"\n## {m['name']}: runtime onnx {'yes' if m['onnx_dir'] else 'NO'} ({compiled['reason']}); "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    for c in (1, 16):
        rows.append((f"req/s, c={c}", [r[c]["rps"] for r in results.values()], "rps", c))
        rows.append((f"p50 ms, c={c}", [r[c]["p50"] for r in results.values()], None, c))
        rows.append((f"p99 ms, c={c}", [r[c]["p99"] for r in results.values()], "p99", c))
    rows.append((f"rows/s, {BATCH}-row batches", [r["batch"]["rps"] * BATCH for r in results.values()],
                 "rows", "batch"))
    rows.append(("start -> 1st prediction, s", [r["start"] for r in results.values()], "start", 0))
    width = 30
    print(f"{'measure':<{width}}" + "".join(f"{n:>15}" for n in names)
          + f"  {'target (' + names[onnx_col] + ')':<26}{'verdict':<8}")
    for label, values, kind, c in rows:
        line = f"{label:<{width}}" + "".join(f"{v:>15.{1 if v >= 100 else 2}f}" for v in values)
        target, verdict = "", ""
        mine = {"rps": ours[c]["rps"] if kind == "rps" else 0, "p99": ours[c]["p99"] if kind == "p99" else 0,
                "rows": ours["batch"]["rps"] * BATCH, "start": ours["start"]}.get(kind or "", 0)
        if kind == "rps" and ml:
            need = 5 * ml[c]["rps"]
            target, verdict = f">= {need:.0f} (5x)", "PASS" if mine >= need else "FAIL"
        elif kind == "p99" and ml:
            need = ml[c]["p99"] / 5
            target, verdict = f"<= {need:.2f} (1/5)", "PASS" if mine <= need else "FAIL"
        elif kind == "rows" and ml:
            need = 2 * ml["batch"]["rps"] * BATCH
            target, verdict = f">= {need:.0f} (2x)", "PASS" if mine >= need else "FAIL"
        elif kind == "start":
            target, verdict = "<= 0.5", "PASS" if mine <= 0.5 else "FAIL"
        print(line + f"  {target:<26}{verdict:<8}")
    print("in-process floors, one row ms / 1000-row rows/s: "
          + "; ".join(f"{k} {v[0]:.3f} / {v[1]:,.0f}" for k, v in floor.items()))
    print("non-2xx responses: " + ", ".join(
        f"{n} {r[1]['errors'] + r[16]['errors'] + r['batch']['errors']}" for n, r in results.items()))


if __name__ == "__main__":
    main()
