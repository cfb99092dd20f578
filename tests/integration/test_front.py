"""cd4ml's traffic front (nginx) live, in front of real cd4ml model servers (tests/fixtures/
deploy.py): what clients send it (Expect: 100-continue, oversized, chunked and streaming bodies,
HTTP/1.0, slow and many idle connections), what it must not show, keep-alive across a
blue/green switch, and the traffic split and mirror that canary and shadow releases use."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from cd4ml.release.render import render
from cd4ml.release.targets.local import LocalTarget
from tests.fixtures.deploy import Load, logged

pytestmark = pytest.mark.docker

PORT = 19101
#: the front container's memory through every test here (it is limited to 256 MiB)
CEILING = 64 << 20


@dataclasses.dataclass
class Env:
    spec: object
    env: object
    target: LocalTarget
    releases: dict  # n -> Rendered
    row: dict

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{PORT}"

    def front(self):
        return self.target.client.containers.get(f"{self.releases[1].name}-front")

    def front_memory(self) -> int:
        stats = self.front().stats(stream=False)["memory_stats"]
        return int(stats["usage"]) - int((stats.get("stats") or {}).get("inactive_file", 0))

    def predict(self, session=None, **kw) -> requests.Response:
        return (session or requests).post(f"{self.url}/predict", json={"instances": [self.row]},
                                          timeout=10, **kw)


@pytest.fixture(scope="module")
def front(deploy_world):
    spec = deploy_world.spec()
    env = dataclasses.replace(spec.environment("staging"), name="fronttest", port=PORT)
    target = LocalTarget()
    releases = {}
    with deploy_world.store() as store:
        for n in (1, 2):
            image = store.images_for(deploy_world.versions[n].id)[0]
            proxy = target.proxy_image(spec, env, image.reference)
            releases[n] = render(spec, env, deploy_world.versions[n], image.reference,
                                 proxy_image=proxy, image_id=image.image_id)
    target.teardown(spec, env)
    target.apply(releases[1], timeout=60)
    yield Env(spec, env, target, releases, deploy_world.row)
    target.teardown(spec, env)


def curl(*args: str) -> tuple[int, float, str]:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                          "--max-time", "20", *args], capture_output=True, text=True, timeout=30,
                         check=False)
    code, took = out.stdout.split()
    return int(code), float(took), out.stderr


def test_expect_100_continue_and_oversized_bodies(front, tmp_path):
    # ~2 MB of valid rows: curl adds "Expect: 100-continue" by itself past 1 MB
    body = json.dumps({"instances": [front.row] * 8000})
    assert 1_500_000 < len(body) < 16 << 20
    (tmp_path / "2mb.json").write_text(body)
    code, took, _ = curl("-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
                         "--data-binary", f"@{tmp_path / '2mb.json'}", f"{front.url}/predict")
    assert code == 200 and took < 1.0, (code, took)
    # 50 MB, over the server's 16 MB limit: refused by the front at once, not sent on
    with open(tmp_path / "50mb.json", "wb") as f:
        f.truncate(50 << 20)
    code, took, _ = curl("-H", "Content-Type: application/json", "-H", "Expect: 100-continue",
                         "--data-binary", f"@{tmp_path / '50mb.json'}", f"{front.url}/predict")
    assert code == 413 and took < 1.0, (code, took)


def _stream(port: int, total: int, chunked: bool) -> bytes:
    """POST ``total`` bytes of body as fast as the front takes them; the status line it sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {total}\r\n\r\n"
    s.sendall(head.encode())
    block, sent = b"0" * (1 << 20), 0
    try:
        while sent < total:
            s.sendall(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            sent += len(block)
        if chunked:
            s.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the front answered and stopped reading
    try:
        status = s.recv(200).split(b"\r\n")[0]
    except OSError:
        status = b""
    s.close()
    return status


def test_an_800_mb_body_streams_through_a_small_front(front):
    before = front.front_memory()
    peak, stop = [before], threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(front.front_memory())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for chunked in (False, True):
            assert b" 413 " in _stream(PORT, 800 << 20, chunked), chunked
    finally:
        stop.set()
        sampler.join(timeout=30)
    print(f"\nfront memory: {before / 2**20:.1f} MiB before, at most {max(peak) / 2**20:.1f} MiB "
          f"while 800 MB bodies streamed in (ceiling {CEILING >> 20} MiB)")
    assert max(peak) < CEILING
    assert front.predict().status_code == 200


def test_chunked_bodies_and_http_1_0_clients(front):
    body = json.dumps({"instances": [front.row]}).encode()
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    half = len(body) // 2
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
              + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:]))
    answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"model_version":1' in answer.replace(b" ", b"")

    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.sendall(b"POST /predict HTTP/1.0\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nX-Request-ID: old-client-1\r\n\r\n%s" % (len(body), body))
    answer = _read_all(s)  # HTTP/1.0 without keep-alive: the front closes after answering
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"\r\nx-request-id: old-client-1\r\n" in answer.lower()  # header names: any case


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    return out


