"""The swarm target: ``docker stack deploy`` of the rendered stack on a Swarm manager.

The stack (infra/swarm/stack.yml.j2) has two services: ``model``, updated by Swarm itself one
task at a time, new task first, rolled back by Swarm when a new task fails; and ``front``,
cd4ml's traffic front on the environment's port, which routes only to tasks whose ``/ready``
answers and which no deploy changes. A deploy here:

1. pre-flight (deploy and promote, not rollback): starts the image once as a plain container
   on the manager and waits for ``/ready``. An image that never gets ready is refused before any
   task is touched; this is the guard on engines whose Swarm cannot health-check tasks.
2. ``docker stack deploy --resolve-image never`` (through cd4ml.integrations.proc: the compose file is applied
   exactly as ``cd4ml render`` shows it).
3. waits until every replica runs the new image and the front routes to those tasks only.
4. when that does not happen in time (or Swarm rolled the update back), deploys the previous
   stack again and waits for it to serve, then raises NotHealthy.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cd4ml.errors import CommandError, DeployError
from cd4ml.integrations import proc
from cd4ml.release.render import base_image, resource_name
from cd4ml.release.targets import (
    Applied,
    DockerTarget,
    NotHealthy,
    http_get,
    prepare_log_dir,
    probe_host,
)

if TYPE_CHECKING:

    from cd4ml.release.render import Rendered
    from cd4ml.spec import EnvironmentSpec, Spec

FAILED_UPDATE = ("rollback_started", "rollback_paused", "rollback_completed", "paused")


class SwarmTarget(DockerTarget):
    name = "swarm"

    def _manager(self) -> None:
        swarm = self.client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise DeployError("this Docker engine is not a Swarm manager (swarm: "
                              f"{swarm.get('LocalNodeState') or 'inactive'}); point DOCKER_HOST at a "
                              "manager, or run 'docker swarm init'")

    def _service(self, name: str) -> Any:
        from docker.errors import NotFound

        try:
            return self.client.services.get(name)
        except NotFound:
            return None

    def proxy_image(self, spec: Spec, env: EnvironmentSpec, model_image: str) -> str:
        """The front service's current image (so that a deploy leaves the front alone), else
        the base image when the manager has it, else the model image."""
        from docker.errors import ImageNotFound

        front = self._service(f"{resource_name(spec, env)}_front")
        if front is not None:
            return front.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        try:
            self.client.images.get(base_image(spec))
            return base_image(spec)
        except ImageNotFound:
            return model_image

    # ------------------------------------------------------------------ apply

    def apply(self, rendered: Rendered, *, timeout: float, previous: Rendered | None = None,
              preflight: bool = True) -> Applied:
        from cd4ml.integrations.docker import translating

        with translating(DeployError, f"deploy stack {rendered.name}", "check 'docker info'"):
            prepare_log_dir(rendered)
            self._manager()
            existed = self._service(f"{rendered.name}_model") is not None
            if self._service(f"{rendered.name}_front") is None:
                self.check_port(str(rendered.context["host"]), int(rendered.context["port"]))
            if preflight:
                try:
                    self._preflight(rendered, timeout)
                except NotHealthy as e:
                    raise NotHealthy(f"pre-flight: {e}", restored=existed, details=e.details) from None
            self._deploy(rendered)
            ok, why, details = self._converge(rendered, timeout)
            if ok:
                return Applied(url=self._url(rendered), details=details)
            restored = False
            if previous is not None:
                self._deploy(previous)
                restored, _, _ = self._converge(previous, max(60.0, timeout))
            raise NotHealthy(why, restored=restored, details=details)

    def _preflight(self, rendered: Rendered, timeout: float) -> None:
        from cd4ml.release.targets.local import _remove, wait_ready

        ctx = rendered.context
        name = f"{rendered.name}-preflight"
        from docker.errors import NotFound

        try:
            _remove(self.client.containers.get(name))
        except NotFound:
            pass
        ctr = self.client.containers.run(
            ctx["image_pinned"], name=name, detach=True,
            ports={f"{ctx['container_port']}/tcp": ("127.0.0.1", None)},
            mem_limit=ctx["resources"]["memory_bytes"],
            labels={"cd4ml.role": "preflight", **ctx["labels"]})
        try:
            wait_ready(ctr, ctx["image_pinned"], int(ctx["container_port"]), "/ready", timeout)
        finally:
            _remove(ctr)

    def _deploy(self, rendered: Rendered) -> None:
        with tempfile.TemporaryDirectory(prefix="cd4ml-stack-") as tmp:
            paths = rendered.write(tmp)
            stack = next(p for p in paths if p.name.endswith((".yml", ".yaml")))
            try:
                proc.call(["docker", "stack", "deploy", "--compose-file", str(stack),
                           "--resolve-image", "never", rendered.name], timeout=300)
            except CommandError as e:
                raise DeployError(f"docker stack deploy {rendered.name} failed: "
                                  f"{_tail(e.stderr)}; check the rendered stack with "
                                  f"'cd4ml render --env {rendered.environment}'") from None

    def _converge(self, rendered: Rendered, timeout: float) -> tuple[bool, str, dict]:
        """Wait until every replica runs the rendered image and the front routes only to them."""
        ctx = rendered.context
        want = ctx["image_pinned"]
        network = f"{rendered.name}_net"
        deadline = time.monotonic() + timeout
        why = "no task of the new image started"
        details: dict[str, Any] = {"stack": rendered.name, "service": f"{rendered.name}_model"}
        while time.monotonic() < deadline:
            svc = self._service(f"{rendered.name}_model")
            if svc is None:
                why = "the model service does not exist"
                time.sleep(0.2)
                continue
            update = svc.attrs.get("UpdateStatus") or {}
            if update.get("State") in FAILED_UPDATE:
                return False, (f"Swarm rolled the update back ({update.get('State')}): "
                               f"{update.get('Message', '')}"), details
            tasks = svc.tasks(filters={"desired-state": "running"})
            new = [t for t in tasks if (t.get("Status") or {}).get("State") == "running"
                   and t["Spec"]["ContainerSpec"]["Image"] == want]
            failed = [t for t in svc.tasks() if t["Spec"]["ContainerSpec"]["Image"] == want
                      and (t.get("Status") or {}).get("State") in ("failed", "rejected")]
            if failed:
                why = f"a task failed: {(failed[0].get('Status') or {}).get('Err') or 'exited'}"
            ips = {a.split("/")[0] for t in new for n in t.get("NetworksAttachments") or []
                   if n["Network"]["Spec"]["Name"] == network for a in n.get("Addresses") or []}
            if len(new) >= int(ctx["replicas"]) and ips:
                active = self._front_active(ctx)
                if active is not None and active and set(active) <= ips:
                    details.update(tasks=sorted(ips), image=want)
                    return True, "", details
                why = (f"the front routes to {sorted(active)} instead of the new tasks {sorted(ips)}"
                       if active is not None else "the front does not answer")
            else:
                why = f"{len(new)} of {ctx['replicas']} tasks run {want}" + (
                    f" ({why})" if failed else "")
            time.sleep(0.2)
        return False, f"not serving within {timeout:g} s: {why}", details

    def _front_active(self, ctx: Mapping[str, Any]) -> list[str] | None:
        import json

        status, body = http_get(f"http://{probe_host(ctx['host'])}:{ctx['port']}/.cd4ml/front",
                                timeout=2)
        if status != 200:
            return None
        try:
            return [a.rsplit(":", 1)[0] for a in json.loads(body).get("active", [])]
        except (ValueError, AttributeError):
            return None

    def _url(self, rendered: Rendered) -> str:
        return f"http://{probe_host(rendered.context['host'])}:{rendered.context['port']}"

    # ------------------------------------------------------------------ status

    def teardown(self, spec: Spec, env: EnvironmentSpec) -> None:
        name = resource_name(spec, env)
        proc.call(["docker", "stack", "rm", name], timeout=120, check=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = self.client.services.list(filters={"label": f"com.docker.stack.namespace={name}"})
            nets = self.client.networks.list(names=[f"{name}_net"])
            if not left and not nets:
                return
            time.sleep(0.5)


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:]) or "no output"
