"""Deploy targets: each applies an environment's rendered files through one seam.

    local       the local Docker engine (cd4ml.integrations.docker): blue/green containers behind
                cd4ml's traffic front (proxy.py)
    swarm       a Docker Swarm manager: ``docker stack deploy`` of the rendered stack
    kubernetes  a cluster: ``kubectl apply`` of the rendered manifests (cd4ml.integrations.kubernetes)

A target's :meth:`Target.apply` returns once the release serves, or raises :class:`NotHealthy`
after putting back what served before (``restored`` says whether there was something to put
back). Targets never touch the store: cd4ml.release.deploy records what they did.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cd4ml.errors import DeployError

if TYPE_CHECKING:
    import docker

    from cd4ml.release.render import Rendered
    from cd4ml.spec import EnvironmentSpec, Spec


@dataclass(frozen=True)
class Applied:
    """A release that serves: where, and what the target did."""

    url: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Health:
    """One live probe of an environment."""

    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


class NotHealthy(DeployError):
    """The new release did not serve in time; ``restored`` says whether the previous one is back."""

    def __init__(self, message: str, restored: bool, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.restored = restored
        self.details = details or {}


class Target(Protocol):
    name: str

    def proxy_image(self, spec: Spec, env: EnvironmentSpec, model_image: str) -> str | None:
        """The image the traffic front runs in (None: the target has no front)."""

    def apply(self, rendered: Rendered, *, timeout: float, previous: Rendered | None = None,
              preflight: bool = True) -> Applied:
        """Make ``rendered`` serve; on failure restore ``previous``'s state and raise NotHealthy."""

    def health(self, spec: Spec, env: EnvironmentSpec) -> Health:
        """Probe the environment live."""

    def url(self, spec: Spec, env: EnvironmentSpec) -> str:
        """Where clients reach the environment."""

    def teardown(self, spec: Spec, env: EnvironmentSpec) -> None:
        """Remove everything the target created for the environment."""


def prepare_log_dir(rendered: Rendered) -> None:
    """Make the host directory the model containers write their prediction logs to, writable by
    the image's unprivileged user and nobody else: a line there is evidence (``lineage
    --request-id`` trusts it), so no other local user may add or change one."""
    import os
    from pathlib import Path

    from cd4ml.release.dockerfile import UID

    directory = rendered.context.get("prediction_logs")
    if not directory:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(directory, UID, 0)
        os.chmod(directory, 0o750)
    else:
        # an unprivileged cd4ml cannot hand the folder to the image's user; like /tmp, then
        import logging

        logging.getLogger(__name__).warning(
            "%s: cd4ml is not root, so the prediction log folder is writable by every local "
            "user; lineage checks each line against the store", directory)
        os.chmod(directory, 0o1777)


class DockerTarget:
    """A target driven through the Docker engine, connected on first use (so that rendering
    and ``--help`` never need an engine)."""

    def __init__(self, client: docker.DockerClient | None = None):
        self._client = client

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            from cd4ml.integrations.docker import client

            self._client = client()
        return self._client

    # both publish the environment's front on its host:port
    def url(self, spec: Spec, env: EnvironmentSpec) -> str:
        return f"http://{probe_host(env.host)}:{env.port}"

    def health(self, spec: Spec, env: EnvironmentSpec) -> Health:
        return http_health(f"{self.url(spec, env)}/health")


def get_target(env: EnvironmentSpec) -> Target:
    """The target object for an environment's ``target:``."""
    if env.target == "local":
        from cd4ml.release.targets.local import LocalTarget

        return LocalTarget()
    if env.target == "swarm":
        from cd4ml.release.targets.swarm import SwarmTarget

        return SwarmTarget()
    if env.target == "kubernetes":
        from cd4ml.release.targets.kubernetes import KubernetesTarget

        return KubernetesTarget(env)
    raise DeployError(f"environments.{env.name}.target: unknown target {env.target!r}; "
                      "use local, swarm or kubernetes")


def probe_host(host: str) -> str:
    """Where to reach a port published on ``host`` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET ``url``; (status, body), status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return 0, b""


def http_health(url: str, timeout: float = 2.0) -> Health:
    """``GET url`` as a Health: ok on 200, with the JSON it answered when it is JSON."""
    status, body = http_get(url, timeout)
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if status == 200:
        return Health(True, "ok", data if isinstance(data, dict) else {})
    return Health(False, f"HTTP {status}" if status else f"no answer from {url}",
                  data if isinstance(data, dict) else {})


def wait_for(check: Any, timeout: float, interval: float = 0.1) -> Any:
    """Call ``check()`` until it returns something truthy or ``timeout`` passes (then None)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