def test_request_ids_pass_through_or_are_made(front):
    given = front.predict(headers={"X-Request-ID": "front-test-42"})
    assert given.headers["X-Request-ID"] == "front-test-42" and given.json()["request_id"] == "front-test-42"
    made = front.predict()
    assert made.status_code == 200 and len(made.headers["X-Request-ID"]) >= 16


def test_slow_and_idle_clients_do_not_hold_up_others(front):
    stop = threading.Event()

    def trickle():
        s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 200:
            if stop.is_set():
                break
            s.send(bytes([b]))
            time.sleep(0.02)
        s.close()

    slow = threading.Thread(target=trickle, daemon=True)
    slow.start()
    idle = []
    try:
        for _ in range(2000):
            c = socket.create_connection(("127.0.0.1", PORT), timeout=10)
            c.send(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and nothing more
            idle.append(c)
        worst = 0.0
        session = requests.Session()
        for _ in range(20):
            t0 = time.perf_counter()
            assert front.predict(session).status_code == 200
            worst = max(worst, time.perf_counter() - t0)
        memory = front.front_memory()
        print(f"\n2,000 idle connections and a byte-by-byte client: worst answer {worst * 1000:.0f} ms, "
              f"front memory {memory / 2**20:.1f} MiB (ceiling {CEILING >> 20} MiB)")
        assert worst < 1.0 and memory < CEILING
    finally:
        stop.set()
        for c in idle:
            c.close()
        slow.join(timeout=10)


def test_no_admin_on_the_public_port(front):
    for path in ("/.cd4ml/front", "/.cd4ml/mirror", "/nginx_status"):
        r = requests.get(f"{front.url}{path}", timeout=5)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
    r = front.predict()
    assert not any("upstream" in k.lower() for k in r.headers), r.headers
    assert "nginx" not in r.headers.get("Server", "").lower() or "/" not in r.headers["Server"]


def test_keep_alive_clients_across_a_blue_green_switch(front):
    session = requests.Session()
    first = front.predict(session)
    assert first.json()["model_version"] == 1
    # the front declines keep-alive (a reload would drop requests on idle connections)
    assert first.headers["Connection"].lower() == "close"
    with Load(PORT, front.row) as load:
        load.wait_for_requests()
        front.target.apply(front.releases[2], timeout=60)
        done = time.perf_counter()
        load.wait_for_requests()
        # the same client session, next request: the new colour answers
        assert front.predict(session).json()["model_version"] == 2
        going = time.perf_counter()
        front.target.apply(front.releases[1], timeout=60)
        back = time.perf_counter()
        load.wait_for_requests()
    assert load.failed == [], load.failed[:5]
    # alternation is possible only during a reload (nginx's old workers accept ~100 ms more)
    assert load.versions[0] == 1 and load.versions[-1] == 1 and 2 in load.versions
    assert load.only(2, sent_after=done, sent_before=going) == []
    assert load.only(1, sent_after=back) == []
    assert front.predict(session).json()["model_version"] == 1


def test_split_by_weight_mirror_and_unsplit(front):
    stable, candidate = front.releases[1], front.releases[2]
    with Load(PORT, front.row) as load:
        load.wait_for_requests()
        applied = front.target.split(stable, candidate, weight=10, timeout=60)
        ups = applied.details["upstreams"]
        assert requests.get(f"{ups['candidate']}/metadata", timeout=5).json()["model_version"] == 2
        assert requests.get(f"{ups['stable']}/metadata", timeout=5).json()["model_version"] == 1
        session = requests.Session()
        versions = [front.predict(session).json()["model_version"] for _ in range(200)]
        share = versions.count(2) / len(versions)
        print(f"\nweight 10: {versions.count(2)} of {len(versions)} requests to the candidate")
        assert 0.05 <= share <= 0.15, share

        front.target.split(stable, candidate, weight=0, shadow=True, timeout=60)
        ids = [f"shadow-{i}-{time.time_ns()}" for i in range(20)]
        answers = [front.predict(session, headers={"X-Request-ID": i}).json() for i in ids]
        assert {a["model_version"] for a in answers} == {1}
        logs = Path(stable.context["prediction_logs"])
        assert logged(logs, ids, version=2), "the candidate did not get a copy of every request"
        assert logged(logs, ids, version=1)

        done = front.target.unsplit(stable, candidate, timeout=60)
        load.wait_for_requests()
    print(f"unsplit: all traffic on stable {done.details['switch_seconds']:.2f} s after the call")
    assert done.details["switch_seconds"] < 2.0
    assert load.failed == [], load.failed[:5]
    assert {front.predict().json()["model_version"] for _ in range(20)} == {1}
    names = [c.name for c in front.target.client.containers.list(
        filters={"label": ["cd4ml.role=model", "cd4ml.environment=fronttest"]})]
    assert len(names) == 1, names
