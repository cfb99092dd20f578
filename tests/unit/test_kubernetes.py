"""The kubernetes target offline: every rendered manifest against the official schemas
(kubernetes-validate), the kubectl command lines cd4ml/integrations/kubernetes.py builds, and the target's
apply / rollout / undo sequence run through cd4ml.integrations.proc against a kubectl stand-in (no cluster
runs here: the stand-in records its command lines and answers as a cluster would)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cd4ml.errors import DeployError
from cd4ml.integrations import kubernetes as kube
from cd4ml.release.render import render
from cd4ml.release.targets import NotHealthy
from cd4ml.release.targets.kubernetes import KubernetesTarget
from tests.helpers import model_record, stand_in_kubectl

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ("1.29.0", "1.33.0", kubernetes_validate.latest_version())


def k8s_env(spec, **kw):
    base = {"target": "kubernetes", "namespace": "ml", "context": "prod-cluster", "port": 80}
    return dataclasses.replace(spec.environment("production"), **{**base, **kw})


ENVS = {
    "plain": {},
    "resources": {"cpu": "0.5", "memory": "512Mi", "replicas": 3},
    "autoscale": {"cpu": "250m", "autoscale": {"min_replicas": 2, "max_replicas": 10, "cpu_percent": 60}},
    "slow": {"health_timeout": 300.0, "memory": "2G"},
}


@pytest.mark.parametrize("case", sorted(ENVS))
@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_official_schema(spec, case, version):
    env = k8s_env(spec, **ENVS[case])
    files = render(spec, env, model_record(), "registry.example/cd4ml/wine:3",
                   digest="sha256:" + "cd" * 32).files
    kinds = []
    for text in files.values():
        for doc in yaml.safe_load_all(text):
            kubernetes_validate.validate(doc, version, strict=True)
            kinds.append(doc["kind"])
    expected = {"Deployment", "Service"} | ({"HorizontalPodAutoscaler"} if case == "autoscale" else set())
    assert set(kinds) == expected


def test_deployment_is_safe_by_default(spec):
    env = k8s_env(spec, cpu="0.5", memory="512Mi", replicas=2)
    files = render(spec, env, model_record(), "cd4ml/wine:3").files
    dep = yaml.safe_load(files["deployment.yaml"])
    svc = yaml.safe_load(files["service.yaml"])
    assert dep["metadata"]["namespace"] == "ml" and dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["resources"]["limits"] == {"cpu": "500m", "memory": "512Mi"}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    # the Service selects exactly the Deployment's pods
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["port"] == 80


def test_kubectl_command_lines(monkeypatch):
    monkeypatch.delenv("KUBECTL", raising=False)
    assert kube.apply_argv(["a/deployment.yaml", "a/service.yaml"], "prod", "ml") == [
        "kubectl", "--context", "prod", "--namespace", "ml", "apply",
        "-f", "a/deployment.yaml", "-f", "a/service.yaml"]
    assert kube.apply_argv(["x.yaml"], None, None, dry_run="client") == [
        "kubectl", "apply", "-f", "x.yaml", "--dry-run=client"]
    assert kube.rollout_status_argv("cd4ml-wine-production", 59.2, "prod", "ml") == [
        "kubectl", "--context", "prod", "--namespace", "ml", "rollout", "status",
        "deployment/cd4ml-wine-production", "--timeout=59s"]
    assert kube.rollout_undo_argv("d", "prod", "ml", revision=4)[-3:] == [
        "undo", "deployment/d", "--to-revision=4"]
    assert kube.get_argv("deployment", "d", "prod", "ml")[-3:] == ["deployment/d", "-o", "json"]
    assert kube.delete_argv("d", "c", "n")[-4:] == [
        "delete", "deployment,service,horizontalpodautoscaler", "d", "--ignore-not-found"]
    monkeypatch.setenv("KUBECTL", "/opt/bin/kubectl")
    assert kube.current_context_argv() == ["/opt/bin/kubectl", "config", "current-context"]


FAKE_KUBECTL = r'''
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as f:
    f.write(json.dumps(argv) + "\n")
state_path = os.environ["FAKE_KUBECTL_STATE"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {}
words = [a for a in argv if not a.startswith("-")]
if argv[:2] == ["config", "current-context"]:
    if os.environ.get("FAKE_KUBECTL_NO_CONTEXT"):
        sys.stderr.write("error: current-context is not set\n"); sys.exit(1)
    print("kind-local"); sys.exit(0)
if "apply" in words:
    for i, a in enumerate(argv):
        if a == "-f":
            import yaml
            doc = yaml.safe_load(open(argv[i + 1]))
            if doc["kind"] == "Deployment":
                image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
                state.setdefault("history", []).append(image)
                state["image"] = image
            print(f"{doc['kind'].lower()}/{doc['metadata']['name']} configured")
    json.dump(state, open(state_path, "w")); sys.exit(0)
if "rollout" in words and "status" in words:
    if state.get("image", "").endswith(os.environ.get("FAKE_KUBECTL_FAIL", "@never")):
        sys.stderr.write('error: deployment "x" exceeded its progress deadline\n'); sys.exit(1)
    print('deployment "x" successfully rolled out'); sys.exit(0)
if "rollout" in words and "undo" in words:
    state["history"].pop(); state["image"] = state["history"][-1]
    json.dump(state, open(state_path, "w")); print("rolled back"); sys.exit(0)
if "get" in words:
    if "image" not in state:
        sys.stderr.write('Error from server (NotFound): deployments.apps "x" not found\n'); sys.exit(1)
    ready = 0 if state["image"].endswith(os.environ.get("FAKE_KUBECTL_FAIL", "@never")) else 2
    print(json.dumps({"metadata": {"name": "x", "generation": 3},
                      "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": state["image"]}]}}},
                      "status": {"readyReplicas": ready, "updatedReplicas": 2, "observedGeneration": 3}}))
    sys.exit(0)
sys.stderr.write(f"fake kubectl: unexpected {argv}\n"); sys.exit(2)
'''


@pytest.fixture
def kubectl(tmp_path, monkeypatch):
    log, _ = stand_in_kubectl(tmp_path, monkeypatch, FAKE_KUBECTL)

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def _verbs(calls):
    """Each call's subcommand words, after the context and namespace every call starts with."""
    out = []
    for c in calls:
        assert c[:4] == ["--context", "prod-cluster", "--namespace", "ml"], c
        words = []
        for a in c[4:]:
            if a.startswith("-") or "/" in a:
                break
            words.append(a)
        out.append(" ".join(words))
    return out


