"""The model server as the image runs it: a real process on an ephemeral port, a real artifact.

A small random forest is trained on the wine data here and saved with cd4ml.artifacts; every
test talks HTTP to ``python -m cd4ml.serve`` (or ``cd4ml serve``) running in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate as validate_openapi

from cd4ml import artifacts

ROOT = Path(__file__).resolve().parents[2]


class SlowToLoad:
    """A model that takes a while to unpickle, to watch /ready say 503 in the meantime.

    Pickled by reference to this module, which the server process imports to load it.
    """

    def __init__(self, model, delay: float):
        self.model = model
        self.delay = delay
        self.classes_ = model.classes_

    def __setstate__(self, state):
        delay = state["delay"]
        if state.get("first_fast"):
            # the first process to load it is quick, the others slow (a marker file decides)
            try:
                os.close(os.open(state["first_fast"], os.O_CREAT | os.O_EXCL))
                delay = 0
            except FileExistsError:
                pass
        time.sleep(delay)
        self.__dict__.update(state)

    def predict(self, X):
        return self.model.predict(X)

    def predict_proba(self, X):
        return self.model.predict_proba(X)


# ------------------------------------------------------------------------------- harness


_STARTED: list[Server] = []


class Server:
    """``python -m cd4ml.serve`` (or any argv) in a subprocess; stderr is collected as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 cwd: Path = ROOT):
        _STARTED.append(self)
        self.started = time.perf_counter()
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.url: str | None = None
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stdout = ""

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"listening on (http://\S+)", line)
                if m:
                    self.url = m.group(1)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r} in:\n{self.stderr}")
                self._changed.wait(min(left, 0.5))

    def ready(self, timeout: float = 60) -> Server:
        self.wait_for("listening on", timeout)
        self.wait_for(r"ready in", timeout)
        self.ready_after = time.perf_counter() - self.started
        print(f"\nserver {self.url}: ready {self.ready_after:.2f} s after the process started")
        return self

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.stdout = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code


def serve_argv(model_dir: Path, *extra: str) -> list[str]:
    # one worker unless a test asks for more: most tests here describe one process's life
    workers = () if "--workers" in extra else ("--workers", "1")
    return [sys.executable, "-m", "cd4ml.serve", "--model-dir", str(model_dir), "--host",
            "127.0.0.1", "--port", "0", *workers, *extra]


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_server_left_behind():
    """A test that fails half-way must not leave its server running."""
    before = len(_STARTED)
    yield
    for s in _STARTED[before:]:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


@pytest.fixture(scope="module")
def wine_model(tmp_path_factory):
    """(model, X, artifact dir): a 25-tree forest fitted on the wine DataFrame, saved as cd4ml
    saves models (signature and statistics by cd4ml's own functions)."""
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    from cd4ml.stages.drift import feature_stats
    from cd4ml.stages.train import input_signature

    X, y = load_wine(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0).fit(X, y)
    root = tmp_path_factory.mktemp("artifacts")
    directory, sha = artifacts.save(root, "wine", model)
    signature = input_signature(X, "target", sorted(int(c) for c in y.unique()))
    artifacts.write_meta(directory, artifacts.ArtifactMeta(
        pipeline="wine", task="classification", sha256=sha, signature=signature,
        stats=feature_stats(X, list(X.columns)), version=7, run_id="run-abc",
        data_hash="d" * 64, git_commit="c0ffee", created_at="2024-01-01T00:00:00Z"))
    return model, X, directory


@pytest.fixture(scope="module")
def server(wine_model, tmp_path_factory):
    """One server for the read-mostly tests, logging to a file, with the image's environment."""
    _, _, directory = wine_model
    log = tmp_path_factory.mktemp("log") / "predictions.jsonl"
    meta = artifacts.read_meta(directory)
    s = Server(serve_argv(directory), env={
        "CD4ML_PREDICTION_LOG": str(log), "CD4ML_MODEL_SHA256": meta.sha256,
        "CD4ML_BUILD_TIME": "2024-02-03T04:05:06Z", "CD4ML_IMAGE": "registry.local/wine:7"})
    s.ready()
    s.log = log
    yield s
    assert s.stop() == 0


@pytest.fixture
def http():
    with requests.Session() as session:  # keep-alive, as a real client would
        yield session


def records(X) -> list[dict]:
    return X.to_dict(orient="records")


