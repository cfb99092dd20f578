"""Rendering is pure: spec + model version + image -> files; users override templates by name."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from cd4ml.errors import SpecError
from cd4ml.release.render import (
    cpu_cores,
    memory_bytes,
    render,
    resource_name,
    templates_root,
)
from cd4ml.spec import load_spec
from tests.helpers import model_record

ROOT = Path(__file__).resolve().parents[2]


def env_of(spec, target: str, **kw):
    return dataclasses.replace(spec.environment("staging"), target=target, **kw)


def test_packaged_templates_are_the_repository_infra():
    root = templates_root()
    for target in ("local", "swarm", "kubernetes"):
        assert list((root / "infra" / target).glob("*.j2")), target
    assert (root / "infra" / "local" / "containers.yml.j2").resolve() == \
        (ROOT / "infra" / "local" / "containers.yml.j2").resolve()


def test_local_release_describes_model_and_front(spec):
    env = env_of(spec, "local", cpu="500m", memory="512Mi", port=18250)
    r = render(spec, env, model_record(), "cd4ml/wine:3", proxy_image="cd4ml-front:abc")
    # the local front's nginx configuration is made at each switch, not rendered
    assert list(r.files) == ["containers.yml"]
    conf = yaml.safe_load(r.files["containers.yml"])
    assert conf["network"] == r.name == f"cd4ml-{spec.project}-wine-staging"
    assert conf["model"]["labels"]["cd4ml.project"] == spec.project
    assert conf["model"]["image"] == "cd4ml/wine:3"
    assert conf["model"]["cpus"] == 0.5 and conf["model"]["memory"] == 512 * 2**20
    assert conf["model"]["labels"]["cd4ml.model.version"] == "3"
    assert conf["front"] == {**conf["front"], "port": 18250, "host": "127.0.0.1",
                             "image": "cd4ml-front:abc"}


def test_swarm_stack_rolls_start_first_and_back_on_failure(spec):
    env = env_of(spec, "swarm", replicas=3, port=18251, cpu="1", memory="1Gi")
    r = render(spec, env, model_record(), "reg.example:5000/cd4ml/wine:3",
               digest="sha256:" + "cd" * 32, proxy_image="python:3.11-slim")
    stack = yaml.safe_load(r.files["stack.yml"])
    m, front = stack["services"]["model"], stack["services"]["front"]
    # the digest pins the exact image the validation passed
    assert m["image"] == "reg.example:5000/cd4ml/wine@sha256:" + "cd" * 32
    assert m["deploy"]["replicas"] == 3 and m["deploy"]["endpoint_mode"] == "dnsrr"
    assert m["deploy"]["update_config"]["order"] == "start-first"
    assert m["deploy"]["update_config"]["failure_action"] == "rollback"
    assert m["deploy"]["resources"]["limits"] == {"cpus": "1.0", "memory": "1024M"}
    assert "/ready" in " ".join(m["healthcheck"]["test"])
    assert front["ports"] == [{"target": 8080, "published": 18251, "protocol": "tcp", "mode": "host"}]
    assert front["configs"][0]["target"] in front["entrypoint"][-1]
    assert stack["configs"]["front"]["file"] == "./front.conf"
    # nginx asks Swarm's DNS for the model service's tasks at run time
    assert "resolver 127.0.0.11" in r.files["front.conf"]
    assert "proxy_pass http://$cd4ml_live:8080;" in r.files["front.conf"]
    # the front does not depend on the model version: a deploy leaves it alone
    other = render(spec, env, model_record(4), "reg.example:5000/cd4ml/wine:4", proxy_image="python:3.11-slim")
    assert yaml.safe_load(other.files["stack.yml"])["services"]["front"] == front

    off = render(spec, dataclasses.replace(env, healthcheck=False), model_record(), "cd4ml/wine:3")
    stack = yaml.safe_load(off.files["stack.yml"])
    assert stack["services"]["model"]["healthcheck"] == {"disable": True}
    assert stack["services"]["front"]["healthcheck"] == {"disable": True}


def test_kubernetes_renders_hpa_only_with_autoscale(spec):
    env = env_of(spec, "kubernetes", namespace="ml")
    assert sorted(render(spec, env, model_record(), "cd4ml/wine:3").files) == ["deployment.yaml", "service.yaml"]
    auto = dataclasses.replace(env, autoscale={"min_replicas": 2, "max_replicas": 5, "cpu_percent": 70})
    files = render(spec, auto, model_record(), "cd4ml/wine:3").files
    hpa = yaml.safe_load(files["hpa.yaml"])
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    # with an autoscaler the Deployment leaves its replica count to it
    assert "replicas" not in yaml.safe_load(files["deployment.yaml"])["spec"]


def test_user_templates_override_and_add(spec, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "pipelines", repo / "pipelines")
    (repo / "infra" / "local").mkdir(parents=True)
    ours = (ROOT / "infra" / "local" / "containers.yml.j2").read_text()
    (repo / "infra" / "local" / "containers.yml.j2").write_text(
        ours.replace("PYTHONUNBUFFERED: \"1\"", "PYTHONUNBUFFERED: \"1\"\n    TEAM: fraud"))
    (repo / "infra" / "local" / "README.md.j2").write_text("{{ pipeline }} in {{ environment }}\n")
    user_spec = load_spec(repo / "pipelines" / "wine.yaml")
    r = render(user_spec, "staging", model_record(), "cd4ml/wine:3")
    assert yaml.safe_load(r.files["containers.yml"])["model"]["environment"]["TEAM"] == "fraud"
    assert r.sources["containers.yml"] == repo / "infra" / "local" / "containers.yml.j2"
    assert r.files["README.md"] == "wine in staging\n"
    written = r.write(tmp_path / "out")
    assert sorted(p.name for p in written) == ["README.md", "containers.yml"]


def test_template_mistakes_name_the_file(spec, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "pipelines", repo / "pipelines")
    (repo / "infra" / "local").mkdir(parents=True)
    bad = repo / "infra" / "local" / "containers.yml.j2"
    bad.write_text("image: {{ no_such_variable }}\n")
    user_spec = load_spec(repo / "pipelines" / "wine.yaml")
    with pytest.raises(SpecError, match=f"{bad}: 'no_such_variable' is undefined"):
        render(user_spec, "staging", model_record(), "cd4ml/wine:3")
    bad.write_text("line one\n{% if %}\n")
    with pytest.raises(SpecError, match=f"{bad}:2: template syntax error"):
        render(user_spec, "staging", model_record(), "cd4ml/wine:3")


def test_quantities():
    assert cpu_cores("500m") == 0.5 and cpu_cores("2") == 2.0 and cpu_cores(None) is None
    assert memory_bytes("512Mi") == 512 * 2**20
    assert memory_bytes("1G") == 10**9  # Kubernetes' SI unit
    assert memory_bytes("256m") == 256 * 2**20  # Docker's lower-case unit is binary
    assert memory_bytes("1048576") == 2**20
    for bad in ("lots", "0", "-1"):
        with pytest.raises(SpecError, match="cpu"):
            cpu_cores(bad)
    with pytest.raises(SpecError, match="memory: '12 parsecs' is not a size"):
        memory_bytes("12 parsecs")


def test_resource_names_are_dns_labels(spec):
    env = dataclasses.replace(spec.environment("staging"), name="pre-prod")
    named = dataclasses.replace(spec, name="fraud_v2")
    assert resource_name(named, env) == f"cd4ml-{spec.project}-fraud-v2-pre-prod"
    # two repositories with a pipeline of the same name: two names
    other = dataclasses.replace(named, project="other-repo")
    assert resource_name(other, env) == "cd4ml-other-repo-fraud-v2-pre-prod"
    # cut to 63 characters, long names still differ (a hash of the whole ends them)
    a = dataclasses.replace(named, project="p" * 30, name="a" * 40 + "x")
    b = dataclasses.replace(named, project="p" * 30, name="a" * 40 + "y")
    assert len(resource_name(a, env)) <= 63 and resource_name(a, env) != resource_name(b, env)


def test_render_command_prints_or_writes(tmp_path, capsys, monkeypatch):
    from cd4ml.cli import main
    from cd4ml.store import Store

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store(url) as store:
        run = store.start_run("wine")
        mv = store.register_model("wine", run.id, "classification", "/x", "ab" * 32, {}, {})
        store.record_gate(run.id, mv.id, True, [], None)
        store.record_image(mv.id, "sha256:1", "cd4ml/wine:1", 1, "passed")
    spec = str(ROOT / "pipelines" / "wine.yaml")
    assert main(["render", "--env", "staging", "-p", spec, "--store", url]) == 0
    out = capsys.readouterr().out
    # the local engine runs the recorded image by ID, never by its movable tag
    assert "# ---- containers.yml" in out and 'image: "sha256:1"' in out
    assert main(["render", "--env", "production", "1", "-p", spec, "--store", url,
                 "-o", str(tmp_path / "gitops")]) == 0
    assert (tmp_path / "gitops" / "containers.yml").is_file()
    assert str(tmp_path / "gitops" / "containers.yml") in capsys.readouterr().out
    assert main(["render", "--env", "staging", "-p", spec, "--store", url, "--json"]) == 0
    rendered = json.loads(capsys.readouterr().out)
    assert rendered["image"] == "cd4ml/wine:1" and rendered["model_version"] == 1
    assert rendered["written"] is None and 'image: "sha256:1"' in rendered["files"]["containers.yml"]
    assert main(["render", "--env", "nowhere", "-p", spec, "--store", url]) == 2
    assert "no environment 'nowhere'" in capsys.readouterr().err
