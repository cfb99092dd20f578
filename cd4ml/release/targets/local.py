"""The local target: blue/green model containers behind a traffic front, on this Docker engine.

A deploy never touches the port clients use. It starts the other colour (``<name>-blue`` or
``<name>-green``) on the environment's network with its port published on 127.0.0.1 at a port
Docker picks, waits for ``/ready`` there, has the front (``<name>-front``, nginx, which holds
``host:port``; see :mod:`cd4ml.release.targets.front`) reload with routes to it, waits until the
front's old workers have finished every request the old colour had, then stops the old colour.
A new colour that does not become ready is removed and the old one never stops serving; a
server that exits on start (a wrong model checksum, a crash) is noticed at once rather than at
the timeout.

:meth:`LocalTarget.split` runs a candidate in the other colour beside the stable one and has
the front send it a share of the requests (or a mirrored copy of each); :meth:`unsplit` puts all
traffic on one of them and removes the other.

The front is created on the first deploy and recreated only when its own settings change
(port, host, image), never for a new model version.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from typing import TYPE_CHECKING, Any

import yaml

from cd4ml.errors import DeployError
from cd4ml.release.render import DEFAULT_MEMORY, base_image, memory_bytes
from cd4ml.release.targets import (
    Applied,
    DockerTarget,
    NotHealthy,
    http_get,
    prepare_log_dir,
    probe_host,
    wait_for,
)
from cd4ml.release.targets.containers import last_line, remove, wait_ready
from cd4ml.release.targets.front import (
    FRONT_CONF,
    FRONT_MEMORY,
    FRONT_PORT,
    FRONT_UID,
    Routes,
    check_split,
    drained,
    front_image,
    install,
    nginx_conf,
    routes_of,
    tar,
)
from cd4ml.release.targets.keeper import OWNER_LABELS, ensure_keeper

if TYPE_CHECKING:

    from cd4ml.release.render import Rendered
    from cd4ml.spec import EnvironmentSpec, Spec

COLOURS = ("blue", "green")


class LocalTarget(DockerTarget):
    name = "local"

    # ------------------------------------------------------------------ what the front runs in

    def proxy_image(self, spec: Spec, env: EnvironmentSpec, model_image: str) -> str:
        """The running front's image (so that it is not recreated), else cd4ml's nginx image
        (built once from the base image) or the one ``$CD4ML_FRONT_IMAGE`` names."""
        from cd4ml.release.render import resource_name

        front = self._container(f"{resource_name(spec, env)}-front")
        if front is not None:
            tags = front.image.tags
            return tags[0] if tags else front.image.id
        return front_image(self.client, base_image(spec))

    # ------------------------------------------------------------------ apply

    def apply(self, rendered: Rendered, *, timeout: float, previous: Rendered | None = None,
              preflight: bool = True) -> Applied:
        from cd4ml.integrations.docker import translating

        conf = parse_conf(rendered)
        prepare_log_dir(rendered)
        with translating(DeployError, f"deploy {rendered.name}", "check the engine with 'docker info'"):
            front = self._prepare(conf)
            routes = self._routes(front)
            if routes is not None and routes.candidate:
                routes = self._collapse(front, routes)
            old_name = routes.stable.rsplit(":", 1)[0] if routes else None
            colour = "green" if old_name and old_name.endswith("-blue") else "blue"
            new = self._start_model(conf, colour)
            try:
                self._wait_ready(new, conf, timeout)
                upstream = f"{new.name}:{conf['model']['port']}"
                front = self._switch(conf, front, Routes(stable=upstream, generation=_generation()))
            except NotHealthy as e:
                restored = old_name is not None and self._restore(conf, front, old_name)
                remove(new)
                raise NotHealthy(str(e), restored=restored, details=e.details) from None
            except BaseException:
                remove(new)
                raise
            if old_name:
                self._drain(front, old_name)
            self._remove_others(conf, keep={new.name, front.name})
            ensure_keeper(self.client, conf)  # brings a 'docker kill'ed model container back
        return Applied(url=self._front_url(conf), details={
            "container": new.name, "colour": colour, "image": conf["model"]["image"],
            "front": front.name, "previous_container": old_name})

    def _prepare(self, conf: dict) -> Any:
        """The environment's front (None before the first deploy), its port checked free when
        it is not the front's yet, and the environment's network."""
        front = self._container(conf["front"]["name"])
        if front is None or _published(front) != (conf["front"].get("host") or "127.0.0.1",
                                                  int(conf["front"]["port"])):
            self.check_port(conf["front"].get("host") or "127.0.0.1", int(conf["front"]["port"]))
        owner = conf["model"].get("labels") or {}
        self._network(conf["network"], {k: str(owner.get(k)) for k in OWNER_LABELS})
        return front

    def _front_url(self, conf: dict) -> str:
        return f"http://{probe_host(conf['front']['host'])}:{conf['front']['port']}"

    def _restore(self, conf: dict, front: Any, old_name: str) -> bool:
        """After a failed switch: make sure the front routes to the old colour again."""
        old = f"{old_name}:{conf['model']['port']}"
        front = front or self._container(conf["front"]["name"])
        routes = self._routes(front)
        if routes is None:
            return False
        if routes.stable == old and not routes.candidate:
            return True
        try:
            install(front, Routes(stable=old, generation=_generation()))
            return True
        except DeployError:
            return False

    # ------------------------------------------------------------------ split traffic

    def split(self, stable: Rendered, candidate: Rendered, *, weight: int, shadow: bool = False,
              timeout: float) -> Applied:
        """Run ``candidate`` in the other colour beside ``stable`` (started unless it already
        runs there) and have the front send it ``weight`` % of the requests, or with
        ``shadow`` a copy of each (its answers discarded)."""
        from cd4ml.integrations.docker import translating

        check_split(weight, shadow)
        conf, cand = parse_conf(stable), parse_conf(candidate)
        with translating(DeployError, f"split {stable.name}", "check the engine with 'docker info'"):
            front = self._container(conf["front"]["name"])
            routes = self._routes(front)
            if routes is None:
                raise DeployError(f"{stable.name}: nothing serves behind {conf['front']['name']} "
                                  "yet; deploy the stable version before splitting traffic")
            ctr = self._container(routes.candidate.rsplit(":", 1)[0]) if routes.candidate else None
            if ctr is None or ctr.image.id != self._image_id(cand["model"]["image"]):
                if ctr is not None:
                    routes = self._collapse(front, routes)
                stable_name = routes.stable.rsplit(":", 1)[0]
                ctr = self._start_model(cand, "green" if stable_name.endswith("-blue") else "blue")
                try:
                    self._wait_ready(ctr, cand, timeout)
                except BaseException:
                    remove(ctr)
                    raise
            upstream = f"{ctr.name}:{cand['model']['port']}"
            install(front, Routes(stable=routes.stable, candidate=upstream, weight=weight,
                                  shadow=shadow, generation=_generation()))
        return Applied(url=self._front_url(conf), details={
            "front": front.name, "weight": weight, "shadow": shadow,
            "container": ctr.name, "stable_container": routes.stable.rsplit(":", 1)[0],
            "upstreams": {"stable": self._direct_url(routes.stable), "candidate":
                          self._direct_url(upstream)}})

    def unsplit(self, keep: Rendered, drop: Rendered, *, timeout: float) -> Applied:
        """All traffic to ``keep`` at once (``details["switch_seconds"]``: from the call until
        the front routes every new request there), then drain and remove ``drop``'s server."""
        from cd4ml.integrations.docker import translating

        t0 = time.perf_counter()
        conf, kept = parse_conf(drop), parse_conf(keep)
        with translating(DeployError, f"unsplit {keep.name}", "check the engine with 'docker info'"):
            front = self._container(conf["front"]["name"])
            routes = self._routes(front)
            if routes is None:
                raise DeployError(f"{keep.name}: {conf['front']['name']} does not run; nothing to unsplit")
            want = self._image_id(kept["model"]["image"])
            by_image = {u: self._container(u.rsplit(":", 1)[0])
                        for u in (routes.stable, routes.candidate) if u}
            keep_up = next((u for u, c in by_image.items() if c is not None and c.image.id == want),
                           None)
            if keep_up is None:
                raise DeployError(f"{keep.name}: no server behind the front runs {kept['model']['image']}"
                                  "; nothing was changed")
            install(front, Routes(stable=keep_up, generation=_generation()), timeout=timeout)
            switched = time.perf_counter() - t0
            dropped = [u.rsplit(":", 1)[0] for u in by_image if u != keep_up]
            for name in dropped:
                self._drain(front, name)
        return Applied(url=self._front_url(conf), details={
            "front": front.name, "container": keep_up.rsplit(":", 1)[0], "removed": dropped,
            "switch_seconds": round(switched, 3)})

    def _image_id(self, ref: str) -> str | None:
        from docker.errors import ImageNotFound

        try:
            return self.client.images.get(ref).id
        except ImageNotFound:
            return None

    def _direct_url(self, upstream: str) -> str | None:
        """A model server's own address as this machine reaches it (its port on 127.0.0.1)."""
        name, _, port = upstream.rpartition(":")
        ctr = self._container(name)
        if ctr is None:
            return None
        binding = (((ctr.attrs.get("NetworkSettings") or {}).get("Ports") or {})
                   .get(f"{port}/tcp") or [None])[0]
        return f"http://127.0.0.1:{binding['HostPort']}" if binding else None

    def _network(self, name: str, owner: dict[str, str]) -> None:
        from docker.errors import NotFound

        try:
            self.client.networks.get(name)
        except NotFound:
            self.client.networks.create(name, driver="bridge", check_duplicate=True,
                                        labels={**owner, "cd4ml.role": "network"})

    def _container(self, name: str) -> Any:
        from docker.errors import NotFound

        try:
            return self.client.containers.get(name)
        except NotFound:
            return None

    def _start_model(self, conf: dict, colour: str) -> Any:
        m = conf["model"]
        name = f"{m['name']}-{colour}"
        stale = self._container(name)
        if stale is not None:
            remove(stale)  # a leftover of an interrupted deploy: it serves nothing
        kwargs: dict[str, Any] = {
            "name": name, "detach": True, "network": conf["network"],
            "labels": {**{str(k): str(v) for k, v in (m.get("labels") or {}).items()},
                       "cd4ml.role": "model", "cd4ml.colour": colour},
            "ports": {f"{m['port']}/tcp": ("127.0.0.1", None)},
            "environment": {str(k): str(v) for k, v in (m.get("environment") or {}).items()},
            "restart_policy": {"Name": m.get("restart") or "unless-stopped"},
        }
        if m.get("command"):
            cmd = m["command"]
            kwargs["command"] = shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]
        if m.get("cpus"):
            kwargs["nano_cpus"] = int(float(m["cpus"]) * 1e9)
        # a containers.yml of the user's that sets no memory still gets cd4ml's default limit
        kwargs["mem_limit"] = int(m.get("memory") or memory_bytes(DEFAULT_MEMORY) or 0)
        if m.get("volumes"):
            kwargs["volumes"] = list(m["volumes"])
        return self.client.containers.run(m["image"], **kwargs)

    def _wait_ready(self, ctr: Any, conf: dict, timeout: float) -> None:
        m = conf["model"]
        wait_ready(ctr, m["image"], int(m["port"]), m.get("ready_path") or "/ready", timeout)

    # ------------------------------------------------------------------ the front

    def _routes(self, front: Any) -> Routes | None:
        if front is None:
            return None
        front.reload()
        return routes_of(front) if front.status == "running" else None

    def _switch(self, conf: dict, front: Any, routes: Routes) -> Any:
        """Point the front at ``routes``: a new front the first time (or when its image, host or
        port changed), else a graceful reload of the running one."""
        want = _front_hash(conf["front"])
        if front is not None and (front.status != "running" or front.labels.get("cd4ml.front") != want):
            remove(front)  # its port, host or image changed: a new front, once
            front = None
        if front is None:
            return self._create_front(conf, routes, want)
        install(front, routes)
        return front

    def _create_front(self, conf: dict, routes: Routes, want: str) -> Any:
        from docker.errors import APIError

        from cd4ml.integrations.docker import explain, logs_tail

        f = conf["front"]
        host = f.get("host") or "127.0.0.1"
        front = self.client.containers.create(
            f["image"], name=f["name"], network=conf["network"],
            entrypoint=["nginx", "-c", FRONT_CONF], command=[], user=str(FRONT_UID),
            healthcheck={"test": ["NONE"]}, mem_limit=int(f.get("memory") or FRONT_MEMORY),
            labels={**{str(k): str(v) for k, v in (f.get("labels") or {}).items()},
                    "cd4ml.role": "front", "cd4ml.front": want},
            ports={f"{FRONT_PORT}/tcp": (host, int(f["port"]))},
            restart_policy={"Name": "unless-stopped"})
        front.put_archive("/", tar({FRONT_CONF.lstrip("/"): (nginx_conf(routes), 0o644)}))
        try:
            front.start()
        except APIError as e:
            remove(front)
            raise DeployError(f"cannot publish {host}:{f['port']} for {f['name']}: {explain(e)}; "
                              "free the port or change environments.<env>.port") from None
        url = f"http://{probe_host(host)}:{f['port']}/ready"
        if not wait_for(lambda: http_get(url, timeout=1)[0] == 200, timeout=30, interval=0.1):
            raise NotHealthy(f"{f['name']} did not answer at {url} within 30 s: "
                             f"{last_line(logs_tail(front))}", restored=False)
        return front

    def _drain(self, front: Any, old_name: str) -> None:
        """Wait until the front's old workers have finished every request the old routes took,
        then stop the old server."""
        drained(front)
        old = self._container(old_name)
        if old is not None:
            old.stop(timeout=10)
            remove(old)

    def _collapse(self, front: Any, routes: Routes) -> Routes:
        """An unfinished split before a plain deploy: all traffic back to stable, candidate gone."""
        back = Routes(stable=routes.stable, generation=_generation())
        install(front, back)
        self._drain(front, routes.candidate.rsplit(":", 1)[0] if routes.candidate else "")
        return back

    def _remove_others(self, conf: dict, keep: set[str]) -> None:
        labels = conf["model"].get("labels") or {}
        flt = ["cd4ml.role=model"] + [f"{k}={labels.get(k)}" for k in OWNER_LABELS]
        for c in self.client.containers.list(all=True, filters={"label": flt}):
            if c.name not in keep:
                remove(c)

    def remove_orphans(self, spec: Spec, env: EnvironmentSpec, *, keep: set[str],
                       anything_current: bool) -> list[str]:
        """Remove the environment's model containers that neither the front routes to nor
        ``keep`` names (a killed deploy's new colour). When something is current but neither
        the front nor the record says which container it is, nothing is removed."""
        from cd4ml.integrations.docker import translating
        from cd4ml.release.render import labels, resource_name

        flt = ["cd4ml.role=model", *(f"{k}={v}" for k, v in labels(spec, env).items())]
        with translating(DeployError, f"clean up {resource_name(spec, env)}",
                         "check the engine with 'docker info'"):
            found = self.client.containers.list(all=True, filters={"label": flt})
            if not found:
                return []
            front = self._container(f"{resource_name(spec, env)}-front")
            routes = self._routes(front)
            routed = {u.rsplit(":", 1)[0] for u in (routes.stable, routes.candidate) if u} \
                if routes is not None else set()
            if routed:
                keep = keep | routed
            elif anything_current and not keep:
                return []
            removed = [c for c in found if c.name not in keep]
            for c in removed:
                remove(c)
        return [c.name for c in removed]

    # ------------------------------------------------------------------ status

    def teardown(self, spec: Spec, env: EnvironmentSpec) -> None:
        from docker.errors import NotFound

        from cd4ml.release.render import labels, resource_name

        name = resource_name(spec, env)
        flt = [f"{k}={v}" for k, v in labels(spec, env).items()]
        for c in self.client.containers.list(all=True, filters={"label": flt}):
            remove(c)
        try:
            net = self.client.networks.get(name)
        except NotFound:
            return
        # a network of that name made by someone else is theirs: only a labelled one is ours
        if (net.attrs.get("Labels") or {}).get("cd4ml.project") == spec.project:
            net.remove()


