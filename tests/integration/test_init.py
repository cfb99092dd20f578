"""`cd4ml init` on a user's data: what it writes runs as it is."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from cd4ml.cli import main
from cd4ml.spec import load_spec
from cd4ml.stages import pipeline
from cd4ml.store import Store


@pytest.fixture
def user_repo(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    n = 400
    x1, x2 = rng.normal(size=n), rng.uniform(0, 10, size=n)
    region = rng.choice(["north", "south", "east"], size=n)
    churn = ((x1 + x2 / 5 + (region == "north")) > 1.2).astype(int)
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    pd.DataFrame({"tenure": x1, "spend": x2, "region": region, "churn": churn}).to_csv(
        repo / "data" / "customers.csv", index=False)
    monkeypatch.chdir(repo)
    return repo


def test_init_scaffolds_a_pipeline_that_runs_and_passes(user_repo, capsys):
    assert main(["init", "--data", "data/customers.csv", "--target", "churn", "--slices", "region"]) == 0
    out = capsys.readouterr().out
    assert "pipeline customers (classification)" in out

    spec = load_spec(user_repo / "pipelines" / "customers.yaml")
    assert spec.model.task == "classification" and spec.data.slices == ("region",)
    assert [(g.metric, g.slice) for g in spec.gates] == [("accuracy", None), ("f1_macro", None),
                                                         ("accuracy", "region")]
    suite = json.loads((user_repo / "pipelines" / "expectations" / "customers.json").read_text())
    types = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    assert ("expect_column_values_to_be_in_set", "region") in types
    assert ("expect_column_values_to_be_in_set", "churn") in types
    assert ("expect_column_values_to_be_between", "spend") in types

    workflow = yaml.safe_load((user_repo / ".github" / "workflows" / "cd4ml.yml").read_text())
    assert workflow["jobs"]["pipeline"]["strategy"]["matrix"]["pipeline"] == ["customers"]
    promote = (user_repo / ".github" / "workflows" / "promote.yml").read_text()
    assert "default: customers" in promote and "wine" not in promote
    assert (user_repo / "infra" / "docker" / "Dockerfile.j2").is_file()
    assert ".cd4ml/" in (user_repo / ".gitignore").read_text()

    with Store() as store:
        result = pipeline.run(spec, store)
    assert result.status == "succeeded", result


def test_init_keeps_existing_files_unless_forced(user_repo, capsys):
    args = ["init", "--data", "data/customers.csv", "--target", "churn"]
    assert main(args) == 0
    spec = user_repo / "pipelines" / "customers.yaml"
    spec.write_text(spec.read_text() + "# mine\n")
    assert main(args) == 0
    assert "kept" in capsys.readouterr().out and spec.read_text().endswith("# mine\n")
    assert main([*args, "--force"]) == 0
    assert not spec.read_text().endswith("# mine\n")


def test_init_infers_regression_and_refuses_a_missing_target(user_repo, capsys):
    assert main(["init", "--data", "data/customers.csv", "--target", "spend", "--name", "spend"]) == 0
    assert load_spec(user_repo / "pipelines" / "spend.yaml").model.task == "regression"
    assert main(["init", "--data", "data/customers.csv", "--target", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "Traceback" not in err


def test_a_second_pipeline_joins_every_workflow_and_takes_free_ports(user_repo, capsys):
    from cd4ml import __version__

    assert main(["init", "--data", "data/customers.csv", "--target", "churn"]) == 0
    assert main(["init", "--data", "data/customers.csv", "--target", "spend", "--name", "spend"]) == 0
    assert "added   spend to" in capsys.readouterr().out
    workflows = user_repo / ".github" / "workflows"
    cd4ml_yml = yaml.safe_load((workflows / "cd4ml.yml").read_text())
    for job in ("pipeline", "deploy-staging"):
        assert cd4ml_yml["jobs"][job]["strategy"]["matrix"]["pipeline"] == ["customers", "spend"]
    for name in ("promote.yml", "rollback.yml"):
        inputs = yaml.safe_load((workflows / name).read_text())[True]["workflow_dispatch"]["inputs"]
        assert inputs["pipeline"]["options"] == ["customers", "spend"]
        assert inputs["pipeline"]["default"] == "customers"
    assert cd4ml_yml["env"]["CD4ML_INSTALL"] == (
        f"${{{{ vars.CD4ML_INSTALL || 'cd4ml[postgres]=={__version__}' }}}}")
    ports = {name: [e.port for e in load_spec(user_repo / "pipelines" / f"{name}.yaml").environments]
             for name in ("customers", "spend")}
    assert ports == {"customers": [8701, 8702], "spend": [8703, 8704]}
    # again: nothing is added twice, and the spec keeps its own ports
    assert main(["init", "--data", "data/customers.csv", "--target", "spend", "--name", "spend",
                 "--force"]) == 0
    assert [e.port for e in load_spec(user_repo / "pipelines" / "spend.yaml").environments] == [8703, 8704]
    assert "customers, spend]" in (workflows / "cd4ml.yml").read_text()
