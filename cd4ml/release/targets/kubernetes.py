"""The kubernetes target: ``kubectl apply`` of the rendered manifests, then the rollout watched.

Kubernetes does the rolling update itself (maxUnavailable 0: old pods serve until new ones are
ready on /ready). cd4ml waits for ``kubectl rollout status`` within the environment's
health_timeout; when the rollout does not finish, ``kubectl rollout undo`` puts the previous
ReplicaSet back and cd4ml waits for that too. Health is the Deployment's ready replicas as the
cluster reports them. Every command goes through cd4ml.integrations.kubernetes (context and namespace explicit).
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

from cd4ml.errors import DeployError
from cd4ml.integrations.kubernetes import Kubectl, delete_argv
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

    def split(self, stable: Rendered, candidate: Rendered, *, weight: int, shadow: bool = False,
              timeout: float) -> Applied:
        raise DeployError(f"{stable.name}: the kubernetes target cannot split traffic yet; use "
                          "strategy blue_green for this environment, or a local or swarm target")

    def unsplit(self, keep: Rendered, drop: Rendered, *, timeout: float) -> Applied:
        raise DeployError(f"{keep.name}: the kubernetes target cannot split traffic yet, so there "
                          "is no split to undo; use strategy blue_green for this environment")

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
        k.run(delete_argv(resource_name(spec, env), k.context, k.namespace), check=False)


def _service_url(name: str, env: EnvironmentSpec) -> str:
    return f"http://{name}.{env.namespace}.svc:{env.port}"