def test_apply_waits_for_the_rollout(spec, kubectl):
    env = k8s_env(spec)
    target = KubernetesTarget(env)
    applied = target.apply(render(spec, env, model_record(3), "cd4ml/wine:3"), timeout=30)
    assert applied.url == f"http://cd4ml-{spec.project}-wine-production.ml.svc:80"
    calls = kubectl()
    assert _verbs(calls) == ["get", "apply", "rollout status"]
    assert [Path(a).name for a in calls[1] if a.endswith(".yaml")] == ["deployment.yaml", "service.yaml"]
    assert calls[2][-1] == "--timeout=30s"
    health = target.health(spec, env)
    assert health.ok and health.detail == "2/2 replicas ready"


def test_a_rollout_that_stalls_is_undone(spec, kubectl, monkeypatch):
    env = k8s_env(spec)
    target = KubernetesTarget(env)
    target.apply(render(spec, env, model_record(3), "cd4ml/wine:3"), timeout=30)
    monkeypatch.setenv("FAKE_KUBECTL_FAIL", "wine:4")
    with pytest.raises(NotHealthy, match="exceeded its progress deadline") as e:
        target.apply(render(spec, env, model_record(4), "cd4ml/wine:4"), timeout=30)
    assert e.value.restored is True
    assert _verbs(kubectl())[-4:] == ["apply", "rollout status", "rollout undo", "rollout status"]
    assert target.health(spec, env).data["image"] == "cd4ml/wine:3"


def test_a_first_rollout_that_stalls_has_nothing_to_restore(spec, kubectl, monkeypatch):
    env = k8s_env(spec)
    monkeypatch.setenv("FAKE_KUBECTL_FAIL", "wine:3")
    with pytest.raises(NotHealthy) as e:
        KubernetesTarget(env).apply(render(spec, env, model_record(3), "cd4ml/wine:3"), timeout=30)
    assert e.value.restored is False
    assert "rollout undo" not in _verbs(kubectl())


def test_no_cluster_configured_is_a_clear_error(spec, kubectl, monkeypatch):
    env = k8s_env(spec, context=None)
    assert KubernetesTarget(env).kubectl.context == "kind-local"  # kubectl's current context
    monkeypatch.setenv("FAKE_KUBECTL_NO_CONTEXT", "1")
    with pytest.raises(DeployError, match="no Kubernetes cluster configured.*current-context is not set"):
        KubernetesTarget(env).health(spec, env)
