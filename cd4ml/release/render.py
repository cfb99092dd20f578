"""Rendering an environment's infrastructure: spec + model version + image -> files.

Pure: nothing here talks to Docker, a cluster or the store. The templates are jinja2 files under
``infra/<target>/`` that users read and override: a file of the same name in the user's
repository (``infra/<target>/`` beside the ``pipelines/`` folder, or inside it) replaces cd4ml's,
and a new file there is rendered too. A template that renders to blank text is left out (the
HorizontalPodAutoscaler without ``autoscale``).

cd4ml's own templates ship inside the package as ``cd4ml/infra`` (in the source tree that is a
symbolic link to the repository's ``infra/``, which setuptools follows into the wheel), so they
are found the same way from a checkout and after ``pip install``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import SpecError
from cd4ml.paths import prediction_log_dir

if TYPE_CHECKING:
    from cd4ml.spec import EnvironmentSpec, Spec
    from cd4ml.store import ModelVersion

_PACKAGE = Path(__file__).resolve().parents[1]
#: the port the model server listens on inside its container (infra/docker/Dockerfile.j2)
CONTAINER_PORT = 8080
#: the traffic front's nginx configuration, rendered next to a Swarm stack (a Swarm config)
FRONT_FILE = "front.conf"


@dataclass(frozen=True)
class Rendered:
    """The files of one environment's release, by name, in render order."""

    target: str
    environment: str
    name: str  # the resource name: container prefix, stack name, Deployment name
    files: Mapping[str, str]
    sources: Mapping[str, Path] = field(default_factory=dict)  # file name -> template used
    context: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def write(self, directory: str | Path) -> list[Path]:
        """Write every file into ``directory`` (created); returns the paths written."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for fname, text in self.files.items():
            p = out / fname
            p.write_text(text, encoding="utf-8")
            paths.append(p)
        return paths


def templates_root() -> Path:
    """The directory that holds cd4ml's default ``infra/`` (the package itself once installed)."""
    for root in (_PACKAGE, _PACKAGE.parent):
        if (root / "infra").is_dir():
            return root
    raise SpecError(f"cd4ml's templates are missing (no {_PACKAGE / 'infra'}); reinstall cd4ml")


def template_dirs(spec: Spec, target: str) -> list[Path]:
    """Where ``target``'s templates come from, lowest priority first: cd4ml's, then the user's."""
    dirs = [templates_root() / "infra" / target]
    for root in (spec.root.parent, spec.root):
        d = root / "infra" / target
        if d.is_dir() and all(d.resolve() != x.resolve() for x in dirs):
            dirs.append(d)
    return dirs


def resource_name(spec: Spec, env: EnvironmentSpec) -> str:
    """``cd4ml-<project>-<pipeline>-<env>``: valid as a container, stack and Kubernetes
    (DNS-1123) name, and distinct for two projects with a pipeline of the same name. A name
    cut to 63 characters ends in a hash of the whole, so that two long names never meet."""
    full = re.sub(r"[^a-z0-9-]", "-", f"cd4ml-{spec.project}-{spec.name}-{env.name}".lower())
    if len(full) <= 63:
        return full
    return f"{full[:54].rstrip('-')}-{hashlib.sha256(full.encode()).hexdigest()[:8]}"


def labels(spec: Spec, env: EnvironmentSpec) -> dict[str, str]:
    """The labels that find what cd4ml made for one environment: by project too, so that a
    clean-up never matches another repository's containers."""
    return {"cd4ml.project": spec.project, "cd4ml.pipeline": spec.name,
            "cd4ml.environment": env.name}


# ----------------------------------------------------------------------------- quantities


def cpu_cores(value: str | None) -> float | None:
    """``"0.5"``, ``"2"`` or Kubernetes' ``"500m"`` as a number of cores."""
    if value is None:
        return None
    v = str(value).strip()
    try:
        cores = float(v[:-1]) / 1000 if v.endswith("m") else float(v)
    except ValueError:
        raise SpecError(f"environments: cpu: {value!r} is not a number of cores (e.g. 0.5 or 500m)") from None
    if cores <= 0:
        raise SpecError(f"environments: cpu: {value!r} must be more than 0")
    return cores


