"""The local target: blue/green model containers behind a traffic front, on this Docker engine.

A deploy never touches the port clients use. It starts the other colour (``<name>-blue`` or
``<name>-green``) on the environment's network with its port published on 127.0.0.1 at a port
Docker picks, waits for ``/ready`` there, tells the front (``<name>-front``, cd4ml's proxy.py,
which holds ``host:port``) to send new requests to it, waits until the front has applied the
switch and the old colour has no request in flight, then stops the old colour. A new colour
that does not become ready is removed and the old one never stops serving; a server that exits
on start (a wrong model checksum, a crash) is noticed at once rather than at the timeout.

The front is created on the first deploy and recreated only when its own settings change
(port, host, image, proxy code), never for a new model version.
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import tarfile
import time
from typing import TYPE_CHECKING, Any

import yaml

from cd4ml.errors import DeployError
from cd4ml.release.render import DEFAULT_MEMORY, PROXY_FILE, base_image, memory_bytes
from cd4ml.release.targets import (
    Applied,
    DockerTarget,
    NotHealthy,
    http_get,
    prepare_log_dir,
    probe_host,
    wait_for,
)
from cd4ml.release.targets.keeper import ensure_keeper

if TYPE_CHECKING:

    from cd4ml.release.render import Rendered
    from cd4ml.spec import EnvironmentSpec, Spec

UPSTREAM_DIR = "/tmp/cd4ml-front"
UPSTREAM_FILE = f"{UPSTREAM_DIR}/upstreams.json"
FRONT_PORT = 8080
FRONT_UID = 65534
COLOURS = ("blue", "green")
#: the labels that say whose a container is; every clean-up filters on all of them
OWNER_LABELS = ("cd4ml.project", "cd4ml.pipeline", "cd4ml.environment")


class LocalTarget(DockerTarget):
    name = "local"

    # ------------------------------------------------------------------ what the front runs in

    def proxy_image(self, spec: Spec, env: EnvironmentSpec, model_image: str) -> str:
        """The running front's image (so that it is not recreated), else the base image when
        this engine has it, else the model image: any image with Python runs the front."""
        from cd4ml.release.render import resource_name

        front = self._container(f"{resource_name(spec, env)}-front")
        if front is not None:
            tags = front.image.tags
            return tags[0] if tags else front.image.id
        base = base_image(spec)
        return base if self._has_image(base) else model_image

    def _has_image(self, ref: str) -> bool:
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(ref)
            return True
        except ImageNotFound:
            return False

    # ------------------------------------------------------------------ apply

    def apply(self, rendered: Rendered, *, timeout: float, previous: Rendered | None = None,
              preflight: bool = True) -> Applied:
        from cd4ml.integrations.docker import translating

        conf = parse_conf(rendered)
        prepare_log_dir(rendered)
        with translating(DeployError, f"deploy {rendered.name}", "check the engine with 'docker info'"):
            front = self._container(conf["front"]["name"])
            if front is None or _published(front) != (conf["front"].get("host") or "127.0.0.1",
                                                      int(conf["front"]["port"])):
                self.check_port(conf["front"].get("host") or "127.0.0.1", int(conf["front"]["port"]))
            owner = conf["model"].get("labels") or {}
            self._network(conf["network"], {k: str(owner.get(k)) for k in OWNER_LABELS})
            active = self._active_upstream(front) if front is not None else None
            old_name = active.rsplit(":", 1)[0] if active else None
            colour = "green" if old_name and old_name.endswith("-blue") else "blue"
            new = self._start_model(conf, colour)
            try:
                self._wait_ready(new, conf, timeout)
                upstream = f"{new.name}:{conf['model']['port']}"
                front = self._switch(conf, front, upstream, proxy=rendered.files[PROXY_FILE])
            except NotHealthy as e:
                restored = old_name is not None and self._restore(conf, front, old_name)
                _remove(new)
                raise NotHealthy(str(e), restored=restored, details=e.details) from None
            except BaseException:
                _remove(new)
                raise
            if old_name:
                self._drain(conf, f"{old_name}:{conf['model']['port']}")
            self._remove_others(conf, keep={new.name, front.name})
            ensure_keeper(self.client, conf)  # brings a 'docker kill'ed model container back
        url = f"http://{probe_host(conf['front']['host'])}:{conf['front']['port']}"
        return Applied(url=url, details={"container": new.name, "colour": colour,
                                         "image": conf["model"]["image"], "front": front.name,
                                         "previous_container": old_name})

    def _restore(self, conf: dict, front: Any, old_name: str) -> bool:
        """After a failed switch: make sure the front routes to the old colour again."""
        old = f"{old_name}:{conf['model']['port']}"
        front = front or self._container(conf["front"]["name"])
        if front is None:
            return False
        if self._active_upstream(front) == old:
            return True
        try:
            self._point(front, old, time.time_ns() // 1_000_000, conf["network"])
            return True
        except DeployError:
            return False

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
            _remove(stale)  # a leftover of an interrupted deploy: it serves nothing
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

    def _active_upstream(self, front: Any) -> str | None:
        state = self._front_state(front)
        active = (state or {}).get("active") or []
        return active[0] if active else None

    def _front_state(self, front: Any) -> dict | None:
        front.reload()
        if front.status != "running":
            return None
        ports = (front.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        binding = (ports.get(f"{FRONT_PORT}/tcp") or [None])[0]
        if not binding:
            return None
        status, body = http_get(f"http://{probe_host(binding['HostIp'])}:{binding['HostPort']}"
                                "/.cd4ml/front", timeout=2)
        try:
            return json.loads(body) if status == 200 else None
        except ValueError:
            return None

    def _switch(self, conf: dict, front: Any, upstream: str, proxy: str) -> Any:
        f = conf["front"]
        generation = time.time_ns() // 1_000_000
        doc = json.dumps({"generation": generation, "upstreams": [upstream]})
        want = _front_hash(f, proxy)
        if front is not None and (front.status != "running" or front.labels.get("cd4ml.front") != want):
            _remove(front)  # its port, host, image or code changed: a new front, once
            front = None
        if front is None:
            return self._create_front(conf, doc, proxy, want)
        self._point(front, upstream, generation, conf["network"])
        return front

    def _point(self, front: Any, upstream: str, generation: int, network: str) -> None:
        """Rewrite the front's upstream list and wait until it routes there."""
        doc = json.dumps({"generation": generation, "upstreams": [upstream]})
        res = front.exec_run(["sh", "-c", 'printf "%s" "$1" > "$2.tmp" && mv "$2.tmp" "$2"',
                              "sh", doc, UPSTREAM_FILE])
        if res.exit_code != 0:
            raise DeployError(f"{front.name}: could not switch to {upstream}: "
                              f"{res.output.decode(errors='replace').strip()}")
        applied = wait_for(lambda: (s := self._front_state(front)) and s.get("generation") == generation
                           and s.get("active") == [upstream], timeout=15, interval=0.05)
        if not applied:
            raise NotHealthy(f"{front.name} did not switch to {upstream} within 15 s "
                             f"(it cannot reach it on network {network})", restored=False)

    def _create_front(self, conf: dict, doc: str, proxy: str, want: str) -> Any:
        from docker.errors import APIError

        from cd4ml.integrations.docker import explain, logs_tail

        f = conf["front"]
        host = f.get("host") or "127.0.0.1"
        front = self.client.containers.create(
            f["image"], name=f["name"], network=conf["network"],
            entrypoint=["python", f"/cd4ml-{PROXY_FILE}"],
            command=["--listen", f"0.0.0.0:{FRONT_PORT}", "--upstream-file", UPSTREAM_FILE,
                     "--hold", str(f.get("hold", 30))],
            user=str(FRONT_UID), healthcheck={"test": ["NONE"]},
            labels={**{str(k): str(v) for k, v in (f.get("labels") or {}).items()},
                    "cd4ml.role": "front", "cd4ml.front": want},
            ports={f"{FRONT_PORT}/tcp": (host, int(f["port"]))},
            restart_policy={"Name": "unless-stopped"})
        front.put_archive("/", _tar({f"cd4ml-{PROXY_FILE}": (proxy, 0o444),
                                     UPSTREAM_DIR.lstrip("/") + "/upstreams.json": (doc, 0o666)}))
        try:
            front.start()
        except APIError as e:
            _remove(front)
            raise DeployError(f"cannot publish {host}:{f['port']} for {f['name']}: {explain(e)}; "
                              "free the port or change environments.<env>.port") from None
        url = f"http://{probe_host(host)}:{f['port']}/ready"
        if not wait_for(lambda: http_get(url, timeout=1)[0] == 200, timeout=30, interval=0.1):
            raise NotHealthy(f"{f['name']} did not answer at {url} within 30 s: "
                             f"{_last_line(logs_tail(front))}", restored=False)
        return front

    def _drain(self, conf: dict, old_upstream: str) -> None:
        front = self._container(conf["front"]["name"])
        wait_for(lambda: front is not None and (s := self._front_state(front)) is not None
                 and not s.get("inflight", {}).get(old_upstream), timeout=10, interval=0.05)
        old = self._container(old_upstream.rsplit(":", 1)[0])
        if old is not None:
            old.stop(timeout=10)
            _remove(old)

    def _remove_others(self, conf: dict, keep: set[str]) -> None:
        labels = conf["model"].get("labels") or {}
        flt = ["cd4ml.role=model"] + [f"{k}={labels.get(k)}" for k in OWNER_LABELS]
        for c in self.client.containers.list(all=True, filters={"label": flt}):
            if c.name not in keep:
                _remove(c)

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
            active = self._active_upstream(front) if front is not None else None
            if active:
                keep = keep | {active.rsplit(":", 1)[0]}
            elif anything_current and not keep:
                return []
            removed = [c for c in found if c.name not in keep]
            for c in removed:
                _remove(c)
        return [c.name for c in removed]

    # ------------------------------------------------------------------ status

    def teardown(self, spec: Spec, env: EnvironmentSpec) -> None:
        from docker.errors import NotFound

        from cd4ml.release.render import labels, resource_name

        name = resource_name(spec, env)
        flt = [f"{k}={v}" for k, v in labels(spec, env).items()]
        for c in self.client.containers.list(all=True, filters={"label": flt}):
            _remove(c)
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


