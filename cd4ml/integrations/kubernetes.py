"""The one seam to Kubernetes: kubectl command lines, built here and run through cd4ml.integrations.proc.

Each ``*_argv`` function is pure (tests check the exact command lines); :class:`Kubectl` runs
them. The binary is ``$KUBECTL`` or ``kubectl`` on PATH; every command names its context and
namespace explicitly, so a kubeconfig whose current context changed meanwhile cannot send a
release to the wrong cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cd4ml.errors import CommandError, DeployError
from cd4ml.integrations import proc


def kubectl_binary() -> str:
    return os.environ.get("KUBECTL") or "kubectl"


def base_argv(context: str | None, namespace: str | None) -> list[str]:
    argv = [kubectl_binary()]
    if context:
        argv += ["--context", context]
    if namespace:
        argv += ["--namespace", namespace]
    return argv


def apply_argv(paths: Sequence[str | Path], context: str | None, namespace: str | None,
               dry_run: str | None = None) -> list[str]:
    """``kubectl apply -f F...``; ``dry_run`` is ``client`` or ``server`` to change nothing."""
    argv = base_argv(context, namespace) + ["apply"]
    for p in paths:
        argv += ["-f", str(p)]
    if dry_run:
        argv.append(f"--dry-run={dry_run}")
    return argv


def rollout_status_argv(name: str, timeout: float, context: str | None,
                        namespace: str | None) -> list[str]:
    return base_argv(context, namespace) + [
        "rollout", "status", f"deployment/{name}", f"--timeout={max(1, round(timeout))}s"]


def rollout_undo_argv(name: str, context: str | None, namespace: str | None,
                      revision: int | None = None) -> list[str]:
    argv = base_argv(context, namespace) + ["rollout", "undo", f"deployment/{name}"]
    if revision is not None:
        argv.append(f"--to-revision={revision}")
    return argv


def get_argv(kind: str, name: str, context: str | None, namespace: str | None) -> list[str]:
    return base_argv(context, namespace) + ["get", f"{kind}/{name}", "-o", "json"]


def delete_argv(name: str, context: str | None, namespace: str | None) -> list[str]:
    """Remove what the kubernetes target created for an environment."""
    return base_argv(context, namespace) + [
        "delete", "deployment,service,horizontalpodautoscaler", name, "--ignore-not-found"]


def delete_deployment_argv(name: str, context: str | None, namespace: str | None) -> list[str]:
    """Remove one Deployment (a canary's), whether or not it is still there."""
    return base_argv(context, namespace) + ["delete", "deployment", name, "--ignore-not-found"]


def logs_argv(selector: dict[str, str], context: str | None, namespace: str | None) -> list[str]:
    """The whole standard output (the prediction log) of every pod ``selector`` matches."""
    labels = ",".join(f"{k}={v}" for k, v in selector.items())
    return base_argv(context, namespace) + ["logs", "-l", labels, "--tail=-1",
                                            "--max-log-requests=50", "--ignore-errors"]


def current_context_argv() -> list[str]:
    return [kubectl_binary(), "config", "current-context"]


@dataclass(frozen=True)
class DeploymentState:
    """What the cluster says about a Deployment."""

    name: str
    replicas: int
    ready: int
    updated: int
    image: str | None
    generation: int
    observed: int

    @property
    def healthy(self) -> bool:
        return self.replicas > 0 and self.ready >= self.replicas and self.observed >= self.generation


class Kubectl:
    """Runs kubectl against one context and namespace."""

    def __init__(self, context: str | None, namespace: str | None, timeout: float = 120):
        self.context = context or self._current_context()
        self.namespace = namespace
        self.timeout = timeout

    @staticmethod
    def _current_context() -> str:
        try:
            out = proc.call(current_context_argv(), timeout=30).stdout.strip()
        except CommandError as e:
            raise DeployError(
                "no Kubernetes cluster configured: kubectl has no current context "
                f"({e.stderr.strip().splitlines()[-1] if e.stderr.strip() else e}); set "
                "environments.<env>.context in the spec, or use 'cd4ml render' to get the "
                "manifests for GitOps") from None
        if not out:
            raise DeployError("no Kubernetes cluster configured; set environments.<env>.context")
        return out

    def run(self, argv: list[str], timeout: float | None = None, check: bool = True):
        return proc.call(argv, timeout=timeout or self.timeout, check=check)

    def apply(self, paths: Sequence[str | Path]) -> str:
        return self.run(apply_argv(paths, self.context, self.namespace)).stdout

    def rollout_status(self, name: str, timeout: float) -> tuple[bool, str]:
        """Wait for the Deployment's rollout; (done, what kubectl said)."""
        out = self.run(rollout_status_argv(name, timeout, self.context, self.namespace),
                       timeout=timeout + 30, check=False)
        return out.returncode == 0, (out.stdout + out.stderr).strip()

    def delete_deployment(self, name: str) -> None:
        self.run(delete_deployment_argv(name, self.context, self.namespace))

    def logs(self, selector: dict[str, str]) -> str:
        return self.run(logs_argv(selector, self.context, self.namespace), check=False).stdout

    def rollout_undo(self, name: str) -> str:
        return self.run(rollout_undo_argv(name, self.context, self.namespace)).stdout

    def deployment(self, name: str) -> DeploymentState | None:
        out = self.run(get_argv("deployment", name, self.context, self.namespace), check=False)
        if out.returncode != 0:
            if "NotFound" in out.stderr or "not found" in out.stderr:
                return None
            raise CommandError(get_argv("deployment", name, self.context, self.namespace),
                               out.returncode, out.stderr)
        return parse_deployment(json.loads(out.stdout))


def parse_deployment(doc: dict[str, Any]) -> DeploymentState:
    spec = doc.get("spec") or {}
    status = doc.get("status") or {}
    containers = (((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}])
    return DeploymentState(
        name=(doc.get("metadata") or {}).get("name", ""),
        replicas=int(spec.get("replicas", 1)),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        image=containers[0].get("image"),
        generation=int((doc.get("metadata") or {}).get("generation") or 0),
        observed=int(status.get("observedGeneration") or 0),
    )
