"""The model server's HTTP layer under hostile and unusual clients (issue #12): raw sockets and
standard clients against ``python -m cd4ml.serve`` in a subprocess, no Docker.

Memory ceilings are on the server's peak RSS (``VmHWM``) above what it held when ready: the
16 MB body limit must hold for chunked bodies (an 800 MB upload costs under 64 MB), and
2,000 idle or slow connections cost under 64 MB (a few kilobytes each, no thread).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from cd4ml import artifacts
from tests.integration import test_serve as base

Server, records, serve_argv = base.Server, base.records, base.serve_argv
# the same fixtures: the wine forest, and no server outliving its test
wine_model, no_server_left_behind = base.wine_model, base.no_server_left_behind

MB = 1 << 20


class Exploding:
    """A model that fails with an exception text that must never reach a client."""

    def __init__(self, model):
        self.model = model
        self.classes_ = model.classes_

    def _check(self, X) -> None:
        if (np.asarray(X, dtype=float)[:, 0] == 999).any():
            raise RuntimeError("secret-db-password=hunter2 in /srv/private/config")

    def predict(self, X):
        self._check(X)
        return self.model.predict(X)

    def predict_proba(self, X):
        self._check(X)
        return self.model.predict_proba(X)


@pytest.fixture(scope="module")
def server(wine_model):
    _, _, directory = wine_model
    s = Server(serve_argv(directory, "--header-timeout", "3")).ready()
    s.address = tuple_of(s.url)
    s.pid = s.proc.pid
    yield s
    assert s.stop() == 0


def tuple_of(url: str) -> tuple[str, int]:
    host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
    return host, int(port)


def rss(pid: int, field: str = "VmRSS") -> int:
    """Kilobytes, from /proc (VmRSS now, VmHWM the peak)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def reset_peak(pid: int) -> None:
    # writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def answer(sock: socket.socket, timeout: float = 10) -> bytes:
    """Read until the server closes the connection (or ``timeout``)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def exchange(address, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        return answer(sock, timeout)


def still_serves(server, wine_model) -> None:
    model, X, _ = wine_model
    started = time.perf_counter()
    r = requests.post(f"{server.url}/predict", json={"inputs": records(X.head(1))[0]}, timeout=5)
    assert r.status_code == 200 and r.json()["predictions"] == model.predict(X.head(1)).tolist()
    assert time.perf_counter() - started < 1.0


def upload(address, head: bytes, piece: bytes, total: int) -> tuple[bytes, int]:
    """Send ``head`` then ``piece`` repeatedly up to ``total`` bytes, reading the answer at the
    same time (as curl does); returns (answer, bytes sent before the server stopped reading)."""
    got: list[bytes] = []
    with socket.create_connection(address, timeout=30) as sock:
        reader = threading.Thread(target=lambda: got.append(answer(sock, 30)))
        sock.sendall(head)
        reader.start()
        sent = 0
        try:
            while sent < total:
                sock.sendall(piece)
                sent += len(piece)
        except OSError:
            pass  # the server closed after answering
        reader.join(30)
    return (got[0] if got else b""), sent


# ------------------------------------------------------------------------------ bodies


def test_a_negative_or_malformed_chunk_size_is_400_and_nothing_more_is_read(server, wine_model):
    for size in (b"-1", b"zz", b"fffffffffffffffffffff"):
        data = (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + size + b"\r\n" + b"x" * 1000)
        reply = exchange(server.address, data)
        assert reply.startswith(b"HTTP/1.1 400 "), (size, reply)
        assert b"\r\nconnection: close" in reply.lower()
        assert "chunk size" in json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"].lower()
    reset_peak(server.pid)
    before = rss(server.pid)
    reply, _ = upload(server.address, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n-1\r\n", b"x" * MB, 600 * MB)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert rss(server.pid, "VmHWM") - before < 64 * 1024
    still_serves(server, wine_model)


def test_an_800_mb_chunked_body_is_413_within_the_limit(server, wine_model):
    reset_peak(server.pid)
    before = rss(server.pid)
    chunk = b"%x\r\n" % MB + b"7" * MB + b"\r\n"
    started = time.perf_counter()
    reply, sent = upload(server.address, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n", chunk, 800 * MB)
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    assert b"over the limit of 16777216 bytes" in reply
    peak = rss(server.pid, "VmHWM") - before
    print(f"\n800 MB chunked upload: 413 after {time.perf_counter() - started:.2f} s, "
          f"{sent / MB:.0f} MB sent, server peak RSS +{peak / 1024:.1f} MB")
    assert peak < 64 * 1024
    # the same with Content-Length: refused before a byte of the body is read
    reply, sent = upload(server.address, b"POST /predict HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: %d\r\n\r\n" % (800 * MB), b"7" * MB, 800 * MB)
    assert reply.startswith(b"HTTP/1.1 413 ") and b"request body of 838860800 bytes" in reply
    assert rss(server.pid, "VmHWM") - before < 64 * 1024
    still_serves(server, wine_model)


def test_deeply_nested_json_is_400(server):
    for body in (b"[" * 100_000 + b"]" * 100_000,
                 b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        r = requests.post(f"{server.url}/predict", data=body,
                          headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"], r.text


# ------------------------------------------------------------------------------ connections


def test_2000_slow_connections_neither_exhaust_the_server_nor_delay_others(server, wine_model):
    reset_peak(server.pid)
    before = rss(server.pid)
    slow = []
    try:
        for i in range(2000):
            sock = socket.create_connection(server.address, timeout=10)
            # half a request: the server waits for the rest (until the header deadline)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"G")
            slow.append(sock)
        for _ in range(5):
            still_serves(server, wine_model)
        grown = rss(server.pid, "VmHWM") - before
        print(f"\n2000 slow connections: server peak RSS +{grown / 1024:.1f} MB")
        assert grown < 64 * 1024
        # the header deadline (3 s here) answers 408 and closes every one of them
        time.sleep(3.5)
        for sock in slow[:50]:
            reply = answer(sock, 5)
            assert reply.startswith(b"HTTP/1.1 408 "), reply
    finally:
        for sock in slow:
            sock.close()
    still_serves(server, wine_model)


def test_headers_sent_byte_by_byte_are_served_and_delay_nobody(server, wine_model):
    request = (b"GET /health HTTP/1.1\r\nHost: slow.example\r\nUser-Agent: a-slow-client\r\n"
               b"X-Request-ID: byte-by-byte\r\nConnection: close\r\n\r\n")
    got: list[bytes] = []

    def slow_client() -> None:
        with socket.create_connection(server.address, timeout=10) as sock:
            for i in range(len(request)):
                sock.sendall(request[i:i + 1])
                time.sleep(0.01)
            got.append(answer(sock))

    t = threading.Thread(target=slow_client)
    t.start()
    while t.is_alive():
        still_serves(server, wine_model)
    t.join()
    assert got[0].startswith(b"HTTP/1.1 200 ") and b"x-request-id: byte-by-byte" in got[0]


def test_headers_over_64_kib_are_431(server, wine_model):
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(100):
                sock.sendall(b"X-Padding: " + b"p" * 4000 + b"\r\n")
        except OSError:
            pass
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    still_serves(server, wine_model)


def test_http_1_0_clients_get_an_answer_and_a_closed_connection(server, wine_model):
    model, X, _ = wine_model
    reply = exchange(server.address, b"GET /health HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"status":"ok"}')
    body = json.dumps({"inputs": records(X.head(1))[0]}).encode()
    reply = exchange(server.address, b"POST /predict HTTP/1.0\r\nContent-Type: application/json"
                     b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert reply.startswith(b"HTTP/1.1 200 ")
    answered = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert answered["predictions"] == model.predict(X.head(1)).tolist()


def test_keep_alive_serves_many_requests_on_one_connection(server):
    with socket.create_connection(server.address, timeout=10) as sock:
        # pipelined, as some clients do: answered in order
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 3
                     + b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = answer(sock)
    assert reply.count(b"HTTP/1.1 200 ") == 4 and reply.endswith(b'{"status":"ready"}')


def test_sigterm_closes_the_listener_first_and_finishes_the_request_in_flight(wine_model, tmp_path):
    """A front retries a refused connection elsewhere; a '503 shutting down' it would relay."""
    model, X, directory = wine_model
    log = tmp_path / "predictions.jsonl"
    s = Server(serve_argv(directory), env={"CD4ML_PREDICTION_LOG": str(log)}).ready()
    address = tuple_of(s.url)
    body = json.dumps({"inputs": records(X.head(1))[0]}).encode()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Request-ID: in-flight\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        s.wait_for("stopping")
        time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=5).close()
        sock.sendall(body[10:])
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close" in reply.lower()
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["predictions"] == \
        model.predict(X.head(1)).tolist()
    assert s.proc.wait(30) == 0  # on its own: the one SIGTERM was enough
    assert s.stop() == 0
    assert [x["request_id"] for x in map(json.loads, log.read_text().splitlines())] == \
        ["in-flight"]


# ------------------------------------------------------------------------------ methods, errors


@pytest.mark.parametrize("method", ["TRACE", "PATCH", "OPTIONS", "PUT", "DELETE", "PROPFIND"])
def test_undeclared_methods_are_405_with_allow(server, method):
    for path, allow in (("/health", "GET, HEAD"), ("/predict", "POST")):
        r = requests.request(method, f"{server.url}{path}", timeout=10)
        assert r.status_code == 405 and r.headers["Allow"] == allow, (method, path)
        assert method in r.json()["error"]


def test_internal_errors_never_echo_exception_text(wine_model, tmp_path):
    model, X, directory = wine_model
    meta = artifacts.read_meta(directory)
    bad_dir, sha = artifacts.save(tmp_path, "wine", Exploding(model))
    artifacts.write_meta(bad_dir, artifacts.ArtifactMeta(
        pipeline="wine", task="classification", sha256=sha, signature=meta.signature, version=9))
    s = Server(serve_argv(bad_dir)).ready()
    row = {**records(X.head(1))[0], "alcohol": 999.0}
    r = requests.post(f"{s.url}/predict", json={"inputs": row}, headers={"X-Request-ID": "boom"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; the server's log has the details",
                        "request_id": "boom"}
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert requests.get(f"{s.url}/health").status_code == 200
    assert s.stop() == 0
    assert "secret-db-password" in s.stderr  # the operator sees it


# ------------------------------------------------------------------------------ schemathesis


def test_schemathesis_finds_no_5xx_and_no_contract_breach(server, tmp_path):
    """Every check, undeclared methods included, on examples drawn from /openapi.json.

    413 counts as a rejection too: the document declares it for a batch over the row limit,
    which schemathesis generates from maxItems."""
    (tmp_path / "schemathesis.toml").write_text(
        "[checks.negative_data_rejection]\n"
        "expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]\n")
    argv = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
            "--checks", "all", "--max-examples", "25", "--phases", "examples,coverage,fuzzing",
            "--seed", "1", "--request-timeout", "10", "--no-color"]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
