"""The model image against real parts: the Docker engine builds and runs it, infra validation
replays the held-out rows through it, and a real registry (Debian's docker-registry) receives
the push. Image builds are few and shared: one module fixture builds everything once.

    v1  blessed   `cd4ml build --push --json` (the CLI, in a subprocess): built, validated, pushed
    v2  blessed   library build with network_mode="none": a model-only rebuild; then `cd4ml push`
    v3  blessed   its model.pkl tampered after registration: the server refuses, validation fails
    v4  unblessed refused before any build
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from cd4ml.errors import BuildError
from cd4ml.spec import load_spec
from cd4ml.store import Store
from tests.helpers import build_env, train_version, wine_spec_dict

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-never-printed-7f1c"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"

pytestmark = pytest.mark.docker


def _spec_file(tmp: Path, registry: str) -> Path:
    raw = wine_spec_dict()
    raw["image"]["registry"] = registry
    raw["image"]["repository"] = "cd4ml-test/wine"
    path = tmp / "wine.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cd4ml", *args], capture_output=True, text=True,
                          env=env, timeout=900, check=False, cwd=ROOT)


@pytest.fixture(scope="module")
def world(tmp_path_factory, docker_client, registry):
    from cd4ml.release.build import build

    tmp = tmp_path_factory.mktemp("build")
    spec_path = _spec_file(tmp, registry.host)
    url = f"sqlite:///{tmp / 'store.db'}"
    with build_env(tmp, drop=("GITHUB_", "CD4ML_REGISTRY")) as env:
        out: dict = {"spec_path": spec_path, "url": url, "env": env, "registry": registry}
        spec = load_spec(spec_path)
        with Store(url) as store:
            out["v1"] = train_version(spec, store, seed=1)
            out["v2"] = train_version(spec, store, seed=2)
            out["v3"] = train_version(spec, store, seed=3)
            out["v4"] = train_version(spec, store, seed=4, bless=False)
        out["build1"] = _cli("build", "1", "-p", str(spec_path), "--store", url, "--push",
                             "--json", env=env)
        with Store(url) as store:
            out["r2"] = build(spec, store, out["v2"], network_mode="none")
        push_env = {**env, "CD4ML_REGISTRY_USER": "ci", "CD4ML_REGISTRY_PASSWORD": SECRET}
        out["push2"] = _cli("--debug", "push", "2", "-p", str(spec_path), "--store", url,
                            env=push_env)
        # the artifact changes after it was recorded: a different model than the one blessed
        with open(Path(out["v3"].artifact_uri) / "model.pkl", "ab") as f:
            f.write(b"tampered")
        out["build3"] = _cli("build", "wine:3", "-p", str(spec_path), "--store", url, "--push",
                             "--json", env=env)
        out["push3"] = _cli("push", "3", "-p", str(spec_path), "--store", url, env=env)
    out["spec"] = spec
    yield out
    from docker.errors import ImageNotFound

    for tag in ("1", "2", "3"):
        # untag only: the layers stay as the build cache of the next run (and of other tests)
        with contextlib.suppress(ImageNotFound):
            docker_client.images.remove(f"{registry.host}/cd4ml-test/wine:{tag}", force=True,
                                        noprune=True)


def _manifest_digest(registry, name: str, tag: str) -> str:
    req = urllib.request.Request(f"{registry.url}/v2/{name}/manifests/{tag}",
                                 headers={"Accept": MANIFEST_V2})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]


def test_cli_builds_validates_and_pushes_a_blessed_model(world, docker_client):
    out = world["build1"]
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["passed"] is True
    assert result["reference"] == f"{world['registry'].host}/cd4ml-test/wine:1"
    checks = {c["name"]: c for c in result["infra"]["checks"]}
    assert set(checks) == {"ready", "identity", "predictions", "malformed", "latency", "size",
                           "runtime"}
    assert checks["runtime"]["observed"] == "onnx"  # the default, auto: the forest compiles
    assert "within the parity rule" in checks["predictions"]["detail"]
    assert "of the in-process predictions" in checks["predictions"]["detail"]
    assert all(c["passed"] for c in checks.values()), checks
    assert checks["predictions"]["observed"] == result["infra"]["test_rows"] > 0
    assert checks["malformed"]["observed"] == 422
    assert 0 < result["added_bytes"] < result["size_bytes"]
    # progress went to stderr, one line per build step
    assert "[1/" in out.stderr and "COPY model/" in out.stderr

    with Store(world["url"]) as store:
        image = store.images_for(world["v1"].id)[0]
    assert image.infra_status == "passed" and image.pushed_at
    assert image.digest == result["digest"] and image.digest.startswith("sha256:")
    assert image.infra_report["checks"][0]["name"] == "ready"
    # the registry's own answer for the tag is the recorded digest
    assert _manifest_digest(world["registry"], "cd4ml-test/wine", "1") == image.digest

    attrs = docker_client.images.get(result["image_id"]).attrs
    labels = attrs["Config"]["Labels"]
    v1 = world["v1"]
    assert labels["cd4ml.model.sha256"] == v1.sha256
    assert labels["cd4ml.model.version"] == "1"
    assert labels["cd4ml.run.id"] == v1.run_id
    assert len(labels["cd4ml.data.hash"]) == 64
    assert "cd4ml.git.commit" in labels and labels["org.opencontainers.image.version"] == "1"
    assert f"CD4ML_MODEL_SHA256={v1.sha256}" in attrs["Config"]["Env"]
    assert attrs["Config"]["User"] not in ("", "0", "root")
    assert attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"


def test_a_retrain_rebuilds_only_the_model_layer_offline(world, docker_client):
    r2 = world["r2"]
    assert r2.passed, r2.infra.failures
    first = json.loads(world["build1"].stdout)
    layers1 = docker_client.images.get(first["image_id"]).attrs["RootFS"]["Layers"]
    layers2 = docker_client.images.get(r2.image_id).attrs["RootFS"]["Layers"]
    # dependencies and code are the very same layers; only the model's differs
    assert layers2[:-1] == layers1[:-1]
    assert layers2[-1] != layers1[-1]
    assert r2.cached_steps >= 6
    # built with network_mode="none": nothing was installed. Loose bound: shared CI machine
    assert r2.build_seconds < 30
    # compiled offline too: the compile stage's image is the pipeline's, whole in the cache
    assert r2.runtime == "onnx", r2.runtime_reason
    print(f"\noffline rebuild: {r2.build_seconds:.1f} s, of which the compile stage "
          f"{r2.compile_seconds:.1f} s")


def test_cli_push_records_the_digest_and_never_shows_the_password(world):
    out = world["push2"]
    assert out.returncode == 0, out.stderr[-3000:]
    assert SECRET not in out.stdout and SECRET not in out.stderr
    with Store(world["url"]) as store:
        image = store.images_for(world["v2"].id)[0]
    assert image.digest and image.digest in out.stdout
    assert _manifest_digest(world["registry"], "cd4ml-test/wine", "2") == image.digest


def test_a_tampered_artifact_fails_infra_validation_and_is_never_pushed(world):
    out = world["build3"]
    assert out.returncode == 1, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["passed"] is False and result["digest"] is None
    ready = result["infra"]["checks"][0]
    assert ready["name"] == "ready" and not ready["passed"]
    assert "exited" in ready["detail"] and "sha256" in ready["detail"]
    with Store(world["url"]) as store:
        image = store.images_for(world["v3"].id)[0]
    assert image.infra_status == "failed" and image.digest is None
    assert image.infra_report["passed"] is False
    # and it cannot be pushed afterwards either
    assert world["push3"].returncode != 0
    assert "passed infra validation" in world["push3"].stderr


def test_a_model_that_is_not_blessed_is_refused(world):
    from cd4ml.release.build import build

    with Store(world["url"]) as store:
        with pytest.raises(BuildError, match=r"wine:4 is not blessed"):
            build(world["spec"], store, world["v4"])
        assert store.images_for(world["v4"].id) == []


def test_infra_validation_containers_are_always_removed(world, docker_client):
    # this module's images only: other tests on the machine may be validating theirs right now
    images = [json.loads(world["build1"].stdout)["image_id"], world["r2"].image_id,
              json.loads(world["build3"].stdout)["image_id"]]
    for image in images:
        left = docker_client.containers.list(all=True, filters={
            "label": "cd4ml.role=infra-validation", "ancestor": image})
        assert left == [], image
