"""``image.runtime: onnx`` against the real Docker engine: the compile stage converts the wine
random forest inside a locked-down container of the scikit-learn image, the image then serves
it with ONNX Runtime and carries neither scikit-learn nor scipy nor pandas, and infra
validation holds its answers to scikit-learn's (computed in the scikit-learn image) under the
recorded parity rule. One build, shared by the tests of the module."""

from __future__ import annotations

import contextlib
import json

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
    raw["image"].update(repository=REPOSITORY, runtime="onnx")
    path = tmp / "wine.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(path)
    with build_env(tmp, drop=("GITHUB_", "CD4ML_REGISTRY")), Store(f"sqlite:///{tmp / 's.db'}") as store:
        model = train_version(spec, store, seed=1)
        result = build(spec, store, model)
        image = store.images_for(model.id)[0]
    yield spec, model, result, image
    from docker.errors import ImageNotFound

    with contextlib.suppress(ImageNotFound):
        docker_client.images.remove(f"{REPOSITORY}:1", force=True, noprune=True)


def test_the_onnx_image_passes_infra_validation_under_the_parity_rule(built):
    spec, _, result, image = built
    assert spec.image.runtime == "onnx"
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


def test_the_onnx_image_has_no_scikit_learn(built, docker_client):
    _, model, result, _ = built
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
    assert built[2].passed
    assert not docker_client.containers.list(all=True, filters={"label": "cd4ml.role=compile"})
    assert not [i for i in docker_client.images.list() if any(
        t.endswith("-compile") and t.startswith(REPOSITORY) for t in i.tags)]
