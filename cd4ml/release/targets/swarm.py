"""The swarm target: ``docker stack deploy`` of the rendered stack on a Swarm manager.

The stack (infra/swarm/stack.yml.j2) has two services: ``model``, updated by Swarm itself one
task at a time, new task first, rolled back by Swarm when a new task fails; and ``front``,
cd4ml's traffic front (nginx, :mod:`cd4ml.release.targets.front`) on the environment's port,
which no deploy changes. A deploy here:

1. pre-flight (deploy and promote, not rollback): the first deploy starts the image once as a
   plain container on the manager and waits for ``/ready``; later ones use the bridge of
   step 2 for that. An image that never gets ready is refused before any task is touched; this
   is the guard on engines whose Swarm cannot health-check tasks.
2. when the stack serves already: runs the new image as a *bridge*, a plain container
   ``<stack>-bridge-<hex>`` attached to the stack's (attachable) overlay network, waits for its
   ``/ready`` and has the front send every request there, because the model service's new
   tasks answer 503 until their model is loaded and nginx cannot hold a request until one is
   ready (nor re-send it). A plain container, not a service: it serves within the model's own
   start time, where a service first waits for Swarm to schedule its task (a rollback served
   12-15 s after the command with a service, against ~5 s on the local target).
3. ``docker stack deploy --resolve-image never`` (through cd4ml.integrations.proc: the compose
   file is applied exactly as ``cd4ml render`` shows it).
4. waits until every replica runs the new image, no task of another image runs, and the
   front answers ``/ready``; then until the new tasks answer ``/ready`` themselves, routes the
   front back to the model service and removes the bridge once the front has drained it.
5. when that does not happen in time (or Swarm rolled the update back), deploys the previous
   stack again and waits for it to serve, then raises NotHealthy.

A deploy killed midway may leave a bridge: the next action's clean-up
(:meth:`SwarmTarget.remove_orphans`) removes it unless the front still routes to it, and then
the next deploy replaces it; ``teardown`` removes it before the stack.
The time each step took is in the deployment's details (``steps``).

:meth:`SwarmTarget.split` uses the same candidate service for canary and shadow releases.
"""

from __future__ import annotations

import tempfile
import time
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
from cd4ml.release.targets.keeper import OWNER_LABELS

if TYPE_CHECKING:

    from cd4ml.release.render import Rendered
    from cd4ml.spec import EnvironmentSpec, Spec

FAILED_UPDATE = ("rollback_started", "rollback_paused", "rollback_completed", "paused")
#: what every bridge container's name starts with, after (a cut of) its stack's name
BRIDGE = "-bridge-"


