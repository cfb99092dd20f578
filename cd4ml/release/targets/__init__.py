"""Deploy targets: each applies an environment's rendered files through one seam.

    local       the local Docker engine (cd4ml.integrations.docker): blue/green containers behind
                cd4ml's traffic front (nginx; front.py)
    swarm       a Docker Swarm manager: ``docker stack deploy`` of the rendered stack, the same
                front in front of the model service
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

    def split(self, stable: Rendered, candidate: Rendered, *, weight: int, shadow: bool = False,
              timeout: float) -> Applied:
        """Start candidate's servers alongside stable's (if not running; another colour), wait
        for its /ready, then point the front: ``weight`` % (0..100) of live requests to
        candidate, the rest to stable; with ``shadow`` (weight 0) every live request is answered
        by stable and a mirrored copy (same body, same X-Request-ID) goes to candidate, whose
        answer is discarded. Returns once the front applies it. ``details["upstreams"]`` is
        ``{"stable": url, "candidate": url}``, reachable from the deploying host if possible."""

    def unsplit(self, keep: Rendered, drop: Rendered, *, timeout: float) -> Applied:
        """All traffic to ``keep`` at once (the abort/rollback path; ``details["switch_seconds"]``
        is the time from the call until all traffic is on keep), then drain and remove
        ``drop``'s servers."""

    def health(self, spec: Spec, env: EnvironmentSpec) -> Health:
        """Probe the environment live."""

    def served(self, spec: Spec, env: EnvironmentSpec, replicas: int) -> list[dict[str, Any]] | None:
        """The models the environment's servers say they serve (``/metadata``); None when this
        machine cannot ask them (a cluster's in-cluster address)."""

    def ensure_image(self, image: str, image_id: str | None, digest: str | None) -> None:
        """Make sure the exact image is where the target runs it, or raise before anything
        changes (a local engine: present by ID, else pulled by digest from its registry)."""

    def url(self, spec: Spec, env: EnvironmentSpec) -> str:
        """Where clients reach the environment."""

    def teardown(self, spec: Spec, env: EnvironmentSpec) -> None:
        """Remove everything the target created for the environment."""

    def remove_orphans(self, spec: Spec, env: EnvironmentSpec, *, keep: set[str],
                       anything_current: bool) -> list[str]:
        """Remove the environment's model containers that serve nothing (left by a killed
        deploy), never ``keep``; return their names. Targets whose orchestrator converges on
        the applied state by itself (Swarm, Kubernetes) have none."""


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

    def remove_orphans(self, spec: Spec, env: EnvironmentSpec, *, keep: set[str],
                       anything_current: bool) -> list[str]:
        return []

    # both publish the environment's front on its host:port
    def url(self, spec: Spec, env: EnvironmentSpec) -> str:
        return f"http://{probe_host(env.host)}:{env.port}"

    def health(self, spec: Spec, env: EnvironmentSpec) -> Health:
        return http_health(f"{self.url(spec, env)}/health")

    def served(self, spec: Spec, env: EnvironmentSpec, replicas: int) -> list[dict[str, Any]]:
        """What the environment's front answers on ``/metadata``, asked a few times per
        replica so that every server behind the front is likely asked once."""
        return served_metadata(self.url(spec, env), tries=max(2, 2 * replicas))

    def ensure_image(self, image: str, image_id: str | None, digest: str | None) -> None:
        """The exact image, by ID, on this engine; an absent one is pulled from the registry
        recorded for it, by digest, and must come back with the recorded ID. Never by tag, and
        never from a registry nobody recorded (Docker Hub's ``cd4ml/<pipeline>``)."""
        from docker.errors import ImageNotFound

        from cd4ml.integrations.docker import translating
        from cd4ml.release.registry import registry_of
        from cd4ml.release.render import pinned

        want = image_id or pinned(image, digest)
        try:
            self.client.images.get(want)
            return
        except ImageNotFound:
            pass
        by_digest = pinned(image, digest) if digest else None
        if by_digest is None or registry_of(by_digest) is None:
            raise DeployError(f"image {(image_id or image)[:19]} ({image}) is no longer on this "
                              "Docker engine and was never pushed (no registry digest recorded); "
                              "nothing was changed: rebuild the version with 'cd4ml build VERSION'")
        with translating(DeployError, f"pull {by_digest}",
                         f"check that {registry_of(by_digest)} is reachable; nothing was changed"):
            pulled = self.client.images.pull(by_digest)
        if image_id and pulled.id != image_id:
            raise DeployError(f"{by_digest} pulled as {pulled.id[:19]}, not the recorded "
                              f"{image_id[:19]}; nothing was changed: the registry does not hold "
                              "the image that was built")

    def check_port(self, host: str, port: int) -> None:
        """Refuse, before anything is stopped or started, a port another container or process
        holds: a deploy must not take an environment down only to find it cannot publish.
        Called when this environment's own front does not hold the port."""
        import socket

        for c in self.client.containers.list(filters={"publish": str(port)}):
            owner = c.labels.get("cd4ml.project")
            raise DeployError(f"{host}:{port} is in use by container {c.name}"
                              + (f" (project {owner})" if owner else "") + "; nothing was "
                              "changed: free the port or change environments.<env>.port")
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            # connections just closed (TIME_WAIT) do not hold the port; a listener does
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host if host not in ("", "::") else "0.0.0.0", port))
            except OSError:
                raise DeployError(f"{host}:{port} is in use by another process; nothing was "
                                  "changed: free the port or change environments.<env>.port") from None


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


def served_metadata(url: str, tries: int = 2) -> list[dict[str, Any]]:
    """Distinct ``/metadata`` answers (pipeline, version, sha256, run) from ``url``'s servers."""
    seen: dict[tuple, dict[str, Any]] = {}
    for _ in range(tries):
        status, body = http_get(f"{url}/metadata", timeout=3)
        try:
            data = json.loads(body) if status == 200 else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            continue
        key = (data.get("pipeline"), data.get("model_version"), data.get("sha256"), data.get("run_id"))
        seen.setdefault(key, {"pipeline": key[0], "model_version": key[1], "sha256": key[2],
                              "run_id": key[3]})
    return list(seen.values())


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
