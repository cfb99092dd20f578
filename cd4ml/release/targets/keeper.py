"""The local target's keeper: brings a ``docker kill``ed model container back by itself.

The model containers restart by Docker's policy (``unless-stopped``) when their server dies on
its own (a crash, the kernel's OOM killer), but Docker never restarts a container stopped
through the engine: ``docker kill`` counts as an operator's stop, for every policy (checked on
Docker 20.10; moby documents it). Swarm and Kubernetes reconcile such a task; a single engine
has nothing that does. So each local environment gets ``<name>-keeper``: a container running
keeper_loop.py (stdlib only, in the front's Python image) that starts the environment's exited
model containers again, found by cd4ml's labels (project, pipeline, environment, role model).

It needs the engine's socket, so it runs with no network, a read-only root, no capabilities,
64 MiB of memory and only cd4ml's own code; an engine reached over TCP or SSH gets no keeper
(a warning says so). ``cd4ml down`` removes it with the rest (it carries the same labels).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEEPER_FILE = "keeper_loop.py"
#: how often the keeper looks for a stopped model container
EVERY = 1.0
#: the labels that say whose a container is; every clean-up filters on all of them
OWNER_LABELS = ("cd4ml.project", "cd4ml.pipeline", "cd4ml.environment")


def engine_socket() -> str | None:
    """The engine's unix socket on this machine, or None when it is reached otherwise."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return "/var/run/docker.sock"
    return host[len("unix://"):] if host.startswith("unix://") else None


def ensure_keeper(client: Any, conf: dict) -> Any:
    """Start the environment's keeper unless the same one already runs; return it (None when
    the engine is not on a local socket)."""
    from docker.errors import NotFound

    from cd4ml.release.targets.containers import remove

    sock = engine_socket()
    if sock is None:
        log.warning("the Docker engine is not on a local socket (DOCKER_HOST): no keeper, so a "
                    "'docker kill'ed model container of %s stays down until the next deploy",
                    conf["network"])
        return None
    owner = {k: str((conf["model"].get("labels") or {}).get(k)) for k in OWNER_LABELS}
    code = (Path(__file__).with_name(KEEPER_FILE)).read_text(encoding="utf-8")
    image = conf["front"]["image"]
    want = hashlib.sha256(repr((image, code, sorted(owner.items()), sock)).encode()).hexdigest()[:16]
    name = f"{conf['model']['name']}-keeper"
    try:
        ctr = client.containers.get(name)
    except NotFound:
        ctr = None
    if ctr is not None and ctr.status == "running" and ctr.labels.get("cd4ml.keeper") == want:
        return ctr
    if ctr is not None:
        remove(ctr)
    # the code goes in as an argument: the keeper's root file system is read-only
    ctr = client.containers.create(
        image, name=name, entrypoint=["python", "-c", code],
        command=["--every", str(EVERY), *(f"--label={k}={v}" for k, v in owner.items())],
        labels={**owner, "cd4ml.role": "keeper", "cd4ml.keeper": want},
        volumes={sock: {"bind": "/var/run/docker.sock", "mode": "rw"}},
        network_mode="none", read_only=True, cap_drop=["ALL"], mem_limit=64 * 2**20,
        user="0", healthcheck={"test": ["NONE"]}, restart_policy={"Name": "unless-stopped"})
    ctr.start()
    return ctr
