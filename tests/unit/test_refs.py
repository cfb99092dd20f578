"""One grammar for model versions and one resolver for pipelines (cd4ml/refs.py): every form,
every error."""

from __future__ import annotations

import shutil

import pytest

from cd4ml.errors import StoreError, UsageError
from cd4ml.refs import (
    ModelRef,
    find_model,
    find_pipeline,
    find_spec,
    load_pipeline,
    parse_model_ref,
    parse_run_or_model,
    pipeline_name,
    spec_path,
)

# ----------------------------------------------------------------------------- model versions


@pytest.mark.parametrize("text,expected", [
    ("5", ModelRef(None, 5)),
    ("v5", ModelRef(None, 5)),
    (" 12 ", ModelRef(None, 12)),
    (5, ModelRef(None, 5)),
    ("wine:5", ModelRef("wine", 5)),
    ("wine:v5", ModelRef("wine", 5)),
    ("wine-custom:3", ModelRef("wine-custom", 3)),
    ("my_pipe:3", ModelRef("my_pipe", 3)),
    ("latest", ModelRef(None)),
    ("wine:latest", ModelRef("wine")),
    ("@production", ModelRef(None, None, "production")),
    ("wine@production", ModelRef("wine", None, "production")),
    ("wine-custom@staging", ModelRef("wine-custom", None, "staging")),
])
def test_every_form_parses(text, expected):
    ref = parse_model_ref(text)
    assert ref == expected
    assert ref.latest is (expected.version is None and expected.environment is None)
    assert parse_model_ref(ref) is ref
    assert parse_model_ref(str(ref)) == ref  # the canonical text reads back the same


@pytest.mark.parametrize("text", ["", "wine", "wine:", ":3", "wine:x", "3.0", "-1", "v", "V3",
                                  "wine:3:4", "my:pipe:2", "Wine:3", "wine@", "@", "wine@prod@x",
                                  "wine:@production", "wine:latest@production",
                                  "wine 3", True])
def test_anything_else_is_a_one_line_usage_error_naming_the_value_and_the_forms(text):
    with pytest.raises(UsageError) as e:
        parse_model_ref(text)
    message = str(e.value)
    assert message.startswith(f"model version {str(text).strip()!r}: expected N, vN, PIPELINE:N, "
                              "latest, PIPELINE:latest, @ENV or PIPELINE@ENV")
    assert "wine@production" in message and "\n" not in message


def test_versions_are_numbered_from_one():
    for text in ("0", "v0", "wine:0"):
        with pytest.raises(UsageError, match="versions are numbered from 1"):
            parse_model_ref(text)


def test_a_usage_error_is_not_a_spec_error():
    from cd4ml.errors import SpecError

    with pytest.raises(UsageError) as e:
        parse_model_ref("nope")
    assert not isinstance(e.value, SpecError) and e.value.exit_code == 2


@pytest.mark.parametrize("text,expected", [
    ("3", ModelRef(None, 3)),
    ("wine:latest", ModelRef("wine")),
    ("wine@staging", ModelRef("wine", None, "staging")),
    ("7c35fb062d36", "7c35fb062d36"),   # a whole run id
    ("123456789012", "123456789012"),   # a whole run id that happens to be all digits
    ("7c35f", "7c35f"),                 # a prefix that is no model version
])
def test_run_or_model(text, expected):
    assert parse_run_or_model(text) == expected


def test_run_or_model_rejects_what_is_neither():
    with pytest.raises(UsageError, match=r"'wine': expected a run id \(see 'cd4ml runs'\) or a "
                                         "model version: N, vN"):
        parse_run_or_model("wine")


@pytest.fixture
def versions(store):
    """wine:1 (blessed, in staging and production), wine:2 (in staging), diabetes:1."""
    run = store.start_run("wine")
    m1 = store.register_model("wine", run.id, "classification", "/a/1", "a" * 64, {}, {})
    run2 = store.start_run("wine")
    m2 = store.register_model("wine", run2.id, "classification", "/a/2", "b" * 64, {}, {})
    run3 = store.start_run("diabetes")
    store.register_model("diabetes", run3.id, "regression", "/a/3", "c" * 64, {}, {})
    for env, model in (("staging", m1), ("production", m1), ("staging", m2)):
        dep = store.start_deployment("wine", env, model.id, f"cd4ml/wine:{model.version}", "local",
                                     "deploy", "ana")
        store.finish_deployment(dep.id, "healthy")
    return store


@pytest.mark.parametrize("text,pipeline,expected", [
    ("1", "wine", ("wine", 1)),
    ("v2", "wine", ("wine", 2)),
    ("wine:1", None, ("wine", 1)),
    ("wine:1", "wine", ("wine", 1)),
    ("diabetes:v1", None, ("diabetes", 1)),
    ("latest", "wine", ("wine", 2)),
    ("wine:latest", None, ("wine", 2)),
    ("@production", "wine", ("wine", 1)),
    ("wine@staging", None, ("wine", 2)),
])
def test_find_model_resolves_every_form(versions, text, pipeline, expected):
    model = find_model(versions, text, pipeline)
    assert (model.pipeline, model.version) == expected


