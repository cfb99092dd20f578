"""Pushing model images to an OCI registry, and asking a registry what a tag points at.

Credentials come from the environment only: ``CD4ML_REGISTRY_USER`` and
``CD4ML_REGISTRY_PASSWORD`` (in CI, from the repository's secrets). They are handed to the
Docker engine for the one push and are never logged, printed, stored or put in an error
message. Without them the engine's own login for that registry (``docker login``) is used when
there is one, else the push is anonymous (a registry on 127.0.0.1, a CI-local registry).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cd4ml.errors import BuildError
from cd4ml.events import StageProgress, emit

if TYPE_CHECKING:
    import docker

USER_ENV = "CD4ML_REGISTRY_USER"
PASSWORD_ENV = "CD4ML_REGISTRY_PASSWORD"
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # a repr (a log line, a traceback) must not show it


def credentials_from_env() -> Credentials | None:
    """The registry login from the environment; None (anonymous) when neither is set."""
    user = os.environ.get(USER_ENV, "")
    password = os.environ.get(PASSWORD_ENV, "")
    if not user and not password:
        return None
    if not user or not password:
        missing = USER_ENV if not user else PASSWORD_ENV
        raise BuildError(f"{missing} is not set but its partner is; set both {USER_ENV} and "
                         f"{PASSWORD_ENV}, or neither for an anonymous push")
    return Credentials(user, password)


def split_reference(reference: str) -> tuple[str, str]:
    """``registry/repo:tag`` into ``(registry/repo, tag)``; a port's colon is not a tag."""
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return name, tag


def registry_of(reference: str) -> str | None:
    """The registry host of a reference, or None for Docker Hub's implicit one."""
    first, sep, _ = reference.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def push(c: docker.DockerClient, reference: str, credentials: Credentials | None = None) -> str:
    """Push a local image tag; return the manifest digest the registry now serves for it."""
    from cd4ml.integrations.docker import translating

    repository, tag = split_reference(reference)
    registry = registry_of(reference)
    if registry is None:
        raise BuildError(f"{reference}: names no registry; set image.registry in the spec "
                         "(e.g. registry.example.com or 127.0.0.1:5000)")
    auth = ({"username": credentials.username, "password": credentials.password}
            if credentials else None)
    digest = None
    layers: dict[str, str] = {}
    with translating(BuildError, f"push {reference}", f"check that {registry} is reachable"):
        for chunk in c.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
            if "error" in chunk:
                hint = ("set CD4ML_REGISTRY_USER and CD4ML_REGISTRY_PASSWORD"
                        if "auth" in chunk["error"].lower() else f"check that {registry} accepts pushes")
                raise BuildError(f"docker: push {reference}: {chunk['error'].strip()}; {hint}")
            aux = chunk.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
            status, layer = chunk.get("status", ""), chunk.get("id", "")
            if layer and status in ("Pushed", "Layer already exists", "Mounted from"):
                layers[layer] = status
                emit(StageProgress("push", f"{layer}: {status.lower()}"))
    if digest is None:
        raise BuildError(f"docker: push {reference}: the engine reported no digest; "
                         f"check {registry}'s logs")
    return digest


def manifest_digest(reference: str, credentials: Credentials | None = None,
                    timeout: float = 10) -> str | None:
    """What ``reference`` resolves to in its registry now (``Docker-Content-Digest``), or None
    when the tag is not there. Plain HTTP for loopback registries, HTTPS otherwise."""
    registry = registry_of(reference)
    if registry is None:
        raise BuildError(f"{reference}: names no registry to ask")
    repository, tag = split_reference(reference)
    name = repository[len(registry) + 1:]
    host = registry.split(":")[0]
    scheme = "http" if host in ("localhost", "::1") or host.startswith("127.") else "https"
    req = urllib.request.Request(f"{scheme}://{registry}/v2/{name}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": ", ".join(MANIFEST_TYPES)})
    if credentials:
        import base64

        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise BuildError(f"{registry}: manifest of {name}:{tag}: HTTP {e.code}; "
                         "check the credentials and the repository name") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BuildError(f"{registry}: cannot reach it: {reason}; check image.registry") from None

