"""Cache keys: what must and must not change them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cd4ml.spec import load_spec
from cd4ml.stages.pipeline import cache_key, code_hash


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


def test_installed_library_is_identified_by_version(wine):
    spec = load_spec(wine)
    other = load_spec(wine)
    assert code_hash(spec) == code_hash(other)
    assert cache_key(spec, "a" * 64, "c") != cache_key(spec, "b" * 64, "c")
    assert cache_key(spec, "a" * 64, "c") != cache_key(spec, "a" * 64, "d")
