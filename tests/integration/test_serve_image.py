"""The model image runs the uvicorn server: built by cd4ml's own build (with infra validation),
then run as a container and probed over its published port (issue #12's image path).

Run under the Docker lock: ``flock /work/locks/docker.lock python -m pytest ...``.
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request

import pytest
import yaml

from tests.helpers import build_env, train_version, wine_spec_dict

pytestmark = pytest.mark.docker

REPOSITORY = "cd4ml-test-serve-http/wine"
PORT = 19120


@pytest.fixture(scope="module")
def image(tmp_path_factory, docker_client):
    from cd4ml.release.build import build
    from cd4ml.spec import load_spec
    from cd4ml.store import Store

    tmp = tmp_path_factory.mktemp("image")
    raw = wine_spec_dict()
    raw["image"]["repository"] = REPOSITORY
    raw["image"].pop("registry", None)
    (tmp / "wine.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with build_env(tmp, drop=("GITHUB_", "CD4ML_REGISTRY")):
        spec = load_spec(tmp / "wine.yaml")
        with Store(f"sqlite:///{tmp / 'store.db'}") as store:
            model = train_version(spec, store, seed=1)
            result = build(spec, store, model)
    yield result
    from docker.errors import ImageNotFound

    with contextlib.suppress(ImageNotFound):
        docker_client.images.remove(result.reference, force=True, noprune=True)


def http(method: str, path: str, body: bytes | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_the_image_serves_on_uvicorn_refuses_bad_requests_and_stops_cleanly(image,
                                                                            docker_client):
    assert image.passed, image.infra
    assert any(p.lower().startswith("uvicorn==") for p in image.requirements)
    assert any(p.lower().startswith("httptools==") for p in image.requirements)
    assert any(p.lower().startswith("orjson==") for p in image.requirements)
    print(f"\nimage {image.reference}: {image.added_bytes / 1e6:.1f} MB over the base")
    container = docker_client.containers.run(
        image.reference, detach=True, name=f"cd4ml-test-serve-http-{PORT}",
        ports={"8080/tcp": ("127.0.0.1", PORT)}, environment={"CD4ML_WORKERS": "2"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http("GET", "/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.2)
        status, headers, _ = http("GET", "/health")
        assert status == 200 and headers["server"] == "cd4ml-serve"
        # the server's bytecode is in the image: no start compiles it again
        found = container.exec_run(["ls", "/opt/cd4ml/app/cd4ml/serve/__pycache__"])
        assert found.exit_code == 0 and b"server.cpython-" in found.output, found.output
        # and so is the standard library's, whatever the base shipped (asyncio, logging and
        # json are compiled at every start without it: ~0.5 s before the first answer)
        probe = ("import asyncio, importlib.util as u, os; "
                 "print(os.path.exists(u.cache_from_source(asyncio.__file__)))")
        stdlib = container.exec_run(["python", "-c", probe])
        assert stdlib.output.strip() == b"True", stdlib.output
        status, headers, _ = http("OPTIONS", "/predict")
        assert status == 405 and headers["allow"] == "POST"
        with socket.create_connection(("127.0.0.1", PORT), timeout=10) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"\r\n-1\r\n" + b"x" * 65536)
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 400 ")
        deep = b"[" * 100_000 + b"]" * 100_000
        status, _, body = http("POST", "/predict", deep)
        assert status == 400 and b"nested too deeply" in body
        metrics = http("GET", "/metrics")[2].decode()
        assert 'cd4ml_http_requests_total{endpoint="other",status="400"} 1' in metrics
        container.stop(timeout=10)
        assert container.wait(timeout=30)["StatusCode"] == 0
        logs = container.logs().decode()
        assert "worker 0: stopped" in logs and "worker 1: stopped" in logs, logs[-3000:]
    finally:
        container.remove(force=True)
