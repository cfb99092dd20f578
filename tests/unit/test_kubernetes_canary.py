"""Canary releases on the kubernetes target, offline: the manifests of a split (the candidate's
``<name>-canary`` Deployment, the stable one scaled, the Service over both) against the official
schemas (kubernetes-validate), the replica ratios, and the kubectl sequence of split, back to
stable and promotion run against a kubectl stand-in that keeps the objects it was given."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cd4ml.integrations import kubernetes as kube
from cd4ml.release.render import render
from cd4ml.release.targets import NotHealthy
from cd4ml.release.targets.kubernetes import (
    KubernetesTarget,
    canary_name,
    replica_split,
    split_manifests,
)
from tests.helpers import model_record, stand_in_kubectl
from tests.unit.test_kubernetes import ENVS, VERSIONS, k8s_env

IMAGE = "registry.example/cd4ml/wine"


def _pair(spec, env):
    stable = render(spec, env, model_record(3), f"{IMAGE}:3", digest="sha256:" + "a" * 64)
    candidate = render(spec, env, model_record(4), f"{IMAGE}:4", digest="sha256:" + "b" * 64)
    return stable, candidate


@pytest.mark.parametrize("case", sorted(ENVS))
@pytest.mark.parametrize("version", VERSIONS)
def test_split_manifests_are_valid_against_the_official_schema(spec, case, version):
    env = k8s_env(spec, **ENVS[case])
    stable, candidate = _pair(spec, env)
    ours, theirs = replica_split(env.replicas, 20)
    docs = split_manifests(stable, candidate, ours, theirs, scale_stable=not env.autoscale)
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    canary, *rest = docs
    svc = rest[-1]
    assert canary["metadata"]["name"] == canary_name(stable.name)
    pod_labels = canary["spec"]["template"]["metadata"]["labels"]
    # the Service selects the canary's pods and the stable ones, and the two Deployments'
    # selectors never overlap
    stable_dep = yaml.safe_load(stable.files["deployment.yaml"])
    stable_pods = stable_dep["spec"]["template"]["metadata"]["labels"]
    for labels in (pod_labels, stable_pods):
        assert svc["spec"]["selector"].items() <= labels.items()
    assert not stable_dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert canary["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_labels["cd4ml/track"] == "canary"
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"].endswith("b" * 64)
    # with an autoscaler the stable Deployment's size is its autoscaler's to set
    assert len(docs) == (2 if env.autoscale else 3)


@pytest.mark.parametrize("replicas,weight,expected", [
    (10, 10, (1, 9)), (10, 50, (5, 5)), (4, 25, (1, 3)), (3, 50, (2, 1)),
    (1, 10, (1, 1)),  # one replica: the nearest split is half and half
    (2, 90, (1, 1)), (5, 1, (1, 4)),
])
def test_replica_split(replicas, weight, expected):
    assert replica_split(replicas, weight) == expected


def test_new_kubectl_command_lines(monkeypatch):
    monkeypatch.delenv("KUBECTL", raising=False)
    assert kube.delete_deployment_argv("d-canary", "prod", "ml") == [
        "kubectl", "--context", "prod", "--namespace", "ml", "delete", "deployment", "d-canary",
        "--ignore-not-found"]
    assert kube.logs_argv({"app.kubernetes.io/name": "wine", "cd4ml/environment": "prod"},
                          "prod", "ml")[5:] == [
        "logs", "-l", "app.kubernetes.io/name=wine,cd4ml/environment=prod", "--tail=-1",
        "--max-log-requests=50", "--ignore-errors"]


# A kubectl that keeps the Deployments and Services it is given, by name.
FAKE = r'''
import json, os, sys, yaml
argv = sys.argv[1:]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as f:
    f.write(json.dumps(argv) + "\n")
path = os.environ["FAKE_KUBECTL_STATE"]
state = json.load(open(path)) if os.path.exists(path) else {"deployments": {}, "services": {}}
deps, svcs = state["deployments"], state["services"]
words = [a for a in argv[4:] if not a.startswith("-")]
fail = os.environ.get("FAKE_KUBECTL_FAIL", "@never")
def save():
    json.dump(state, open(path, "w"))
if words[0] == "apply":
    for i, a in enumerate(argv):
        if a == "-f":
            doc = yaml.safe_load(open(argv[i + 1]))
            name = doc["metadata"]["name"]
            if doc["kind"] == "Deployment":
                image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
                d = deps.setdefault(name, {"history": []})
                d.update(image=image, replicas=doc["spec"].get("replicas", 1))
                d["history"].append(image)
            elif doc["kind"] == "Service":
                svcs[name] = doc["spec"]["selector"]
    save(); sys.exit(0)
if words[:2] == ["rollout", "status"]:
    name = words[2].split("/")[1]
    if deps[name]["image"].endswith(fail):
        sys.stderr.write(f'error: deployment "{name}" exceeded its progress deadline\n'); sys.exit(1)
    print(f'deployment "{name}" successfully rolled out'); sys.exit(0)
if words[:2] == ["rollout", "undo"]:
    d = deps[words[2].split("/")[1]]
    d["history"].pop(); d["image"] = d["history"][-1]; save(); sys.exit(0)
if words[0] == "get":
    name = words[1].split("/")[1]
    if name not in deps:
        sys.stderr.write(f'Error from server (NotFound): deployments.apps "{name}" not found\n'); sys.exit(1)
    d = deps[name]
    ready = 0 if d["image"].endswith(fail) else d["replicas"]
    print(json.dumps({"metadata": {"name": name, "generation": 1},
                      "spec": {"replicas": d["replicas"], "template": {"spec": {"containers": [{"image": d["image"]}]}}},
                      "status": {"readyReplicas": ready, "observedGeneration": 1}}))
    sys.exit(0)
if words[:2] == ["delete", "deployment"]:
    deps.pop(words[2], None); save(); sys.exit(0)
if words[0] == "logs":
    print("not a prediction")
    print(json.dumps({"time": "2026-01-01T00:00:00.000000Z", "request_id": "r1", "pipeline": "wine",
                      "model_version": 4, "inputs": [{"a": 1}], "predictions": [1]}))
    sys.exit(0)
sys.stderr.write(f"fake kubectl: unexpected {argv}\n"); sys.exit(2)
'''


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    log, state = stand_in_kubectl(tmp_path, monkeypatch, FAKE)

    class Cluster:
        def calls(self):
            return [json.loads(x)[4:] for x in log.read_text().splitlines()] if log.exists() else []

        def state(self):
            return json.loads(state.read_text())

        def verbs(self):
            return [" ".join(w for w in c if not w.startswith("-") and not w.endswith(".yaml"))
                    for c in self.calls()]

    return Cluster()


def _started(spec, cluster, replicas=5):
    env = k8s_env(spec, replicas=replicas)
    target = KubernetesTarget(env)
    stable, candidate = _pair(spec, env)
    target.apply(stable, timeout=30)
    return env, target, stable, candidate


def test_a_split_then_back_to_stable(spec, cluster):
    _, target, stable, candidate = _started(spec, cluster)
    name = stable.name
    applied = target.split(stable, candidate, weight=20, timeout=30)
    assert applied.details["weight"] == 20 and applied.details["canary_replicas"] == 1
    s = cluster.state()
    assert {n: d["replicas"] for n, d in s["deployments"].items()} == {name: 4, f"{name}-canary": 1}
    assert s["deployments"][f"{name}-canary"]["image"].endswith("b" * 64)
    assert s["services"][name] == {"app.kubernetes.io/name": "wine", "cd4ml/project": spec.project,
                                   "cd4ml/environment": "production"}
    back = target.unsplit(stable, candidate, timeout=30)
    assert "switch_seconds" in back.details
    s = cluster.state()
    assert s["services"][name] == {"app.kubernetes.io/instance": name}
    assert {n: d["replicas"] for n, d in s["deployments"].items()} == {name: 5}
    assert cluster.verbs()[-5:] == [
        "apply", f"rollout status deployment/{name}-canary",  # the split
        f"get deployment/{name}-canary json", "apply", f"delete deployment {name}-canary"]
    # the Service is changed first: clients move to stable at once, before anything else
    last_apply = [c for c in cluster.calls() if c[0] == "apply"][-1]
    files = [a.rsplit("/", 1)[-1] for a in last_apply if a.endswith(".yaml")]
    assert files == ["service.yaml", "deployment.yaml"]


def test_a_promotion_rolls_the_stable_deployment_to_the_candidate(spec, cluster):
    _, target, stable, candidate = _started(spec, cluster)
    name = stable.name
    target.split(stable, candidate, weight=50, timeout=30)
    target.unsplit(candidate, stable, timeout=30)
    s = cluster.state()
    assert list(s["deployments"]) == [name]
    assert s["deployments"][name]["image"].endswith("b" * 64)
    assert s["deployments"][name]["replicas"] == 5
    assert s["services"][name] == {"app.kubernetes.io/instance": name}
    assert cluster.verbs()[-3:] == ["apply", f"rollout status deployment/{name}",
                                    f"delete deployment {name}-canary"]


def test_a_canary_that_does_not_roll_out_leaves_stable_serving(spec, cluster, monkeypatch):
    _, target, stable, candidate = _started(spec, cluster)
    monkeypatch.setenv("FAKE_KUBECTL_FAIL", "b" * 64)
    with pytest.raises(NotHealthy, match="exceeded its progress deadline") as e:
        target.split(stable, candidate, weight=20, timeout=30)
    assert e.value.restored
    s = cluster.state()
    assert list(s["deployments"]) == [stable.name] and s["deployments"][stable.name]["replicas"] == 5
    assert s["services"][stable.name] == {"app.kubernetes.io/instance": stable.name}


def test_prediction_logs_come_from_kubectl_logs(spec, cluster):
    env = k8s_env(spec)
    (path,) = KubernetesTarget(env).prediction_logs(spec, env)
    assert '"model_version": 4' in Path(path).read_text()
    (call,) = cluster.calls()
    selector = f"app.kubernetes.io/name=wine,cd4ml/project={spec.project},cd4ml/environment=production"
    assert call[:3] == ["logs", "-l", selector]


def test_a_shadow_is_refused(spec, cluster):
    _, target, stable, candidate = _started(spec, cluster)
    with pytest.raises(NotHealthy, match="cannot mirror"):
        target.split(stable, candidate, weight=0, shadow=True, timeout=30)
