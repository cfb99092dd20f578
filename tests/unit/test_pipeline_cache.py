"""Cache keys: what must and must not change them."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import yaml

import cd4ml.stages
from cd4ml.spec import Spec, load_spec
from cd4ml.stages.pipeline import cache_key, code_hash
from tests.helpers import wine_spec_dict


@pytest.fixture
def wine(tmp_path, pipelines_dir) -> Path:
    shutil.copytree(pipelines_dir, tmp_path / "pipelines")
    return tmp_path / "pipelines" / "wine.yaml"


def test_code_hash_is_stable(wine):
    spec = load_spec(wine)
    assert code_hash(spec) == code_hash(load_spec(wine))


def test_comments_and_layout_do_not_change_the_spec_hash(wine):
    before = load_spec(wine).spec_hash
    wine.write_text("# a comment\n\n" + wine.read_text())
    assert load_spec(wine).spec_hash == before


def test_params_change_the_spec_hash(wine):
    before = load_spec(wine).spec_hash
    wine.write_text(wine.read_text().replace("n_estimators: 100", "n_estimators: 101"))
    assert load_spec(wine).spec_hash != before


def test_suite_edit_changes_the_spec_hash(wine):
    before = load_spec(wine).spec_hash
    suite = wine.parent / "expectations" / "wine.json"
    suite.write_text(suite.read_text().replace("{", "{ ", 1) + "\n")
    assert load_spec(wine).spec_hash != before


def test_user_estimator_source_is_part_of_the_code_hash(wine):
    mod = wine.parent / "my_model.py"
    mod.write_text("from sklearn.ensemble import RandomForestClassifier as make\n")
    wine.write_text(wine.read_text().replace(
        "sklearn.ensemble:RandomForestClassifier", "my_model:make"))
    first = code_hash(load_spec(wine))
    mod.write_text(mod.read_text() + "# tuned\n")
    assert code_hash(load_spec(wine)) != first


def test_every_module_of_the_training_code_is_in_the_code_identity(tmp_path, wine, monkeypatch):
    # a copy of the stage package (and the spec reader and artifact writer beside it) that can be
    # changed; its pipeline module, loaded from there, hashes the copy and imports all else as usual
    package = Path(cd4ml.__file__).parent
    copy = tmp_path / "cd4ml"
    shutil.copytree(package / "stages", copy / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("spec.py", "artifacts.py"):
        shutil.copy(package / name, copy / name)
    found = importlib.util.spec_from_file_location("copied_pipeline", copy / "stages" / "pipeline.py")
    copied = importlib.util.module_from_spec(found)
    monkeypatch.setitem(sys.modules, "copied_pipeline", copied)  # its dataclass looks itself up
    found.loader.exec_module(copied)
    spec = load_spec(wine)

    original = code_hash(spec)
    assert copied.code_hash(spec) == original  # the copy is the code, byte for byte
    for changed in ("stages/tracking/entry_point.py", "spec.py", "artifacts.py"):  # a subpackage too
        path = copy / changed
        text = path.read_text()
        path.write_text(text + "\n# a change\n")
        assert copied.code_hash(spec) != original, changed
        path.write_text(text)
    assert copied.code_hash(spec) == original
    (copy / "stages" / "tracking" / "extra.py").write_text("# a new module\n")
    assert copied.code_hash(spec) != original


def test_installed_library_is_identified_by_version(tmp_path, monkeypatch):
    # an installed distribution (its files under site-packages, a dist-info beside them) whose
    # source stays the same while its version changes: the version alone must tell them apart
    site = tmp_path / "venv" / "site-packages"
    (site / "fakelib").mkdir(parents=True)
    (site / "fakelib" / "__init__.py").write_text(
        "from sklearn.ensemble import RandomForestClassifier as Model\n")
    info = site / "fakelib-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakelib\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(site))
    raw = wine_spec_dict()
    raw["model"]["estimator"] = "fakelib:Model"
    path = tmp_path / "wine.yaml"
    path.write_text(yaml.safe_dump(raw))
    first = code_hash(load_spec(path))
    assert code_hash(load_spec(path)) == first

    info.rename(site / "fakelib-2.0.dist-info")
    (site / "fakelib-2.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fakelib\nVersion: 2.0\n")
    importlib.invalidate_caches()
    assert code_hash(load_spec(path)) != first


def _spec(tmp_path: Path, change=None) -> Spec:
    raw = wine_spec_dict()
    if change:
        change(raw)
    path = tmp_path / f"wine-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


@pytest.mark.parametrize("section, change", [
    ("data", lambda raw: raw["data"].update(features=["alcohol", "malic_acid", "ash"])),
    ("model", lambda raw: raw["model"].update(seed=7)),
    ("split", lambda raw: raw["split"].update(test_size=0.25)),
    ("metrics", lambda raw: raw.update(metrics=raw["metrics"][:-1])),
    ("gates", lambda raw: raw["gates"][0].update(min=0.8)),
    ("drift", lambda raw: raw["drift"].update(threshold=0.3)),
])
def test_what_decides_the_model_and_its_evaluation_is_in_the_cache_key(tmp_path, section, change):
    before = _spec(tmp_path)
    after = _spec(tmp_path, change)
    assert cache_key(after, "d" * 64, "c") != cache_key(before, "d" * 64, "c"), section


def test_the_expectation_suite_is_in_the_cache_key(tmp_path):
    raw = wine_spec_dict()
    suite = tmp_path / "suite.json"
    suite.write_bytes(Path(raw["expectations"]).read_bytes())
    before = _spec(tmp_path, lambda r: r.update(expectations=str(suite)))
    suite.write_text(suite.read_text().replace("{", "{ ", 1))  # the same path, another suite
    after = _spec(tmp_path, lambda r: r.update(expectations=str(suite)))
    assert cache_key(after, "d" * 64, "c") != cache_key(before, "d" * 64, "c")


@pytest.mark.parametrize("section, change", [
    ("environments", lambda raw: raw["environments"]["staging"].update(port=8799)),
    ("environments", lambda raw: raw["environments"].update(qa={"target": "local", "port": 8798})),
    ("image", lambda raw: raw["image"].update(base="python:3.12-slim")),
    ("image", lambda raw: raw["image"]["budgets"].update(p99_ms=50)),
])
def test_where_the_model_is_served_is_not_in_the_cache_key(tmp_path, section, change):
    before = _spec(tmp_path)
    after = _spec(tmp_path, change)
    assert after.spec_hash != before.spec_hash  # recorded with the run all the same
    assert cache_key(after, "d" * 64, "c") == cache_key(before, "d" * 64, "c"), section


def test_data_and_code_are_in_the_cache_key(tmp_path):
    spec = _spec(tmp_path)
    assert cache_key(spec, "a" * 64, "c") != cache_key(spec, "b" * 64, "c")
    assert cache_key(spec, "a" * 64, "c") != cache_key(spec, "a" * 64, "d")