def test_find_model_checks_the_environment_against_the_spec(versions, spec):
    assert find_model(versions, "@production", spec).version == 1
    from cd4ml.errors import SpecError

    with pytest.raises(SpecError, match="no environment 'prod' \\(known: staging, "):
        find_model(versions, "@prod", spec)


@pytest.mark.parametrize("text,pipeline,error,match", [
    ("diabetes:1", "wine", UsageError, ("model version 'diabetes:1' is of pipeline 'diabetes', "
                                       "not 'wine'; name a version of wine, or choose -p diabetes")),
    ("3", None, UsageError, ("model version '3' names no pipeline and there is none in hand; "
                            "write PIPELINE:3 \\(e.g. wine:3\\)")),
    ("@production", None, UsageError, "names no pipeline"),
    ("wine:9", None, StoreError, "no model version wine:9"),
    ("nothing:latest", None, StoreError, "pipeline 'nothing' has no model versions"),
    ("diabetes@production", None, StoreError, "no version of diabetes is deployed in production"),
    ("wine:x", "wine", UsageError, "expected N, vN"),
])
def test_find_model_errors(versions, text, pipeline, error, match):
    with pytest.raises(error, match=match):
        find_model(versions, text, pipeline)


# ----------------------------------------------------------------------------- pipelines


@pytest.fixture
def repo(tmp_path, pipelines_dir, monkeypatch):
    """A working directory holding a copy of the example pipelines (wine, diabetes, and
    wine_custom.yaml whose name is wine-custom)."""
    shutil.copytree(pipelines_dir, tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("arg,expected", [
    ("pipelines/wine.yaml", "pipelines/wine.yaml"),   # a path, as is
    ("wine_custom", "pipelines/wine_custom.yaml"),    # a file stem under pipelines/
    ("wine-custom", "pipelines/wine_custom.yaml"),    # a spec's name:
    ("diabetes", "pipelines/diabetes.yaml"),
])
def test_a_pipeline_is_a_path_a_file_stem_or_a_spec_name(repo, arg, expected):
    assert spec_path(arg).resolve() == (repo / expected).resolve()
    assert find_pipeline(arg).resolve() == (repo / expected).resolve()


def test_every_form_loads_the_same_spec_for_the_cli_and_the_tracking_api(repo):
    for arg in ("pipelines/wine_custom.yaml", "wine_custom", "wine-custom"):
        assert load_pipeline(arg).name == "wine-custom"
        assert find_spec(arg).name == "wine-custom"
        assert pipeline_name(arg) == "wine-custom"
    spec = load_pipeline("wine")
    assert load_pipeline(spec) is spec and find_spec(spec) is spec


def test_an_unknown_name_is_a_usage_error_listing_the_known(repo):
    with pytest.raises(UsageError) as e:
        spec_path("wine-custon")
    assert str(e.value) == (
        "pipeline 'wine-custon': no spec pipelines/wine-custon.yaml and none whose name is "
        "'wine-custon' (known: diabetes (pipelines/diabetes.yaml), wine (pipelines/wine.yaml), "
        "wine-custom (pipelines/wine_custom.yaml)); pass one of these or a spec path")


def test_the_tracking_api_records_a_name_without_a_spec(repo):
    assert find_pipeline("demo") is None and find_spec("demo") is None


def test_without_an_argument_the_only_spec_or_an_error(repo, tmp_path, monkeypatch):
    with pytest.raises(UsageError, match=r"several pipelines \(diabetes \(pipelines/diabetes.yaml\), "
                                         r"wine .*\); choose one with --pipeline NAME"):
        spec_path(None)
    for other in ("diabetes.yaml", "wine_custom.yaml"):
        (repo / "pipelines" / other).unlink()
    assert spec_path(None) == repo / "pipelines" / "wine.yaml"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    with pytest.raises(UsageError, match="no pipelines/\\*.yaml here; pass --pipeline PATH or run "
                                         "'cd4ml init'"):
        spec_path(None)


def test_a_missing_path_is_a_spec_error_naming_it(repo):
    from cd4ml.errors import SpecError

    with pytest.raises(SpecError, match="pipelines/nope.yaml: no such pipeline spec"):
        load_pipeline("pipelines/nope.yaml")


def test_read_commands_also_know_pipelines_only_the_store_has(repo):
    assert pipeline_name("demo", recorded=["demo", "wine"]) == "demo"
    assert pipeline_name("wine_custom", recorded=["demo"]) == "wine-custom"
    with pytest.raises(UsageError) as e:
        pipeline_name("dem", recorded=["demo", "wine"])
    assert "nothing recorded of it (known: diabetes (pipelines/diabetes.yaml), wine " in str(e.value)
    assert str(e.value).endswith("wine-custom (pipelines/wine_custom.yaml), demo); pass one of "
                                 "these or a spec path")


def test_a_broken_spec_does_not_hide_the_others_but_says_what_is_wrong_when_named(repo):
    (repo / "pipelines" / "broken.yaml").write_text("name: [unclosed\n")
    assert load_pipeline("wine-custom").name == "wine-custom"
    from cd4ml.errors import SpecError

    with pytest.raises(SpecError, match="broken.yaml"):
        pipeline_name("broken")
