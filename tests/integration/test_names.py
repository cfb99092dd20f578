"""Every command that takes a model version accepts every form of the one grammar
(cd4ml/refs.py), and every command on a pipeline finds it by path, file stem or name.

The store is real (SQLite) and filled without Docker: wine:1 current in production, wine:2 in
staging, wine:3 the newest; none blessed and none with an image, so that each command stops at
a refusal that names the version it resolved (never building or deploying anything).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cd4ml.cli import main
from cd4ml.store import Store

ROOT = Path(__file__).resolve().parents[2]

#: form -> the version of wine it names
FORMS = {"1": 1, "v1": 1, "wine:1": 1, "wine:v1": 1, "latest": 3, "wine:latest": 3,
         "@staging": 2, "wine@staging": 2, "@production": 1, "wine@production": 1}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A repository with the wine pipeline (and an image registry, for push) and its store."""
    root = tmp_path_factory.mktemp("names")
    pipelines = root / "pipelines"
    pipelines.mkdir()
    examples = ROOT / "pipelines"
    shutil.copytree(examples / "data", pipelines / "data")
    shutil.copytree(examples / "expectations", pipelines / "expectations")
    raw = yaml.safe_load((examples / "wine.yaml").read_text())
    raw["image"] = {**raw.get("image", {}), "registry": "127.0.0.1:18300"}
    (pipelines / "wine.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with Store(f"sqlite:///{root / 'store.db'}") as store:
        for n in (1, 2, 3):
            run = store.start_run("wine")
            store.register_model("wine", run.id, "classification", f"/nowhere/{n}", f"{n}" * 64, {}, {})
            store.finish_run(run.id, "succeeded")
        for env, n in (("production", 1), ("staging", 2)):
            dep = store.start_deployment("wine", env, store.model("wine", n).id, f"cd4ml/wine:{n}",
                                         "local", "deploy", "ana")
            store.finish_deployment(dep.id, "healthy")
    return root


@pytest.fixture
def world(made, tmp_path, monkeypatch):
    """A copy of the repository and store of its own, as the working directory."""
    repo = tmp_path / "repo"
    shutil.copytree(made, repo)
    monkeypatch.setenv("CD4ML_STORE_URL", f"sqlite:///{repo / 'store.db'}")
    monkeypatch.chdir(repo)
    return repo


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv: str) -> str:
    """The one line a command refused with (after its progress lines, if any)."""
    code, out, err = cli(capsys, *argv)
    assert code in (1, 2) and out == "", (code, out, err)
    errors = [line for line in err.splitlines() if line.startswith("cd4ml: error: ")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n"), err
    return errors[0]


def _argv(command: str, form: str, version: int) -> list[str]:
    if command == "rollback":
        # rolling back to what an environment already runs would deploy for real
        return ["rollback", "--env", "production" if version == 2 else "staging", "--to", form]
    return {"build": ["build", form], "push": ["push", form],
            "deploy": ["deploy", "--env", "staging", form],
            "promote": ["promote", form, "--to", "production"],
            "evaluate": ["evaluate", "--model", form],
            "render": ["render", "--env", "production", form]}[command]


#: command -> what its refusal says about the version it resolved
REFUSAL = {"build": "wine:{n} is not blessed", "deploy": "wine:{n} is not blessed",
           "promote": "wine:{n} is not blessed", "push": "wine:{n} has no image",
           "rollback": "wine:{n} has no infra-validated image",
           "evaluate": "/nowhere/{n}", "render": "wine:{n} has no infra-validated image"}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("command", sorted(REFUSAL))
def test_commands_on_a_spec_accept_every_form(world, capsys, command, form):
    n = FORMS[form]
    if command == "render" and n == 1:
        return  # production runs wine:1: rendered, not refused (see the next test)
    assert REFUSAL[command].format(n=n) in refused(capsys, *_argv(command, form, n))


@pytest.mark.parametrize("form", [f for f, n in FORMS.items() if n == 1])
def test_render_of_the_version_an_environment_runs(world, capsys, form):
    code, out, err = cli(capsys, "render", "--env", "production", form, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model_version"] == 1 and doc["image"] == "cd4ml/wine:1"


@pytest.mark.parametrize("form", sorted(FORMS))
def test_serve_accepts_every_form(world, capsys, monkeypatch, form):
    # a pinned sha256 that matches no version stops serve before it listens, naming the version
    monkeypatch.setenv("CD4ML_MODEL_SHA256", "f" * 64)
    assert f"but wine:{FORMS[form]} was registered" in refused(capsys, "serve", form)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_read_commands_accept_every_form(world, capsys, form):
    n = FORMS[form]
    code, out, _ = cli(capsys, "show", form, "--json")
    assert code == 0 and json.loads(out)["model"]["version"] == n
    code, out, _ = cli(capsys, "lineage", form, "--json")
    assert code == 0 and json.loads(out)["ref"] == f"wine:{n}"
    code, out, _ = cli(capsys, "compare", form, "wine:3", "--json", "-p", "wine")
    assert code == 0 and json.loads(out)["a"]["ref"] == f"wine:{n}"


@pytest.mark.parametrize("command", ["build", "push", "deploy", "promote", "rollback",
                                     "evaluate", "render", "serve", "show", "lineage", "compare"])
@pytest.mark.parametrize("bad", ["wine", "wine:x", "3.5", "wine@"])
def test_a_malformed_version_is_the_same_usage_error_everywhere(world, capsys, command, bad):
    argv = {"build": ["build", bad], "push": ["push", bad], "serve": ["serve", bad],
            "deploy": ["deploy", "--env", "staging", bad], "promote": ["promote", bad, "--to", "production"],
            "rollback": ["rollback", "--env", "staging", "--to", bad],
            "evaluate": ["evaluate", "--model", bad], "render": ["render", "--env", "staging", bad],
            "show": ["show", bad], "lineage": ["lineage", bad], "compare": ["compare", "wine:1", bad]}
    code, out, err = cli(capsys, *argv[command])
    assert code == 2 and out == ""
    expected = "N, vN, PIPELINE:N, latest, PIPELINE:latest, @ENV or PIPELINE@ENV (e.g. 3, v3, wine:3"
    assert err.count("\n") == 1 and f"'{bad}': expected" in err and expected in err, err


def test_a_version_of_another_pipeline_is_a_usage_error(world, capsys, pipelines_dir):
    shutil.copy(pipelines_dir / "diabetes.yaml", world / "pipelines" / "diabetes.yaml")
    line = refused(capsys, "deploy", "--env", "staging", "diabetes:1", "-p", "wine")
    assert "model version 'diabetes:1' is of pipeline 'diabetes', not 'wine'; " in line
    # without -p the version's own pipeline is the one meant, even with several
    assert "wine:3 is not blessed" in refused(capsys, "build", "wine:latest")
    assert "several pipelines" in refused(capsys, "build", "latest")


# ----------------------------------------------------------------------------- pipelines


@pytest.fixture
def several(world, pipelines_dir):
    """wine, diabetes and wine_custom.yaml (name: wine-custom), with a run of each."""
    for name in ("diabetes.yaml", "wine_custom.yaml", "custom_train.py"):
        shutil.copy(pipelines_dir / name, world / "pipelines" / name)
    with Store() as store:
        for pipeline in ("diabetes", "wine-custom", "tracked-only"):
            run = store.start_run(pipeline)
            store.finish_run(run.id, "succeeded")
    return world


@pytest.mark.parametrize("arg", ["wine-custom", "wine_custom", "pipelines/wine_custom.yaml"])
def test_runs_and_models_find_a_pipeline_by_name_stem_or_path(several, capsys, arg):
    code, out, _ = cli(capsys, "runs", "-p", arg, "--json")
    assert code == 0 and [r["pipeline"] for r in json.loads(out)] == ["wine-custom"]
    code, out, _ = cli(capsys, "models", "-p", arg, "--json")
    assert code == 0 and json.loads(out) == []


def test_a_pipeline_only_the_store_knows_is_readable(several, capsys):
    code, out, _ = cli(capsys, "runs", "-p", "tracked-only", "--json")
    assert code == 0 and [r["pipeline"] for r in json.loads(out)] == ["tracked-only"]


@pytest.mark.parametrize("command", ["run", "validate", "build", "status", "history", "runs",
                                     "models", "deploy"])
def test_an_unknown_pipeline_is_an_error_listing_the_known(several, capsys, command):
    argv = [command, "-p", "wine-custon"] + (["--env", "staging"] if command == "deploy" else [])
    line = refused(capsys, *argv)
    assert "pipeline 'wine-custon': no spec pipelines/wine-custon.yaml" in line
    assert "wine-custom (pipelines/wine_custom.yaml)" in line and "diabetes (pipelines/diabetes.yaml)" in line


def test_read_commands_show_every_pipeline_without_p(several, capsys):
    code, out, _ = cli(capsys, "runs", "--json")
    assert {r["pipeline"] for r in json.loads(out)} == {"wine", "diabetes", "wine-custom", "tracked-only"}
    code, out, _ = cli(capsys, "models")
    assert code == 0 and "wine:3" in out
    code, out, err = cli(capsys, "status", "--no-probe", "--json")
    assert code == 0, err
    rows = {(r["pipeline"], r["environment"]): r["version"] for r in json.loads(out)}
    assert rows[("wine", "production")] == 1 and rows[("wine", "staging")] == 2
    assert ("diabetes", "staging") in rows  # wine-custom declares no environments
    code, out, err = cli(capsys, "status", "--no-probe")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["pipeline", "env"], err
    code, out, err = cli(capsys, "history", "--json")
    assert code == 0, err
    assert [(r["pipeline"], r["environment"]) for r in json.loads(out)] == [
        ("wine", "staging"), ("wine", "production")]
    code, out, _ = cli(capsys, "history", "-p", "wine_custom")
    assert code == 0 and out.strip() == "no deployments of wine-custom"