_MEM_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
              "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def memory_bytes(value: str | None) -> int | None:
    """``"512Mi"``, ``"1Gi"``, ``"256M"`` or a number of bytes, as bytes. Docker's one-letter
    units (``512m``) mean mebibytes there and are read so here, not as Kubernetes' milli."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = m.group(2).lower() if m else "?"
    if unit in ("k", "m", "g", "t") and m and m.group(2).islower():
        unit += "i"
    if not m or unit not in _MEM_UNITS:
        raise SpecError(f"environments: memory: {value!r} is not a size (e.g. 512Mi or 1Gi)")
    return int(float(m.group(1)) * _MEM_UNITS[unit])


#: the memory limit of every container cd4ml starts on a Docker engine when the environment
#: sets none: a model that leaks or a hostile request then fails its own container, not the host
DEFAULT_MEMORY = "1Gi"


def container_memory(spec: Spec) -> int:
    """The limit for a container of the model's image outside any environment (infra
    validation, its reference predictions): the largest the spec's environments allow."""
    return max((memory_bytes(e.memory or DEFAULT_MEMORY) or 0 for e in spec.environments),
               default=memory_bytes(DEFAULT_MEMORY) or 0)


def resources(env: EnvironmentSpec) -> dict[str, Any]:
    """The environment's cpu and memory in each target's notation (None where not set). On
    Docker (``memory_bytes``, ``memory_docker``) the memory is :data:`DEFAULT_MEMORY` when the
    environment sets none; Kubernetes keeps the namespace's defaults (``memory_k8s`` None)."""
    cores = cpu_cores(env.cpu)
    mem = memory_bytes(env.memory or DEFAULT_MEMORY)
    return {
        "cpu_cores": cores,
        "nano_cpus": int(cores * 1e9) if cores else None,
        "cpu_k8s": (f"{round(cores * 1000)}m" if cores else None),
        "memory_bytes": mem,
        "memory_k8s": (_k8s_memory(mem) if mem and env.memory else None),
        "memory_docker": (f"{mem // 2**20}M" if mem and mem % 2**20 == 0 else (f"{mem}b" if mem else None)),
    }


def _k8s_memory(n: int) -> str:
    for suffix, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


# ----------------------------------------------------------------------------- rendering


def pinned(image: str, digest: str | None = None, image_id: str | None = None,
           local: bool = False) -> str:
    """The one exact image: ``repo@digest`` when it was pushed; on the local engine (``local``)
    else its image ID. Never a tag alone where an identity is known: a tag can be moved by
    anyone (``docker tag other cd4ml/wine:2``)."""
    if "@" in image:
        return image
    if digest:
        repo = digest.split("@")[0] if "@" in digest else image.rsplit(":", 1)[0]
        return f"{repo}@{digest.split('@')[-1]}"
    if local and image_id:
        return image_id
    return image


