"""The kubernetes target: ``kubectl apply`` of the rendered manifests, then the rollout watched.

Kubernetes does the rolling update itself (maxUnavailable 0: old pods serve until new ones are
ready on /ready). cd4ml waits for ``kubectl rollout status`` within the environment's
health_timeout; when the rollout does not finish, ``kubectl rollout undo`` puts the previous
ReplicaSet back and cd4ml waits for that too. Health is the Deployment's ready replicas as the
cluster reports them. Every command goes through cd4ml.integrations.kubernetes (context and namespace explicit).

Canary releases split traffic by replica ratio: the candidate runs as a second Deployment,
``<name>-canary``, derived from its own rendered ``deployment.yaml`` (so a user's override of
the template carries over), and the one Service selects the pods of both while the split lasts
(the labels every pod of the environment has: pipeline, project, environment). At ``weight``
percent the candidate gets ``round(replicas * weight / 100)`` pods (at least 1) and the stable
Deployment the rest (at least 1), so the weight the clients see is the nearest the replica
count allows (10 % of 1 replica is 50 %); the effective weight is what is reported. Why not a
Gateway API HTTPRoute with exact weights: it needs the Gateway API CRDs and a gateway
controller in the cluster, and its schema is not among the official Kubernetes schemas the
manifests are validated against offline; replica ratios work on any cluster with the objects
cd4ml already renders. The same reason rules out ``shadow`` here: a Service cannot mirror
requests (the spec refuses it for this target). Going back to stable is one Service change
(its selector back to the stable pods only), then the canary Deployment is deleted; a
promotion rolls the stable Deployment to the candidate's image (maxUnavailable 0, the canary
still serving meanwhile), then deletes the canary. The analysis reads the pods' prediction
logs with ``kubectl logs`` (their standard output); their ``/metrics`` are inside the cluster,
so the service checks are inconclusive there and the model checks decide.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cd4ml.integrations.kubernetes import Kubectl, delete_argv, delete_deployment_argv
from cd4ml.release.render import resource_name
from cd4ml.release.targets import Applied, Health, NotHealthy

if TYPE_CHECKING:
    from cd4ml.release.render import Rendered
    from cd4ml.spec import EnvironmentSpec, Spec


class KubernetesTarget:
    name = "kubernetes"

    def __init__(self, env: EnvironmentSpec, kubectl: Kubectl | None = None):
        self.env = env
        self._kubectl = kubectl

    @property
    def kubectl(self) -> Kubectl:
        if self._kubectl is None:
            self._kubectl = Kubectl(self.env.context, self.env.namespace)
        return self._kubectl

    def proxy_image(self, spec: Spec, env: EnvironmentSpec, model_image: str) -> None:
        return None  # a Service fronts the pods: no traffic front of cd4ml's

    def apply(self, rendered: Rendered, *, timeout: float, previous: Rendered | None = None,
              preflight: bool = True) -> Applied:
        k = self.kubectl
        before = k.deployment(rendered.name)
        with tempfile.TemporaryDirectory(prefix="cd4ml-k8s-") as tmp:
            paths = [p for p in rendered.write(tmp) if p.suffix in (".yaml", ".yml")]
            k.apply(paths)
        done, said = k.rollout_status(rendered.name, timeout)
        details = {"deployment": rendered.name, "namespace": self.env.namespace,
                   "context": k.context, "rollout": said[-500:]}
        if done:
            return Applied(url=_service_url(rendered.name, self.env), details=details)
        restored = False
        if before is not None:
            k.rollout_undo(rendered.name)
            restored, _ = k.rollout_status(rendered.name, max(60.0, timeout))
        raise NotHealthy(f"deployment/{rendered.name} did not roll out within {timeout:g} s: "
                         f"{said.splitlines()[-1] if said else 'no answer'}", restored=restored,
                         details=details)

    def url(self, spec: Spec, env: EnvironmentSpec) -> str:
        """The Service's address inside the cluster."""
        return _service_url(resource_name(spec, env), env)

    def health(self, spec: Spec, env: EnvironmentSpec) -> Health:
        name = resource_name(spec, env)
        state = self.kubectl.deployment(name)
        if state is None:
            return Health(False, f"deployment/{name} does not exist in {env.namespace}")
        detail = f"{state.ready}/{state.replicas} replicas ready"
        return Health(state.healthy, detail, {"image": state.image, "ready": state.ready,
                                              "replicas": state.replicas})

    def served(self, spec: Spec, env: EnvironmentSpec, replicas: int) -> None:
        return None  # the Service's address is inside the cluster: not asked from here

    def ensure_image(self, image: str, image_id: str | None, digest: str | None) -> None:
        """The cluster pulls the image itself (by digest where one was recorded)."""

    def remove_orphans(self, spec: Spec, env: EnvironmentSpec, *, keep: set[str],
                       anything_current: bool) -> list[str]:
        return []  # the Deployment converges on the applied state by itself

    def teardown(self, spec: Spec, env: EnvironmentSpec) -> None:
        k = self.kubectl
        name = resource_name(spec, env)
        k.run(delete_argv(name, k.context, k.namespace), check=False)
        k.run(delete_deployment_argv(canary_name(name), k.context, k.namespace), check=False)

    # ------------------------------------------------------------------ progressive releases

    def split(self, stable: Rendered, candidate: Rendered, *, weight: int, shadow: bool = False,
              timeout: float) -> Applied:
        """The candidate as ``<name>-canary`` beside the stable Deployment, both behind the
        Service, with pods in the ratio nearest ``weight``."""
        if shadow:
            raise NotHealthy("the kubernetes target cannot mirror requests (a Service has no "
                             "mirror); use strategy: canary", restored=True)
        k = self.kubectl
        ours, theirs = replica_split(self.env.replicas, weight)
        docs = split_manifests(stable, candidate, ours, theirs,
                               scale_stable=not self.env.autoscale)
        self._apply_docs(docs)
        done, said = k.rollout_status(canary_name(candidate.name), timeout)
        if not done:
            self._back_to(stable)
            raise NotHealthy(f"deployment/{canary_name(candidate.name)} did not roll out within "
                             f"{timeout:g} s: {said.splitlines()[-1] if said else 'no answer'}",
                             restored=True)
        return Applied(url=_service_url(candidate.name, self.env), details={
            "weight": round(100 * ours / (ours + theirs)), "canary_replicas": ours,
            "stable_replicas": theirs, "deployment": canary_name(candidate.name),
            "upstreams": {}})  # in-cluster addresses: not scraped from here

    def unsplit(self, keep: Rendered, drop: Rendered, *, timeout: float) -> Applied:
        """All traffic to ``keep``: the stable pods at once (the Service's selector), or the
        candidate by rolling the stable Deployment to its image; the canary is deleted."""
        k = self.kubectl
        canary = k.deployment(canary_name(keep.name))
        promoting = canary is not None and canary.image == _image(keep)
        started = time.perf_counter()
        if not promoting:
            self._back_to(keep)
            return Applied(url=_service_url(keep.name, self.env),
                           details={"switch_seconds": round(time.perf_counter() - started, 3)})
        with tempfile.TemporaryDirectory(prefix="cd4ml-k8s-") as tmp:
            k.apply([p for p in keep.write(tmp) if p.suffix in (".yaml", ".yml")])
        done, said = k.rollout_status(keep.name, timeout)
        if not done:
            k.rollout_undo(keep.name)
            k.rollout_status(keep.name, max(60.0, timeout))
            self._back_to(drop)
            raise NotHealthy(f"deployment/{keep.name} did not roll out to the candidate within "
                             f"{timeout:g} s: {said.splitlines()[-1] if said else 'no answer'}",
                             restored=True)
        k.delete_deployment(canary_name(keep.name))
        return Applied(url=_service_url(keep.name, self.env), details={
            "switch_seconds": round(time.perf_counter() - started, 3), "rollout": said[-500:]})

    def prediction_logs(self, spec: Spec, env: EnvironmentSpec) -> list[str]:
        """Every pod's prediction log of the environment, fetched with ``kubectl logs`` into a
        file the analysis reads (the cluster keeps no log file cd4ml could read)."""
        name = resource_name(spec, env)
        text = self.kubectl.logs(shared_selector(spec.name, spec.project, env.name))
        path = Path(tempfile.gettempdir()) / f"{name}-predictions.jsonl"
        path.write_text(text, encoding="utf-8")
        return [str(path)]

    def _back_to(self, stable: Rendered) -> None:
        """The Service on the stable pods only (one change: clients move at once), the stable
        Deployment at its full size, and the canary deleted."""
        k = self.kubectl
        with tempfile.TemporaryDirectory(prefix="cd4ml-k8s-") as tmp:
            k.apply([p for p in stable.write(tmp)
                     if p.name in ("service.yaml", "deployment.yaml")][::-1])  # service first
        k.delete_deployment(canary_name(stable.name))

    def _apply_docs(self, docs: list[dict[str, Any]]) -> None:
        with tempfile.TemporaryDirectory(prefix="cd4ml-k8s-") as tmp:
            paths = []
            for i, doc in enumerate(docs):
                p = Path(tmp) / f"{i}-{doc['kind'].lower()}.yaml"
                p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
                paths.append(p)
            self.kubectl.apply(paths)


