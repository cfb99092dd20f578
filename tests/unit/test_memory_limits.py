"""Every container cd4ml starts on a Docker engine has a memory limit: the environment's
``memory``, else cd4ml's default; infra validation's containers get the largest of the spec's
environments. Kubernetes keeps the namespace's defaults when the spec sets none."""

from __future__ import annotations

import dataclasses

import yaml

from cd4ml.release.render import DEFAULT_MEMORY, container_memory, memory_bytes, render
from tests.helpers import model_record

DEFAULT = memory_bytes(DEFAULT_MEMORY)


def _env(spec, target: str, **kw):
    return dataclasses.replace(spec.environment("staging"), target=target, memory=None, **kw)


def test_a_local_model_container_without_memory_gets_the_default(spec):
    r = render(spec, _env(spec, "local", port=18250), model_record(), "cd4ml/wine:3",
               proxy_image="python:3.11-slim")
    assert yaml.safe_load(r.files["containers.yml"])["model"]["memory"] == DEFAULT == 2**30


def test_a_swarm_model_without_memory_gets_the_default(spec):
    r = render(spec, _env(spec, "swarm", port=18251), model_record(), "cd4ml/wine:3",
               proxy_image="python:3.11-slim")
    limits = yaml.safe_load(r.files["stack.yml"])["services"]["model"]["deploy"]["resources"]["limits"]
    assert limits == {"memory": "1024M"}


def test_kubernetes_keeps_the_namespace_default_when_none_is_set(spec):
    env = dataclasses.replace(_env(spec, "kubernetes"), namespace="ml")
    r = render(spec, env, model_record(), "cd4ml/wine:3")
    deployment = next(d for d in yaml.safe_load_all(r.files["deployment.yaml"]) if d)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "limits" not in container["resources"]


def test_infra_validation_gets_the_largest_environment_limit(spec):
    envs = tuple(dataclasses.replace(e, memory=m) for e, m in zip(spec.environments, ("512Mi", "2Gi"),
                                                                   strict=False))
    assert container_memory(dataclasses.replace(spec, environments=envs)) == 2 * 2**30
    none_set = tuple(dataclasses.replace(e, memory=None) for e in spec.environments)
    assert container_memory(dataclasses.replace(spec, environments=none_set)) == DEFAULT