def context(spec: Spec, env: EnvironmentSpec, model: ModelVersion, image: str, *,
            digest: str | None = None, proxy_image: str | None = None,
            container_port: int = CONTAINER_PORT, image_id: str | None = None) -> dict[str, Any]:
    """Every variable a template may use (the templates' headers list them)."""
    name = resource_name(spec, env)
    # a cluster pulls: only a digest pins there; a Docker engine runs what it holds, by ID
    from cd4ml.release.targets.front import FRONT_PORT, default_image

    image_pinned = pinned(image, digest, image_id, local=env.target != "kubernetes")
    front = swarm_front(container_port)
    return {
        "project": spec.project,
        "pipeline": spec.name,
        "env": env,
        "environment": env.name,
        "target": env.target,
        "name": name,
        "model": {"id": model.id, "version": model.version, "ref": model.ref,
                  "sha256": model.sha256, "task": model.task},
        "image": image,
        "image_digest": digest,
        "image_id": image_id,
        "image_pinned": image_pinned,
        "container_port": container_port,
        "replicas": env.replicas,
        "port": env.port,
        "host": env.host,
        "namespace": env.namespace,
        "autoscale": dict(env.autoscale) if env.autoscale else None,
        "health_timeout": env.health_timeout,
        "healthcheck": env.healthcheck,
        "resources": resources(env),
        "labels": labels(spec, env),
        "proxy_image": proxy_image or default_image(base_image(spec)),
        # the host directory the model containers write their prediction logs to
        "prediction_logs": str(prediction_log_dir(spec.project, spec.name, env.name)),
        "front_file": FRONT_FILE,
        # swarm configs are immutable: a changed front gets a new name, an unchanged one keeps it
        "front_config": f"{name}-front-{hashlib.sha256(front.encode()).hexdigest()[:12]}",
        "front_port": FRONT_PORT,
    }


def swarm_front(container_port: int) -> str:
    """The Swarm front's nginx configuration: every request to the model service's tasks."""
    from cd4ml.release.targets.front import SWARM_RESOLVER, Routes, nginx_conf

    return nginx_conf(Routes(stable=f"model:{container_port}"), resolver=SWARM_RESOLVER)


def base_image(spec: Spec) -> str:
    """The model image's base, from which cd4ml builds its front image (cd4ml-front)."""
    return os.environ.get("CD4ML_BASE_IMAGE") or spec.image.base


def render(spec: Spec, env: EnvironmentSpec | str, model: ModelVersion | None, image: str, *,
           digest: str | None = None, proxy_image: str | None = None,
           container_port: int = CONTAINER_PORT, image_id: str | None = None) -> Rendered:
    """Render every template of the environment's target, user overrides first. ``model``
    None renders an image no model version of the store is known for (``render --image``
    before the first model)."""
    import jinja2

    if isinstance(env, str):
        env = spec.environment(env)
    ctx = context(spec, env, model or _unknown_model(spec), image, digest=digest,
                  proxy_image=proxy_image, container_port=container_port, image_id=image_id)
    templates: dict[str, Path] = {}
    for d in template_dirs(spec, env.target):
        for p in sorted(d.glob("*.j2")):
            templates[p.name[: -len(".j2")]] = p
    if not templates:
        raise SpecError(f"no templates for target {env.target!r} (looked in "
                        f"{', '.join(str(d) for d in template_dirs(spec, env.target))}); reinstall cd4ml")
    jenv = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    jenv.filters["q"] = _quote
    files: dict[str, str] = {}
    sources: dict[str, Path] = {}
    for fname, path in templates.items():
        try:
            text = jenv.from_string(path.read_text(encoding="utf-8")).render(**ctx)
        except jinja2.TemplateSyntaxError as e:
            raise SpecError(f"{path}:{e.lineno}: template syntax error: {e.message}") from None
        except jinja2.UndefinedError as e:
            raise SpecError(f"{path}: {e.message}; the variables are listed in the header of "
                            f"cd4ml's infra/{env.target}/{path.name}") from None
        if text.strip():
            files[fname] = text
            sources[fname] = path
    if env.target == "swarm":
        files[FRONT_FILE] = swarm_front(container_port)
    return Rendered(target=env.target, environment=env.name, name=ctx["name"], files=files,
                    sources=sources, context=ctx)


def _unknown_model(spec: Spec) -> Any:
    """A stand-in for the model version when only an image is given: the templates show what
    is not known yet as "unknown" rather than inventing a version."""
    from types import SimpleNamespace

    return SimpleNamespace(id=None, version="unknown", ref=f"{spec.name}:unknown", sha256="unknown",
                           task=spec.model.task)


def _quote(value: Any) -> str:
    """A scalar as a double-quoted YAML string (JSON's quoting is valid YAML)."""
    return json.dumps("" if value is None else str(value))