# ------------------------------------------------------------------------------- predictions


def test_predictions_are_exactly_the_models_own(server, wine_model, http):
    model, X, _ = wine_model
    r = http.post(f"{server.url}/predict", json={"instances": records(X)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == model.predict(X).tolist()
    assert [list(p.values()) for p in body["probabilities"]] == model.predict_proba(X).tolist()
    assert list(body["probabilities"][0]) == ["0", "1", "2"]
    assert body["pipeline"] == "wine" and body["model_version"] == 7
    for i in (0, 60, 130, 177):  # single rows, one keep-alive connection
        row = X.iloc[[i]]
        one = http.post(f"{server.url}/predict", json={"inputs": records(row)[0]}).json()
        assert one["predictions"] == model.predict(row).tolist()
        assert [list(one["probabilities"][0].values())] == model.predict_proba(row).tolist()


def test_every_request_form_answers_alike(server, wine_model, http):
    _, X, _ = wine_model
    part = X.iloc[10:15]
    forms = [{"instances": records(part)},
             {"inputs": {c: part[c].tolist() for c in part.columns}},
             {"columns": list(part.columns), "data": part.to_numpy().tolist()},
             {"dataframe_split": {"columns": list(part.columns), "data": part.to_numpy().tolist()}}]
    answers = [http.post(f"{server.url}/predict", json=f).json() for f in forms]
    for a in answers[1:]:
        assert (a["predictions"], a["probabilities"]) == (answers[0]["predictions"],
                                                          answers[0]["probabilities"])


def test_a_bad_row_is_422_naming_the_row_and_field(server, wine_model, http):
    _, X, _ = wine_model
    rows = records(X.head(3))
    rows[2]["hue"] = "dark"
    del rows[1]["proline"]
    r = http.post(f"{server.url}/predict", json={"instances": rows})
    assert r.status_code == 422
    body = r.json()
    assert body["error"].startswith("row 1: field 'proline' is missing")
    assert {"row": 2, "field": "hue",
            "message": "row 2: field 'hue' must be a number, not a string \"dark\""} in body["errors"]
    unknown = http.post(f"{server.url}/predict", json={"inputs": {**records(X.head(1))[0], "x": 1}})
    assert unknown.status_code == 422 and "field 'x' is not a feature" in unknown.json()["error"]


def test_malformed_json_is_400_and_the_connection_lives_on(server, http):
    r = http.post(f"{server.url}/predict", data=b'{"instances": [', headers={
        "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert http.get(f"{server.url}/health").status_code == 200


def test_unknown_paths_and_methods(server, http):
    assert http.get(f"{server.url}/nope").status_code == 404
    r = http.get(f"{server.url}/predict")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_request_ids_are_echoed_or_made(server, wine_model, http):
    _, X, _ = wine_model
    body = {"inputs": records(X.head(1))[0]}
    r = http.post(f"{server.url}/predict", json=body, headers={"X-Request-ID": "trace-42"})
    assert r.headers["X-Request-ID"] == "trace-42" and r.json()["request_id"] == "trace-42"
    made = http.post(f"{server.url}/predict", json=body)
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    assert made.json()["request_id"] == made.headers["X-Request-ID"]
    bad = http.post(f"{server.url}/predict", json={}, headers={"X-Request-ID": "trace-43"})
    assert bad.headers["X-Request-ID"] == "trace-43" and bad.json()["request_id"] == "trace-43"


def test_chunked_request_bodies_are_read(server, wine_model, http):
    model, X, _ = wine_model
    payload = json.dumps({"instances": records(X.head(2))}).encode()
    r = http.post(f"{server.url}/predict", data=iter([payload[:50], payload[50:]]))
    assert r.status_code == 200 and r.json()["predictions"] == model.predict(X.head(2)).tolist()


def raw(url: str, data: bytes) -> bytes:
    """Send bytes as they are and read the answer until the server closes the connection."""
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_protocol_errors_are_answered_in_json_and_close_the_connection(server):
    garbage = raw(server.url, b"NOT HTTP AT ALL\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ") and b"\r\nconnection: close" in garbage.lower()
    assert json.loads(garbage.split(b"\r\n\r\n", 1)[1])["error"]
    huge = raw(server.url, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
    assert huge.startswith(b"HTTP/1.1 413 ") and b"\r\nconnection: close" in huge.lower()
    assert b"the limit is 16777216" in huge
    head = raw(server.url, b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    assert b"\r\ncontent-length: 15\r\n" in head.lower()  # the GET body's length, but no body


# ------------------------------------------------------------------------------- other endpoints


def test_health_ready_and_metadata(server, wine_model, http):
    _, _, directory = wine_model
    assert http.get(f"{server.url}/health").json() == {"status": "ok"}
    assert http.get(f"{server.url}/ready").json() == {"status": "ready"}
    meta = http.get(f"{server.url}/metadata").json()
    assert {k: meta[k] for k in ("pipeline", "model_version", "run_id", "data_hash", "git_commit",
                                 "sha256", "build_time", "image", "ready")} == {
        "pipeline": "wine", "model_version": 7, "run_id": "run-abc", "data_hash": "d" * 64,
        "git_commit": "c0ffee", "sha256": artifacts.read_meta(directory).sha256,
        "build_time": "2024-02-03T04:05:06Z", "image": "registry.local/wine:7", "ready": True}
    assert meta["server"]["forest_shortcut"] is True
    assert meta["server"]["runtime"] == "sklearn" and meta["server"]["parity"] is None
    assert [f["name"] for f in meta["signature"]["inputs"]][:2] == ["alcohol", "malic_acid"]


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_latency_and_classes(server, wine_model, http):
    model, X, _ = wine_model
    before = http.get(f"{server.url}/metrics").text
    rows = X.iloc[:20]
    for row in records(rows):
        assert http.post(f"{server.url}/predict", json={"inputs": row}).status_code == 200
    http.post(f"{server.url}/predict", json={"inputs": {}})
    r = http.get(f"{server.url}/metrics")
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    after = r.text

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("cd4ml_http_requests_total", endpoint="/predict", status="200") == 20
    assert delta("cd4ml_http_requests_total", endpoint="/predict", status="422") == 1
    assert delta("cd4ml_http_requests_total", endpoint="/metrics", status="200") == 1
    assert delta("cd4ml_http_request_duration_seconds_count", endpoint="/predict") == 21
    assert delta("cd4ml_prediction_rows_total") == 20
    predicted = model.predict(rows).tolist()
    for c in (0, 1, 2):
        assert delta("cd4ml_predictions_total", **{"class": str(c)}) == predicted.count(c)
    assert metric(after, "cd4ml_model_info", pipeline="wine", version="7",
                  sha256=artifacts.read_meta(wine_model[2]).sha256) == 1
    for line in after.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_0-9]+(\{[^}]*\})? [0-9.e+-]+", line), line


def test_openapi_describes_the_real_requests_and_responses(server, wine_model, http):
    from openapi_core import OpenAPI
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    _, X, _ = wine_model
    doc = http.get(f"{server.url}/openapi.json").json()
    validate_openapi(doc)
    api = OpenAPI.from_dict({**doc, "servers": [{"url": server.url}]})
    exchanges = [
        requests.Request("POST", f"{server.url}/predict", json={"instances": records(X.head(2))}),
        requests.Request("POST", f"{server.url}/predict", json={"inputs": {"alcohol": "x"}}),
        requests.Request("GET", f"{server.url}/metadata"),
        requests.Request("GET", f"{server.url}/ready"),
        requests.Request("GET", f"{server.url}/health")]
    for req in exchanges:
        prepared = req.prepare()
        response = http.send(prepared)
        api.validate_response(RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response))
    good = requests.Request("POST", f"{server.url}/predict", json={"inputs": records(X.head(1))[0]})
    api.validate_request(RequestsOpenAPIRequest(good.prepare()))


# ------------------------------------------------------------------------------- the log


def test_concurrent_predictions_are_each_logged_once(server, wine_model):
    _, X, _ = wine_model
    rows = records(X)
    ids = [f"concurrent-{i}" for i in range(200)]

    def call(i: int) -> int:
        with requests.post(f"{server.url}/predict", json={"inputs": rows[i % len(rows)]},
                           headers={"X-Request-ID": ids[i]}) as r:
            return r.status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(call, range(len(ids)))) == {200}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = [x for x in read_log(server.log) if x["request_id"].startswith("concurrent-")]
        if len(lines) >= len(ids):
            break
        time.sleep(0.05)
    assert sorted(x["request_id"] for x in lines) == sorted(ids)
    first = next(x for x in lines if x["request_id"] == "concurrent-5")
    assert first["inputs"] == [rows[5]] and first["model_version"] == 7
    assert set(first) == {"time", "request_id", "pipeline", "model_version", "model_sha256",
                          "inputs", "predictions", "probabilities"}


def test_sigterm_under_load_writes_out_every_answered_prediction(wine_model, tmp_path):
    _, X, directory = wine_model
    log = tmp_path / "predictions.jsonl"
    s = Server(serve_argv(directory), env={"CD4ML_PREDICTION_LOG": str(log)}).ready()
    rows = records(X)
    answered: list[str] = []
    stop = threading.Event()

    def client(c: int) -> None:
        with requests.Session() as session:
            i = 0
            while not stop.is_set():
                rid = f"c{c}-{i}"
                i += 1
                try:
                    r = session.post(f"{s.url}/predict", json={"inputs": rows[i % len(rows)]},
                                     headers={"X-Request-ID": rid}, timeout=10)
                except requests.ConnectionError:
                    return  # the server has stopped taking requests
                if r.status_code == 200:
                    answered.append(rid)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert s.stop() == 0
    stop.set()
    for t in threads:
        t.join()
    logged = [x["request_id"] for x in read_log(log)]
    assert len(answered) > 50
    assert sorted(logged) == sorted(answered)
    assert f"{len(logged)} prediction(s) logged" in s.stderr


def test_predictions_go_to_stdout_without_a_log_file(wine_model):
    _, X, directory = wine_model
    s = Server(serve_argv(directory)).ready()
    r = requests.post(f"{s.url}/predict", json={"inputs": records(X.head(1))[0]},
                      headers={"X-Request-ID": "to-stdout"})
    assert r.status_code == 200
    assert s.stop() == 0
    [line] = [json.loads(x) for x in s.stdout.splitlines()]
    assert line["request_id"] == "to-stdout"


# ------------------------------------------------------------------------------- start-up


def tampered_copy(directory: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(directory, copy)
    with open(copy / artifacts.MODEL_FILE, "ab") as f:
        f.write(b"\x00")
    return copy


def test_a_tampered_model_is_refused_before_listening(wine_model, tmp_path):
    _, _, directory = wine_model
    s = Server(serve_argv(tampered_copy(directory, tmp_path)))
    assert s.proc.wait(30) == 2
    s._reader.join(5)
    assert s.url is None
    # no CD4ML_MODEL_SHA256 here: the server says it trusts model.json, then refuses the file
    warning, error = s.lines
    assert warning.startswith("cd4ml.serve: warning: CD4ML_MODEL_SHA256 is not set")
    assert re.fullmatch(r"cd4ml\.serve: error: .*model\.pkl: sha256 [0-9a-f]{12}\.\.\. does not "
                        r"match the recorded [0-9a-f]{12}\.\.\.; refusing .*", error)


def test_a_model_other_than_the_pinned_one_is_refused(wine_model):
    _, _, directory = wine_model
    s = Server(serve_argv(directory), env={"CD4ML_MODEL_SHA256": "0" * 64})
    assert s.proc.wait(30) == 2
    s._reader.join(5)
    assert len(s.lines) == 1 and "but CD4ML_MODEL_SHA256 is 000000000000" in s.lines[0]


def test_ready_is_503_until_the_model_is_loaded(wine_model, tmp_path):
    model, X, directory = wine_model
    meta = artifacts.read_meta(directory)
    slow_dir, sha = artifacts.save(tmp_path, "wine", SlowToLoad(model, delay=2.0))
    artifacts.write_meta(slow_dir, artifacts.ArtifactMeta(
        pipeline="wine", task="classification", sha256=sha, signature=meta.signature, version=8))
    s = Server(serve_argv(slow_dir))
    s.wait_for("listening on")
    assert requests.get(f"{s.url}/health").status_code == 200
    assert requests.get(f"{s.url}/ready").status_code == 503
    early = requests.post(f"{s.url}/predict", json={"inputs": records(X.head(1))[0]})
    assert early.status_code == 503 and "still loading" in early.json()["error"]
    assert requests.get(f"{s.url}/metadata").json()["ready"] is False
    s.ready()
    assert requests.get(f"{s.url}/ready").status_code == 200
    body = requests.post(f"{s.url}/predict", json={"instances": records(X)}).json()
    assert body["predictions"] == model.predict(X).tolist()
    assert requests.get(f"{s.url}/metadata").json()["server"]["forest_shortcut"] is False
    assert s.stop() == 0


def test_refuse_until_ready_refuses_connections_while_the_model_loads(wine_model, tmp_path):
    """For a proxy that picks servers by DNS (Swarm): a refused connection is safe to send
    elsewhere, a 503 is passed on to the client."""
    model, X, directory = wine_model
    meta = artifacts.read_meta(directory)
    slow_dir, sha = artifacts.save(tmp_path, "wine", SlowToLoad(model, delay=2.0))
    artifacts.write_meta(slow_dir, artifacts.ArtifactMeta(
        pipeline="wine", task="classification", sha256=sha, signature=meta.signature, version=8))
    s = Server(serve_argv(slow_dir), env={"CD4ML_REFUSE_UNTIL_READY": "1"})
    s.wait_for("listening on")
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{s.url}/predict", json={"inputs": records(X.head(1))[0]}, timeout=5)
    s.ready()  # said just before the worker listens
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            assert requests.get(f"{s.url}/ready").status_code == 200
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    body = requests.post(f"{s.url}/predict", json={"instances": records(X)}).json()
    assert body["predictions"] == model.predict(X).tolist()
    assert s.stop() == 0


def test_workers_default_to_one_per_cpu_with_one_thread_each(wine_model):
    from cd4ml.serve.resources import available_cpus

    _, _, directory = wine_model
    argv = [a for a in serve_argv(directory, "--workers", "auto") if a not in ("--workers", "auto")]
    s = Server(argv, env={"CD4ML_WORKERS": "auto", "OMP_NUM_THREADS": ""})
    cpus = available_cpus()
    s.wait_for("listening on")
    assert (f"with {cpus} workers" in s.stderr) == (cpus > 1)
    s.ready()
    server = requests.get(f"{s.url}/metadata").json()["server"]
    assert server["workers"] == cpus and server["threads"] == 1
    assert s.stop() == 0


def test_with_workers_ready_waits_for_all_of_them(wine_model, tmp_path):
    """No request after /ready said 200 may meet a worker still loading its model."""
    model, X, directory = wine_model
    meta = artifacts.read_meta(directory)
    slow = SlowToLoad(model, delay=4.0)
    slow.first_fast = str(tmp_path / "first")
    slow_dir, sha = artifacts.save(tmp_path, "wine", slow)
    artifacts.write_meta(slow_dir, artifacts.ArtifactMeta(
        pipeline="wine", task="classification", sha256=sha, signature=meta.signature, version=8))
    s = Server(serve_argv(slow_dir, "--workers", "2"))
    s.wait_for(r"worker \d: ready in")
    statuses = set()
    while s.stderr.count("ready in") < 2:
        statuses.add(requests.get(f"{s.url}/ready").status_code)
        time.sleep(0.05)
    assert statuses == {503}
    assert requests.get(f"{s.url}/ready").status_code == 200
    rows = records(X.head(3))
    answers = {requests.post(f"{s.url}/predict", json={"instances": rows}).status_code
               for _ in range(30)}
    assert answers == {200}
    assert s.stop() == 0


def test_workers_share_the_port_the_metrics_and_the_log(wine_model, tmp_path):
    model, X, directory = wine_model
    log = tmp_path / "predictions.jsonl"
    s = Server(serve_argv(directory, "--workers", "2"), env={"CD4ML_PREDICTION_LOG": str(log)})
    s.wait_for("worker 0: ready in")
    s.wait_for("worker 1: ready in")
    rows = records(X)
    pids = set()
    for i in range(40):
        # a new connection each time, so that both workers get some
        r = requests.post(f"{s.url}/predict", json={"inputs": rows[i]},
                          headers={"Connection": "close", "X-Request-ID": f"w-{i}"})
        assert r.json()["predictions"] == model.predict(X.iloc[[i]]).tolist()
        pids.add(requests.get(f"{s.url}/metadata", headers={"Connection": "close"})
                 .json()["server"]["pid"])
    assert len(pids) == 2
    text = requests.get(f"{s.url}/metrics").text
    assert metric(text, "cd4ml_http_requests_total", endpoint="/predict", status="200") == 40
    assert metric(text, "cd4ml_http_requests_total", endpoint="/metadata", status="200") == 40
    assert s.stop() == 0
    assert sorted(x["request_id"] for x in read_log(log)) == sorted(f"w-{i}" for i in range(40))


def test_the_server_needs_only_its_package_and_the_artifact_format(wine_model, tmp_path):
    """What the image holds: cd4ml/__init__.py, cd4ml/artifacts.py, cd4ml/serve/; no pandas.

    The server runs from such a copy (an editable install could still supply other cd4ml
    modules, so the imports are also read from ``-X importtime``)."""
    model, X, directory = wine_model
    app = tmp_path / "app"
    shutil.copytree(ROOT / "cd4ml" / "serve", app / "cd4ml" / "serve",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__init__.py", "artifacts.py"):
        shutil.copy(ROOT / "cd4ml" / name, app / "cd4ml" / name)
    (app / "pandas").mkdir()
    (app / "pandas" / "__init__.py").write_text("raise ImportError('no pandas in the image')\n")
    argv = [sys.executable, "-X", "importtime", "-m", "cd4ml.serve", "--model-dir",
            str(directory), "--port", "0", "--workers", "1"]
    # run from the copy: `python -m` puts the working directory first on sys.path
    s = Server(argv, env={"PYTHONPATH": str(app)}, cwd=app)
    s.ready()
    r = requests.post(f"{s.url}/predict", json={"instances": records(X)})
    assert r.status_code == 200, s.stderr
    assert r.json()["predictions"] == model.predict(X).tolist()
    assert s.stop() == 0
    imported = {m.group(1).strip() for line in s.lines
                if (m := re.match(r"import time:\s+\d+ \|\s+\d+ \|(.*)$", line))}
    assert {"cd4ml.serve.server", "cd4ml.artifacts", "sklearn.ensemble._forest"} <= imported
    ours = {m for m in imported if m.split(".")[0] == "cd4ml"}
    assert ours - {"cd4ml", "cd4ml.artifacts", "cd4ml.serve"} == {
        m for m in ours if m.startswith("cd4ml.serve.")}
    # (pandas shows up as tried, by scikit-learn's optional import: the stub refused it)


# ------------------------------------------------------------------------------- cd4ml serve


def test_cd4ml_serve_runs_a_registered_version(tmp_path):
    pipelines = tmp_path / "pipelines"
    shutil.copytree(ROOT / "pipelines", pipelines)
    spec = pipelines / "wine.yaml"
    spec.write_text(spec.read_text().replace("n_estimators: 100", "n_estimators: 8"))
    store = f"sqlite:///{tmp_path / 'cd4ml.db'}"
    env = {"CD4ML_ARTIFACTS": str(tmp_path / "artifacts"), "PYTHONPATH": str(ROOT)}
    trained = subprocess.run([sys.executable, "-m", "cd4ml", "train", "-p", str(spec), "--store",
                              store], check=False, cwd=tmp_path, env={**os.environ, **env},
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    # the image's limits, given on the command line as to the image's entry point
    s = Server([sys.executable, "-m", "cd4ml", "serve", "wine:1", "--store", store,
                "--port", "0", "--max-rows", "2", "--header-timeout", "1",
                "--refuse-until-ready"], env=env)
    s.ready()
    assert "refusing connections until the model is loaded" in s.stderr
    meta = requests.get(f"{s.url}/metadata").json()
    assert (meta["pipeline"], meta["model_version"]) == ("wine", 1)
    row = {i["name"]: 1.0 for i in meta["signature"]["inputs"]}
    one = requests.post(f"{s.url}/predict", json={"instances": [row, row]}, timeout=10)
    assert one.status_code == 200, one.text
    three = {"instances": [row] * 3}
    assert requests.post(f"{s.url}/predict", json=three, timeout=10).status_code == 413
    host, port = s.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as slow:
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        t0 = time.perf_counter()
        assert slow.recv(200).startswith(b"HTTP/1.1 408 ")
        assert time.perf_counter() - t0 < 3
    assert s.stop() == 0

    bare = Server([sys.executable, "-m", "cd4ml", "serve", "1", "-p", str(spec), "--store", store,
                   "--port", "0"], env=env)
    bare.wait_for("listening on")
    assert bare.stop() == 0

    missing = subprocess.run([sys.executable, "-m", "cd4ml", "serve", "wine:9", "--store", store],
                             check=False, cwd=tmp_path, env={**os.environ, **env},
                             capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "no model version wine:9" in missing.stderr
