"""The compiled path against the real Docker engine, with the spec's default
``image.runtime: auto``: the compile stage converts the wine random forest inside a locked-down
container of the pipeline's compile image (the model mounted read-only), the image then serves
it with ONNX Runtime and carries neither scikit-learn nor scipy nor pandas, and infra
validation holds its answers to scikit-learn's (computed in the compile image) under the
recorded parity rule. No scikit-learn image is built on the way. One build, shared by the
tests of the module."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
import yaml

from cd4ml.spec import load_spec
from cd4ml.store import Store
from tests.helpers import build_env, train_version, wine_spec_dict

pytestmark = pytest.mark.docker
REPOSITORY = "cd4ml-test/wine-onnx"


@pytest.fixture(scope="module")
def built(tmp_path_factory, docker_client):
    from cd4ml.release.build import build

    tmp = tmp_path_factory.mktemp("onnx")
    raw = wine_spec_dict()
    raw["image"].update(repository=REPOSITORY)
    raw["image"].pop("runtime", None)  # the default: auto
    path = tmp / "wine.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(path)
    with build_env(tmp, drop=("GITHUB_", "CD4ML_REGISTRY")), Store(f"sqlite:///{tmp / 's.db'}") as store:
        model = train_version(spec, store, seed=1)
        # whole seconds, as the engine's creation times are compared below
        started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
        result = build(spec, store, model)
        image = store.images_for(model.id)[0]
    yield spec, model, result, image, started
    from docker.errors import ImageNotFound

    with contextlib.suppress(ImageNotFound):
        docker_client.images.remove(f"{REPOSITORY}:1", force=True, noprune=True)


def test_the_onnx_image_passes_infra_validation_under_the_parity_rule(built):
    spec, _, result, image, _ = built
    assert spec.image.runtime == "auto"
    assert result.passed, result.infra.failures
    assert result.runtime == "onnx" and "parity on" in result.runtime_reason
    checks = {c.name: c for c in result.infra.checks}
    assert checks["runtime"].observed == "onnx"
    assert "labels identical" in checks["runtime"].detail
    assert "within the parity rule" in checks["predictions"].detail
    assert checks["predictions"].observed == result.infra.test_rows > 0
    # recorded with the image: the runtime and its tolerance
    stored = {c["name"]: c for c in image.infra_report["checks"]}
    assert stored["runtime"]["observed"] == "onnx" and "1e-05" in stored["runtime"]["detail"]
    assert stored["runtime"]["limit"] == "auto"
    print(f"\ncompile stage {result.compile_seconds:.1f} s of {result.build_seconds:.1f} s build, "
          f"{result.infra.seconds:.1f} s infra validation")


def test_the_onnx_image_has_no_scikit_learn(built, docker_client):
    _, model, result, _, _ = built
    names = {p.split("==")[0].lower() for p in result.requirements}
    assert "onnxruntime" in names and "numpy" in names
    assert not names & {"scikit-learn", "scipy", "pandas", "skl2onnx", "joblib"}
    attrs = docker_client.images.get(result.image_id).attrs
    assert attrs["Config"]["Labels"]["cd4ml.runtime"] == "onnx"
    assert attrs["Config"]["Labels"]["cd4ml.model.sha256"] == model.sha256
    probe = ("import importlib.util as u, json, pathlib; print(json.dumps({"
             "'sklearn': bool(u.find_spec('sklearn')), 'scipy': bool(u.find_spec('scipy')), "
             "'onnxruntime': bool(u.find_spec('onnxruntime')), "
             "'files': sorted(p.name for p in pathlib.Path('/opt/cd4ml/model').iterdir()), "
             "'compiled': json.load(open('/opt/cd4ml/model/compiled.json'))['runtime']}))")
    out = docker_client.containers.run(result.image_id, ["python", "-c", probe], remove=True,
                                       network_mode="none")
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen == {"sklearn": False, "scipy": False, "onnxruntime": True, "compiled": "onnx",
                    "files": ["compiled.json", "model.json", "model.onnx", "model.pkl"]}


def test_the_compile_stage_leaves_nothing_behind(built, docker_client):
    from cd4ml.release.compile import compiler_tag

    _, model, result, _, started = built
    assert result.passed
    assert not docker_client.containers.list(all=True, filters={"label": "cd4ml.role=compile"})
    # no image of this model left untagged by this build: no scikit-learn image was built on
    # the way (the same seed gives the same model.pkl in other tests: only this build's count)
    left = [i.id for i in docker_client.images.list(
        filters={"dangling": True, "label": f"cd4ml.model.sha256={model.sha256}"})
        if i.attrs["Created"][:19] >= started]
    assert left == []
    assert docker_client.images.get(result.image_id).tags == [f"{REPOSITORY}:1"]
    # the compile image stays as the next build's layer cache, and holds nothing of the model
    compiler = docker_client.images.get(compiler_tag(REPOSITORY))
    assert compiler.labels["cd4ml.role"] == "compiler"
    assert "cd4ml.model.sha256" not in compiler.labels