class Steps:
    """Seconds from the start of an apply to the end of each of its steps (in the deployment's
    details: where a slow deploy or rollback spends its time)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.done: dict[str, float] = {}

    def mark(self, step: str) -> None:
        self.done[step] = round(time.perf_counter() - self.t0, 2)


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
        cd4ml's nginx image (built once on the manager) or ``$CD4ML_FRONT_IMAGE``."""
        from cd4ml.release.targets.front import front_image

        front = self._service(f"{resource_name(spec, env)}_front")
        if front is not None:
            return front.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        return front_image(self.client, base_image(spec))

    # ------------------------------------------------------------------ apply

    def apply(self, rendered: Rendered, *, timeout: float, previous: Rendered | None = None,
              preflight: bool = True) -> Applied:
        from cd4ml.integrations.docker import translating
        from cd4ml.release.targets.front import drained

        steps = Steps()
        with translating(DeployError, f"deploy stack {rendered.name}", "check 'docker info'"):
            prepare_log_dir(rendered)
            self._manager()
            existed = self._service(f"{rendered.name}_model") is not None
            if self._published(rendered.name) != int(rendered.context["port"]):
                # the first deploy, or a move to another port: refused while someone holds it,
                # before the front (updated stop-first) lets go of its own
                self.check_port(str(rendered.context["host"]), int(rendered.context["port"]))
            front = self._front_task(rendered.name) if existed else None
            if preflight and front is None:
                try:
                    self._preflight(rendered, timeout)
                except NotHealthy as e:
                    raise NotHealthy(f"pre-flight: {e}", restored=existed, details=e.details) from None
                steps.mark("pre-flight ready")
            if front is not None and not self._on_candidate(rendered, front):
                # while Swarm replaces the model's tasks (which answer 503 until their model is
                # loaded), the front sends every request to the new version run beside them as
                # a plain container (a service would wait for Swarm's scheduling): ready before
                # any request reaches it, it is the pre-flight too
                try:
                    bridge = self._start_bridge(rendered, timeout)
                except NotHealthy as e:
                    raise NotHealthy(f"pre-flight: {e}", restored=True, details=e.details) from None
                steps.mark("bridge ready")
                self._route(rendered, front, bridge)
                steps.mark("front on the bridge")
                drained(front)
                steps.mark("old routes drained")
            try:
                self._deploy(rendered)
                steps.mark("stack deployed")
                ok, why, details = self._converge(rendered, timeout)
                steps.mark("tasks converged")
                if ok:
                    if front is not None:
                        self._back_to_model(rendered, front, timeout)
                        steps.mark("front back on the model service")
                    return Applied(url=self._url(rendered), details={**details, "steps": steps.done})
                restored = False
                if previous is not None:
                    self._deploy(previous)
                    restored, _, _ = self._converge(previous, max(60.0, timeout))
                    if restored and front is not None:
                        self._back_to_model(previous, front, timeout)
                raise NotHealthy(why, restored=restored, details={**details, "steps": steps.done})
            except DeployError as e:
                if front is not None and not (isinstance(e, NotHealthy) and e.restored):
                    # the stack could not be updated: its tasks still serve the previous version
                    self._route(rendered, front, "model")
                    self._drop_bridges(rendered, front)
                raise

    def _preflight(self, rendered: Rendered, timeout: float) -> None:
        from docker.errors import NotFound

        from cd4ml.release.targets.containers import remove

        name = f"{rendered.name}-preflight"
        try:
            remove(self.client.containers.get(name))
        except NotFound:
            pass
        remove(self._run_ready(rendered, name, timeout, {"cd4ml.role": "preflight"}))

    def _run_ready(self, rendered: Rendered, name: str, timeout: float, labels: dict[str, str],
                   **options: Any) -> Any:
        """Run ``rendered``'s image as the plain container ``name`` (published on this host's
        loopback, for cd4ml's readiness probe only) and wait for its ``/ready``; removed again
        if it never gets ready."""
        from cd4ml.release.targets.containers import remove, wait_ready

        ctx = rendered.context
        ctr = self.client.containers.run(
            ctx["image_pinned"], name=name, detach=True,
            ports={f"{ctx['container_port']}/tcp": ("127.0.0.1", None)},
            mem_limit=ctx["resources"]["memory_bytes"], labels={**ctx["labels"], **labels},
            **options)
        try:
            wait_ready(ctr, ctx["image_pinned"], int(ctx["container_port"]), "/ready", timeout)
        except BaseException:
            remove(ctr)
            raise
        return ctr

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
            old = [t for t in svc.tasks() if (t.get("Status") or {}).get("State") == "running"
                   and t["Spec"]["ContainerSpec"]["Image"] != want]
            if len(new) >= int(ctx["replicas"]) and not old:
                # the front resolves the service every second: the old tasks are gone from it
                if http_get(f"{self._url(rendered)}/ready", timeout=2)[0] == 200:
                    details.update(tasks=sorted(t["ID"] for t in new), image=want)
                    return True, "", details
                why = "the front does not answer /ready with 200"
            else:
                why = f"{len(new)} of {ctx['replicas']} tasks run {want}" + (
                    f" ({why})" if failed else "") + (f", {len(old)} old still run" if old else "")
            time.sleep(0.2)
        return False, f"not serving within {timeout:g} s: {why}", details

    # ------------------------------------------------------------------ split traffic

    def split(self, stable: Rendered, candidate: Rendered, *, weight: int, shadow: bool = False,
              timeout: float) -> Applied:
        """Run ``candidate`` as the service ``<stack>_candidate`` on the stack's network (unless
        it already runs that image) and re-route the front in place: ``weight`` % of requests
        to it, or with ``shadow`` a copy of each. The model servers are on the overlay network
        only: ``details["upstreams"]`` has no address this host can reach (None)."""
        from cd4ml.integrations.docker import translating
        from cd4ml.release.targets.front import SWARM_RESOLVER, Routes, check_split, install

        check_split(weight, shadow)
        with translating(DeployError, f"split {stable.name}", "check 'docker info'"):
            self._manager()
            front = self._front_container(stable.name)
            name, port = f"{stable.name}_candidate", stable.context["container_port"]
            self._run_candidate(candidate, front, timeout)
            install(front, Routes(stable=f"model:{port}", candidate=f"{name}:{port}", weight=weight,
                                  shadow=shadow, generation=time.time_ns() // 1_000_000),
                    resolver=SWARM_RESOLVER)
        return Applied(url=self._url(stable), details={
            "front": front.name, "service": name, "weight": weight, "shadow": shadow,
            "upstreams": {"stable": None, "candidate": None}})

    def unsplit(self, keep: Rendered, drop: Rendered, *, timeout: float) -> Applied:
        """All traffic to the servers of ``keep`` at once, then drain and remove the others.
        Keeping the candidate (a promotion) routes everything to it while the stack's model
        service is updated to its image, then back to the model service."""
        from cd4ml.integrations.docker import translating

        t0 = time.perf_counter()
        with translating(DeployError, f"unsplit {keep.name}", "check 'docker info'"):
            self._manager()
            front = self._front_container(keep.name)
            want, name = keep.context["image_pinned"], f"{keep.name}_candidate"
            model, cand = self._service(f"{keep.name}_model"), self._service(name)
            image = (lambda svc: svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
                     if svc is not None else None)
            if image(model) == want:
                self._route(keep, front, "model")
                switched = time.perf_counter() - t0
            elif image(cand) == want:
                self._route(keep, front, name)
                switched = time.perf_counter() - t0
                # a promotion: the model service is updated to the candidate's image (the front
                # sends everything to the candidate meanwhile), then takes the traffic back
                self.apply(keep, timeout=timeout, previous=drop, preflight=False)
            else:
                raise DeployError(f"{keep.name}: neither the model service nor {name} runs {want}; "
                                  "nothing was changed")
            self._drop_candidate(keep, front)
        return Applied(url=self._url(keep), details={"front": front.name, "removed": name,
                                                     "switch_seconds": round(switched, 3)})

    def _front_container(self, stack: str) -> Any:
        found = self.client.containers.list(
            filters={"label": f"com.docker.swarm.service.name={stack}_front"})
        if not found:
            raise DeployError(f"{stack}_front has no running task on this engine (the front runs on "
                              "a manager); deploy the stable version first, from a manager")
        return found[0]

    def _start_candidate(self, stack: str, candidate: Rendered) -> None:
        from docker.types import EndpointSpec, Mount, RestartPolicy

        ctx = candidate.context
        self.client.services.create(
            ctx["image_pinned"], name=f"{stack}_candidate", networks=[f"{stack}_net"],
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            env=["CD4ML_PREDICTION_LOG_DIR=/var/log/cd4ml"],
            mounts=[Mount("/var/log/cd4ml", str(ctx["prediction_logs"]), type="bind")],
            # in the stack's namespace: 'docker stack rm' (teardown) removes it with the rest
            labels={**ctx["labels"], "com.docker.stack.namespace": stack, "cd4ml.role": "candidate"},
            container_labels={**ctx["labels"], "cd4ml.role": "model",
                              "cd4ml.model.version": str(ctx["model"]["version"])},
            restart_policy=RestartPolicy(condition="any", delay=2_000_000_000),
            stop_grace_period=10_000_000_000)

    def _published(self, stack: str) -> int | None:
        """The port the stack's front publishes (None before the first deploy)."""
        front = self._service(f"{stack}_front")
        ports = ((front.attrs["Spec"].get("EndpointSpec") or {}).get("Ports") or []) if front else []
        return next((int(p["PublishedPort"]) for p in ports if p.get("PublishedPort")), None)

    def _front_task(self, stack: str) -> Any:
        try:
            return self._front_container(stack)
        except DeployError:
            return None  # the first deploy, or a front on another node: Swarm's update alone

    def _route(self, rendered: Rendered, front: Any, service: str, timeout: float = 15) -> None:
        """Every request to ``service`` (a service of the stack's network)."""
        from cd4ml.release.targets.front import SWARM_RESOLVER, Routes, install

        install(front, Routes(stable=f"{service}:{rendered.context['container_port']}",
                              generation=time.time_ns() // 1_000_000),
                resolver=SWARM_RESOLVER, timeout=timeout)

    def _run_candidate(self, candidate: Rendered, front: Any, timeout: float) -> None:
        """``<stack>_candidate`` running ``candidate``'s image and ready: kept when it already
        runs it, else (re)started; a candidate that is not ready in time is removed."""
        name, want = f"{candidate.name}_candidate", candidate.context["image_pinned"]
        svc = self._service(name)
        if svc is not None and svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] != want:
            self._route(candidate, front, "model")  # off the other candidate before it goes
            self._drop_candidate(candidate, front)
            svc = None
        if svc is None:
            prepare_log_dir(candidate)
            self._start_candidate(candidate.name, candidate)
        try:
            self._wait_tasks(name, want, timeout, count=1, fail_fast=True)
        except NotHealthy:
            self._drop_candidate(candidate, front)
            raise

    def _back_to_model(self, rendered: Rendered, front: Any, timeout: float) -> None:
        """After the model service's update: its tasks ready, the traffic back, the bridge (or
        candidate) gone."""
        self._wait_tasks(f"{rendered.name}_model", rendered.context["image_pinned"], timeout,
                         count=int(rendered.context["replicas"]))
        self._route(rendered, front, "model")
        self._drop_bridges(rendered, front)
        self._drop_candidate(rendered, front)

    def _on_candidate(self, rendered: Rendered, front: Any) -> bool:
        """The front already sends everything to ``<stack>_candidate`` running ``rendered``'s
        image (a promotion of a canary): it bridges the update, no bridge is needed."""
        from cd4ml.release.targets.front import routes_of

        name = f"{rendered.name}_candidate"
        svc = self._service(name)
        routes = routes_of(front)
        return (svc is not None and routes is not None and routes.candidate is None
                and routes.stable.rsplit(":", 1)[0] == name
                and svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
                == rendered.context["image_pinned"])

    def _start_bridge(self, rendered: Rendered, timeout: float) -> str:
        """Run ``rendered``'s image as a plain container on the stack's (attachable) network and
        wait for its ``/ready``; return its name, which the front resolves on that network.
        Plain, not a service: it starts without Swarm's scheduling, within the model's own
        start time. It restarts like a task (not when ``docker kill``ed: the next deploy's
        clean-up or the end of this one replaces it) and carries the environment's labels, so
        that a deploy killed midway leaves nothing the next one cannot find."""
        import secrets

        ctx = rendered.context
        name = f"{rendered.name[:48].rstrip('-')}{BRIDGE}{secrets.token_hex(3)}"
        prepare_log_dir(rendered)
        self._run_ready(
            rendered, name, timeout,
            {"cd4ml.role": "bridge", "cd4ml.model.version": str(ctx["model"]["version"])},
            network=f"{rendered.name}_net", restart_policy={"Name": "unless-stopped"},
            environment={"CD4ML_PREDICTION_LOG_DIR": "/var/log/cd4ml",
                         "CD4ML_REFUSE_UNTIL_READY": "1"},
            volumes={str(ctx["prediction_logs"]): {"bind": "/var/log/cd4ml", "mode": "rw"}})
        return name

    def _bridges(self, labels: dict[str, str]) -> list[Any]:
        flt = ["cd4ml.role=bridge", *(f"{k}={labels[k]}" for k in OWNER_LABELS)]
        return self.client.containers.list(all=True, filters={"label": flt})

    def _drop_bridges(self, rendered: Rendered, front: Any | None) -> None:
        """Remove the environment's bridges once the front's old workers (the last that could
        send them a request) have exited."""
        from cd4ml.release.targets.containers import remove
        from cd4ml.release.targets.front import drained

        gone = self._bridges(rendered.context["labels"])
        if gone and front is not None:
            drained(front)
        for c in gone:
            remove(c)

    def _wait_tasks(self, service: str, image: str, timeout: float, count: int,
                    fail_fast: bool = False) -> None:
        """Wait until ``count`` tasks of ``service`` run ``image`` and answer /ready, asked inside
        their containers (the overlay network is not reachable from here; tasks on other nodes
        are taken as ready once running). ``fail_fast``: a task that fails is reported at once
        (a service of one image only, the candidate)."""
        probe = ("import sys, urllib.request as u; sys.exit(0 if u.urlopen("
                 "'http://127.0.0.1:8080/ready', timeout=2).status == 200 else 1)")
        deadline = time.monotonic() + timeout
        why = "no task running"
        while time.monotonic() < deadline:
            svc = self._service(service)
            tasks = svc.tasks() if svc is not None else []
            failed = [t for t in tasks if fail_fast and (t.get("Status") or {}).get("State") in
                      ("failed", "rejected")]
            if failed:
                raise NotHealthy(f"{service} ({image}): a task failed: "
                                 f"{(failed[0].get('Status') or {}).get('Err') or 'exited'}",
                                 restored=True)
            running = {(t.get("Status") or {}).get("ContainerStatus", {}).get("ContainerID")
                       for t in tasks if (t.get("Status") or {}).get("State") == "running"
                       and t["Spec"]["ContainerSpec"]["Image"] == image}
            local = {c.id: c for c in self.client.containers.list(
                filters={"label": f"com.docker.swarm.service.name={service}"})}
            ready = [cid for cid in running
                     if cid not in local or local[cid].exec_run(["python", "-c", probe]).exit_code == 0]
            if len(ready) >= count:
                return
            why = f"{len(ready)} of {count} tasks ready"
            time.sleep(0.3)
        raise NotHealthy(f"{service} ({image}) was not ready within {timeout:g} s: {why}",
                         restored=True)

    def _drop_candidate(self, rendered: Rendered, front: Any) -> None:
        """Wait until the front's old workers are done with it, then remove the candidate."""
        from cd4ml.release.targets.front import drained

        drained(front)
        svc = self._service(f"{rendered.name}_candidate")
        if svc is not None:
            svc.remove()

    def _url(self, rendered: Rendered) -> str:
        return f"http://{probe_host(rendered.context['host'])}:{rendered.context['port']}"

    # ------------------------------------------------------------------ status

    def remove_orphans(self, spec: Spec, env: EnvironmentSpec, *, keep: set[str],
                       anything_current: bool) -> list[str]:
        """Remove the bridges (see :meth:`_start_bridge`) a killed deploy left that the front
        does not route to; one it still routes to serves until the next deploy replaces it."""
        from cd4ml.integrations.docker import translating
        from cd4ml.release.render import labels
        from cd4ml.release.targets.containers import remove
        from cd4ml.release.targets.front import routes_of

        name = resource_name(spec, env)
        with translating(DeployError, f"clean up {name}", "check the engine with 'docker info'"):
            found = self._bridges(labels(spec, env))
            if not found:
                return []
            front = self._front_task(name)
            routes = routes_of(front) if front is not None else None
            routed = {u.rsplit(":", 1)[0] for u in (routes.stable, routes.candidate) if u} \
                if routes is not None else set()
            removed = [c for c in found if c.name not in routed | keep]
            for c in removed:
                remove(c)
        return [c.name for c in removed]

    def teardown(self, spec: Spec, env: EnvironmentSpec) -> None:
        from cd4ml.release.render import labels
        from cd4ml.release.targets.containers import remove

        name = resource_name(spec, env)
        # first: a container attached to the stack's network would keep it from being removed
        for c in self._bridges(labels(spec, env)):
            remove(c)
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