def canary_name(name: str) -> str:
    """The candidate's Deployment during a split (63 characters at most, like every name)."""
    return f"{name[:56].rstrip('-')}-canary"


def shared_selector(pipeline: str, project: str, environment: str) -> dict[str, str]:
    """Labels every pod of an environment has, stable or canary: the Service's selector while
    traffic is split."""
    return {"app.kubernetes.io/name": pipeline, "cd4ml/project": project,
            "cd4ml/environment": environment}


def replica_split(replicas: int, weight: int) -> tuple[int, int]:
    """(candidate pods, stable pods) for ``weight`` percent of ``replicas``, at least one each."""
    ours = min(max(1, round(replicas * weight / 100)), max(1, replicas - 1))
    return ours, max(1, replicas - ours)


def split_manifests(stable: Rendered, candidate: Rendered, ours: int, theirs: int, *,
                    scale_stable: bool = True) -> list[dict[str, Any]]:
    """The candidate's Deployment renamed ``<name>-canary`` with its own instance label,
    ``track: canary`` and ``ours`` replicas; the stable Deployment at ``theirs`` replicas (left
    to its autoscaler when it has one); the Service selecting both."""
    dep = yaml.safe_load(candidate.files["deployment.yaml"])
    name = canary_name(candidate.name)
    dep["metadata"]["name"] = name
    for labels in (dep["metadata"]["labels"], dep["spec"]["template"]["metadata"]["labels"]):
        labels["app.kubernetes.io/instance"] = name
        labels["cd4ml/track"] = "canary"
    dep["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/instance": name}
    dep["spec"]["replicas"] = ours
    svc = yaml.safe_load(stable.files["service.yaml"])
    ctx = candidate.context
    svc["spec"]["selector"] = shared_selector(ctx["pipeline"], ctx["project"], ctx["environment"])
    docs = [dep]
    if scale_stable:
        old = yaml.safe_load(stable.files["deployment.yaml"])
        old["spec"]["replicas"] = theirs
        docs.append(old)
    return [*docs, svc]


def _image(rendered: Rendered) -> str | None:
    return yaml.safe_load(rendered.files["deployment.yaml"])["spec"]["template"]["spec"][
        "containers"][0]["image"]


def _service_url(name: str, env: EnvironmentSpec) -> str:
    return f"http://{name}.{env.namespace}.svc:{env.port}"
