"""The one seam to the Docker engine: a client, and Docker's exceptions turned into cd4ml's.

Everything in cd4ml that talks to Docker (build, infra validation, push, the local and Swarm
deploy targets) gets its client here, so that "the engine is not running" reads the same
everywhere and names the fix, and no Docker exception class leaks past this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cd4ml.errors import Cd4mlError

if TYPE_CHECKING:
    import docker


class DockerUnavailable(Cd4mlError):
    """The Docker engine cannot be reached (not installed, not started, no permission)."""


def client(timeout: float = 300) -> docker.DockerClient:
    """A client for the engine named by ``DOCKER_HOST`` (else the local socket), checked alive."""
    import docker
    from docker.errors import DockerException

    try:
        c = docker.from_env(timeout=int(timeout))
        c.ping()
    except DockerException as e:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise DockerUnavailable(
            f"cannot reach the Docker engine at {where}: {explain(e)}; start it with "
            "scripts/docker-up.sh (or set DOCKER_HOST)") from None
    return c


def explain(e: BaseException) -> str:
    """One line out of a Docker SDK exception: the engine's own explanation when it gave one."""
    text = getattr(e, "explanation", None) or str(e) or type(e).__name__
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


@contextmanager
def translating(error: type[Cd4mlError], doing: str, fix: str = "") -> Iterator[None]:
    """Turn a Docker SDK (or transport) exception raised inside into ``error``, one line:
    ``docker: <doing>: <what the engine said>; <fix>``."""
    import requests
    from docker.errors import DockerException

    try:
        yield
    except (DockerException, requests.RequestException) as e:
        tail = f"; {fix}" if fix else ""
        raise error(f"docker: {doing}: {explain(e)}{tail}") from None


def image_size(c: docker.DockerClient, ref: str) -> int | None:
    """Size in bytes of a local image (its layers and its base's), or None when it is absent."""
    from docker.errors import ImageNotFound

    try:
        return int(c.images.get(ref).attrs.get("Size") or 0)
    except ImageNotFound:
        return None


def published_port(container: docker.models.containers.Container, container_port: str) -> int:
    """The host port Docker chose for ``container_port`` (e.g. ``"8080/tcp"``) when published
    to port 0, which is how tests and infra validation avoid port clashes."""
    container.reload()
    bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(container_port)
    if not bindings:
        raise Cd4mlError(f"docker: container {container.short_id} publishes no {container_port}")
    return int(bindings[0]["HostPort"])


def logs_tail(container: docker.models.containers.Container, lines: int = 20) -> str:
    """The last lines a container wrote (stdout and stderr), for an error message."""
    from docker.errors import DockerException

    try:
        return container.logs(tail=lines).decode(errors="replace").strip()
    except DockerException:
        return ""