def wait_ready(ctr: Any, image: str, port: int, path: str, timeout: float) -> None:
    """Wait until ``ctr`` answers 200 on ``path`` at its port published on 127.0.0.1; raise
    NotHealthy at the timeout, or at once when the server exits (or restarts) on start."""
    from cd4ml.integrations.docker import logs_tail

    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        ctr.reload()
        state = ctr.attrs.get("State") or {}
        if state.get("Status") in ("exited", "dead") or state.get("Restarting") \
                or int(ctr.attrs.get("RestartCount") or 0) > 0:
            logs = logs_tail(ctr)
            raise NotHealthy(f"{ctr.name} ({image}) exited on start (code {state.get('ExitCode')}): "
                             f"{_last_line(logs)}", restored=False,
                             details={"container": ctr.name, "logs": logs})
        ports = (ctr.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        binding = (ports.get(f"{port}/tcp") or [None])[0]
        if binding:
            status, _ = http_get(f"http://127.0.0.1:{binding['HostPort']}{path}", timeout=1)
            if status == 200:
                return
            last = f"{path} answered HTTP {status}" if status else f"{path} did not answer"
        time.sleep(0.1)
    raise NotHealthy(f"{ctr.name} ({image}) was not ready within {timeout:g} s: {last}",
                     restored=False, details={"container": ctr.name, "logs": logs_tail(ctr)})


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


def _front_hash(front: dict, proxy: str) -> str:
    key = json.dumps([front.get("image"), front.get("host"), front.get("port"), front.get("hold"),
                      hashlib.sha256(proxy.encode()).hexdigest()])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _tar(files: dict[str, tuple[str, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        for d in dirs:
            info = tarfile.TarInfo(d)
            # owned by the front's user (nobody), which rewrites the upstream list in place
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, FRONT_UID, FRONT_UID
            tar.addfile(info)
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            info.uid = info.gid = FRONT_UID
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _remove(ctr: Any) -> None:
    from docker.errors import NotFound

    try:
        ctr.remove(force=True)
    except NotFound:
        pass


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
