"""A world for progressive-delivery tests without Docker: real model versions served by real
``python -m cd4ml.serve`` processes, behind a small threaded front that splits traffic by
weight and mirrors it (what the nginx front does on the local and Swarm targets), and a steady
stream of predictions that counts every failed request.

    v1, v2   blessed RandomForests of the wine spec (seeds 1 and 2): v2 is a good canary
    v3       blessed (infra-valid, it serves) but trained on shuffled labels: a bad canary

The front is a test seam, not a product: the controller under test talks to it only through
the target interface (``split``/``unsplit``) the local and Swarm targets offer.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import random
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cd4ml.release.targets import Applied, Health, NotHealthy, http_health, served_metadata
from tests.helpers import train_version
from tests.integration.test_serve import Server, serve_argv


def train_shuffled(spec: Any, store: Any, tmp: Path, seed: int = 3) -> Any:
    """A blessed version trained on the spec's data with its labels shuffled: it serves and
    passes infra validation, and its predictions are wrong."""
    import pandas as pd

    frame = pd.read_csv(spec.data.path)
    frame[spec.data.target] = frame[spec.data.target].sample(frac=1.0, random_state=7).to_numpy()
    shuffled = tmp / "shuffled.csv"
    frame.to_csv(shuffled, index=False)
    bad_spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, path=shuffled))
    return train_version(bad_spec, store, seed)


def train_models(spec: Any, store: Any, tmp: Path) -> dict[int, Any]:
    """v1 and v2 good, v3 trained on shuffled labels; each with an infra-validated image row."""
    from cd4ml.states import InfraStatus

    models = {}
    for seed in (1, 2):
        m = train_version(spec, store, seed)
        models[m.version] = m
    m = train_shuffled(spec, store, tmp)
    models[m.version] = m
    for m in models.values():
        store.record_image(m.id, "sha256:" + f"{m.version:064x}", f"cd4ml-test/wine:{m.version}",
                           1, InfraStatus.PASSED)
    return models


def logged_answers(spec: Any, environment: str, version: int) -> dict[str, Any]:
    """Request id -> the label ``version`` answered, from every prediction log of the
    environment (each server's, rotated ones too): what a model was asked and said."""
    from cd4ml.paths import prediction_log_dir

    out = {}
    for path in prediction_log_dir(spec.project, spec.name, environment).glob("*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("model_version") == version and "predictions" in r:
                out[r["request_id"]] = r["predictions"][0]
    return out


def input_rows(spec: Any, model: Any) -> list[dict[str, Any]]:
    """Every row of the spec's data as the model takes it (its signature's features)."""
    import pandas as pd

    names = [i["name"] for i in model.signature["inputs"]]
    return pd.read_csv(spec.data.path)[names].to_dict(orient="records")


class Front:
    """A threaded HTTP front: ``weight`` percent of requests to the candidate, or (shadow) all
    answers from stable and a mirrored copy with the same X-Request-ID to the candidate."""

    def __init__(self, port: int = 0):  # 0: a free port (a fixed one may be a client's now)
        self.stable: str | None = None
        self.candidate: str | None = None
        self.weight = 0
        self.shadow = False
        self.mirrored = 0
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _forward(self, body: bytes) -> None:
                rid = self.headers.get("X-Request-ID") or uuid.uuid4().hex
                with front._lock:
                    stable, candidate, weight, shadow = (front.stable, front.candidate,
                                                         front.weight, front.shadow)
                to = candidate if candidate and not shadow and random.random() * 100 < weight \
                    else stable
                if to is None:
                    status, data = 503, b'{"error": "no upstream"}'
                else:
                    status, data = _call(to, self.command, self.path, body, rid)
                if shadow and candidate and self.command == "POST":
                    threading.Thread(target=front._mirror, daemon=True,
                                     args=(candidate, self.path, body, rid)).start()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Request-ID", rid)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _mirror(self, upstream: str, path: str, body: bytes, rid: str) -> None:
        _call(upstream, "POST", path, body, rid)
        with self._lock:
            self.mirrored += 1

    def point(self, stable: str | None, candidate: str | None = None, weight: int = 0,
              shadow: bool = False) -> None:
        with self._lock:
            self.stable, self.candidate, self.weight, self.shadow = stable, candidate, weight, shadow

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _call(upstream: str, method: str, path: str, body: bytes, rid: str) -> tuple[int, bytes]:
    host, port = upstream.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body or None,
                     headers={"Content-Type": "application/json", "X-Request-ID": rid})
        r = conn.getresponse()
        return r.status, r.read()
    except OSError as e:
        return 502, json.dumps({"error": str(e)}).encode()
    finally:
        conn.close()


class ProcessTarget:
    """The target interface over model server processes and :class:`Front`."""

    name = "local"

    def __init__(self, store: Any, front: Front):
        self.store = store
        self.front = front
        self.servers: dict[int, Server] = {}  # model version -> its server
        self.calls: list[tuple[str, Any]] = []

    # -- the release
    def _start(self, rendered: Any, timeout: float) -> Server:
        from cd4ml.paths import prediction_log_dir

        model = self.store.model_by_id(rendered.context["model"]["id"])
        if model.version in self.servers and self.servers[model.version].proc.poll() is None:
            return self.servers[model.version]
        logs = prediction_log_dir(rendered.context["project"], model.pipeline, rendered.environment)
        logs.mkdir(parents=True, exist_ok=True)
        server = Server(serve_argv(Path(model.artifact_uri)), env={
            "CD4ML_PREDICTION_LOG": str(logs / f"v{model.version}-{uuid.uuid4().hex[:6]}.jsonl"),
            "CD4ML_MODEL_SHA256": model.sha256})
        try:
            server.ready(timeout)
        except AssertionError as e:
            raise NotHealthy(f"v{model.version} did not start: {e}", restored=True) from None
        self.servers[model.version] = server
        return server

    def _version(self, rendered: Any) -> int:
        return self.store.model_by_id(rendered.context["model"]["id"]).version

    def apply(self, rendered: Any, *, timeout: float, previous: Any = None,
              preflight: bool = True) -> Applied:
        server = self._start(rendered, timeout)
        self.front.point(server.url)
        for version in [v for v in self.servers if v != self._version(rendered)]:
            self.servers.pop(version).stop()
        return Applied(self.front.url, {"server": server.url})

    def split(self, stable: Any, candidate: Any, *, weight: int, shadow: bool = False,
              timeout: float) -> Applied:
        self.calls.append(("split", weight))
        old = self._start(stable, timeout)
        new = self._start(candidate, timeout)
        self.front.point(old.url, new.url, weight, shadow)
        return Applied(self.front.url, {"upstreams": {"stable": old.url, "candidate": new.url}})

    def unsplit(self, keep: Any, drop: Any, *, timeout: float) -> Applied:
        self.calls.append(("unsplit", self._version(keep)))
        started = time.perf_counter()
        server = self._start(keep, timeout)
        self.front.point(server.url)
        took = time.perf_counter() - started
        gone = self.servers.pop(self._version(drop), None)
        if gone is not None:
            gone.stop()
        return Applied(self.front.url, {"switch_seconds": took})

    # -- the rest of the Target interface
    def proxy_image(self, spec: Any, env: Any, model_image: str) -> None:
        return None

    def health(self, spec: Any, env: Any) -> Health:
        return http_health(f"{self.front.url}/health")

    def served(self, spec: Any, env: Any, replicas: int) -> list[dict[str, Any]]:
        return served_metadata(self.front.url, tries=4)

    def ensure_image(self, image: str, image_id: str | None, digest: str | None) -> None:
        pass

    def url(self, spec: Any, env: Any) -> str:
        return self.front.url

    def remove_orphans(self, spec: Any, env: Any, *, keep: set[str],
                       anything_current: bool) -> list[str]:
        return []  # its servers are this process's children: none outlives a dead deploy

    def teardown(self, spec: Any = None, env: Any = None) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


class Stream:
    """Single-row predictions through the front from two threads until stopped; every answer
    that is not a 200 (or no answer) is a failed request."""

    def __init__(self, url: str, rows: list[dict[str, Any]], threads: int = 2,
                 limit_seconds: float = 240):
        self.url, self.rows = url, rows
        self.sent = 0
        self.failed: list[str] = []
        self.answers: dict[str, Any] = {}  # request id -> predicted label
        self.versions: dict[int, int] = {}  # model version that answered -> answers
        self.last: dict[int, float] = {}  # model version -> when it last answered (epoch s)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_seconds
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            rid = uuid.uuid4().hex
            body = json.dumps({"instances": [rng.choice(self.rows)]}).encode()
            status, data = _call(self.url, "POST", "/predict", body, rid)
            if status != 200:
                self.failed.append(f"{status} {data[:200]!r}")
            else:
                answer = json.loads(data)
                self.answers[rid] = answer["predictions"][0]
                v = answer.get("model_version")
                self.versions[v] = self.versions.get(v, 0) + 1
                self.last[v] = time.time()
            self.sent += 1
            time.sleep(0.01)

    def stop(self) -> Stream:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        return self


def release(cli_args: list[str]) -> int:
    """``python -m tests.canary_world -p SPEC --env ENV V1 V2``: what ``cd4ml deploy`` does with
    this world as the environment's target (the one seam that differs from a user's run): deploy
    V1, print ``serving <front url>``, wait for a line on stdin (the caller's stream of
    predictions is on), release V2 by the environment's strategy, print ``released`` and serve
    until another line comes; the exit code is the second deploy's."""
    import sys

    import cd4ml.release.targets
    from cd4ml.cli import main
    from cd4ml.store import Store

    *common, stable, candidate = cli_args
    front = Front()
    with Store(os.environ["CD4ML_STORE_URL"]) as store:
        target = ProcessTarget(store, front)
        cd4ml.release.targets.get_target = lambda env: target  # type: ignore[assignment]
        try:
            code = main(["deploy", *common, stable])
            if code:
                return code
            print("serving", front.url, flush=True)
            sys.stdin.readline()
            code = main(["deploy", *common, candidate])
            print("released", flush=True)
            sys.stdin.readline()  # stable serves until the caller's stream has stopped
            return code
        finally:
            target.teardown()
            front.close()


if __name__ == "__main__":
    import sys

    sys.exit(release(sys.argv[1:]))