def _published(ctr: Any) -> tuple[str, int] | None:
    """The (host, port) a container publishes its front port on, from its configuration."""
    bindings = ((ctr.attrs.get("HostConfig") or {}).get("PortBindings") or {}).get(f"{FRONT_PORT}/tcp")
    if not bindings:
        return None
    return bindings[0].get("HostIp") or "0.0.0.0", int(bindings[0].get("HostPort") or 0)


def parse_conf(rendered: Rendered) -> dict:
    """The rendered containers.yml, checked for what apply needs."""
    src = rendered.sources.get("containers.yml", "containers.yml")
    try:
        conf = yaml.safe_load(rendered.files["containers.yml"])
    except KeyError:
        raise DeployError(f"{rendered.name}: the local target needs containers.yml; restore "
                          "infra/local/containers.yml.j2") from None
    except yaml.YAMLError as e:
        raise DeployError(f"{src}: the rendered file is not YAML: {e}") from None
    for path in ("network", "model.name", "model.image", "model.port", "front.name",
                 "front.image", "front.port"):
        node: Any = conf
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node in (None, ""):
            raise DeployError(f"{src}: {path} is missing; see cd4ml's infra/local/containers.yml.j2")
    return conf


def _front_hash(front: dict) -> str:
    key = json.dumps([front.get("image"), front.get("host"), front.get("port"), front.get("memory")])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _generation() -> int:
    return time.time_ns() // 1_000_000
