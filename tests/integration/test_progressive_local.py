"""The progressive-delivery story on the local Docker and Swarm targets: real cd4ml images behind
the nginx front (its split/unsplit: this file needs the "front" work merged), a steady stream of
predictions, and the store, under the Docker lock.

    a good canary (v2)      goes to 100 % with 0 failed requests
    a bad canary            a model trained on shuffled labels (infra-valid, wrong): stopped by
                            the analysis at its first step, 0 failed requests, the abort
                            recorded and timed (decision -> all traffic on stable <= 2 s)
    a shadow of the bad one changes no client-visible answer and is refused
"""

from __future__ import annotations

import time

import pytest
import yaml

from cd4ml.release.deploy import DeployFailed, deploy
from cd4ml.states import DeploymentStatus, StepKind, StepStatus
from tests.canary_world import Stream, input_rows, logged_answers, train_shuffled

#: ports below the ephemeral range (32768-60999), where a client connection could hold one
PORTS = {"canary": 19131, "shadow": 19132, "swarm": 19151}


@pytest.fixture(scope="module")
def story(deploy_world, tmp_path_factory):
    """deploy_world's v1 and v2 images, a bad version built by cd4ml from shuffled labels, and a
    spec whose environments release by canary and by shadow."""
    from cd4ml.release.build import build
    from cd4ml.spec import load_spec

    tmp = tmp_path_factory.mktemp("progressive-local")
    raw = yaml.safe_load(deploy_world.spec_path.read_text())
    # latency judged loosely: eight test suites share two cores here, and a p99 off by one
    # histogram bucket is noise, not the candidate's doing
    analysis = {"min_requests": 15, "p99_floor_ms": 250}
    raw["environments"] = {
        "canary": {"target": "local", "port": PORTS["canary"], "health_timeout": 60,
                   "strategy": "canary", "canary": {"steps": [20, 100], "interval": 3,
                                                    "max_wait": 60}, "analysis": analysis},
        "shadow": {"target": "local", "port": PORTS["shadow"], "health_timeout": 60,
                   "strategy": "shadow", "shadow": {"duration": 4}, "analysis": analysis},
        # this engine's Swarm cannot health-check tasks ("network sandbox does not exist")
        "swarm": {"target": "swarm", "port": PORTS["swarm"], "health_timeout": 60,
                  "healthcheck": False, "strategy": "canary",
                  "canary": {"steps": [20, 100], "interval": 3, "max_wait": 60},
                  "analysis": analysis},
    }
    path = deploy_world.spec_path.with_name("wine-progressive.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(path)
    with deploy_world.store() as store, pytest.MonkeyPatch.context() as mp:
        for k in ("CD4ML_ARTIFACTS", "CD4ML_BUILD_CA_BUNDLE"):
            if k in deploy_world.env:
                mp.setenv(k, deploy_world.env[k])
        bad = train_shuffled(spec, store, tmp)
        built = build(spec, store, bad, latency_requests=20)
        assert built.infra.passed, built.infra
    yield spec, bad.version
    from cd4ml.release.targets import get_target

    for name in ("canary", "shadow"):
        get_target(spec.environment(name)).teardown(spec, spec.environment(name))


def _alone(spec, name):
    """The spec with only ``name``: the first environment, so the order rule admits any version."""
    import dataclasses

    return dataclasses.replace(spec, environments=(spec.environment(name),))


def test_canary_good_then_bad_under_load(story, deploy_world):
    _good_then_bad(story, deploy_world, "canary")


def test_swarm_canary_good_then_bad_under_load(story, deploy_world, swarm):
    from cd4ml.release.targets import get_target

    spec = story[0]
    try:
        _good_then_bad(story, deploy_world, "swarm")
        # the same stack, v2 now stable: a shadow needs no world of its own
        _shadow_refused(story, deploy_world, "swarm", stable=2, docker=swarm)
    finally:
        get_target(spec.environment("swarm")).teardown(spec, spec.environment("swarm"))


def _good_then_bad(story, deploy_world, name):
    spec, bad = story
    spec = _alone(spec, name)
    with deploy_world.store() as store:
        for v in (1, 2, bad):  # a test before may have marked one bad
            store.set_model_flags(store.model(spec.name, v).id, bad=False)
        assert deploy(spec, store, name, 1).status == DeploymentStatus.HEALTHY
        stream = Stream(f"http://127.0.0.1:{PORTS[name]}",
                        input_rows(spec, deploy_world.versions[1]))
        try:
            time.sleep(1)
            good = deploy(spec, store, name, 2)
            with pytest.raises(DeployFailed) as failed:
                deploy(spec, store, name, bad)
            time.sleep(1)
        finally:
            stream.stop()
        assert good.status == DeploymentStatus.HEALTHY, good.message
        assert [s["status"] for s in good.details["steps"]] == ["passed"]
        result = failed.value.result
        steps = store.deployment_steps(result.deployment_id)
        dep = store.deployment(result.deployment_id)
        current = store.current_deployment(spec.name, name)
    print(f"\n{name}: stream: {stream.sent} predictions, {len(stream.failed)} failed; versions "
          f"answering: {stream.versions}")
    print(f"bad canary: {steps[0].details['summary']}")
    print(f"abort decision -> all traffic on stable: {dep.details['abort_seconds']:.3f} s "
          f"(with the candidate drained and removed: {dep.details['abort_total_seconds']:.3f} s)")
    assert stream.failed == [], stream.failed[:3]
    assert result.status == DeploymentStatus.ROLLED_BACK
    assert [(s.kind, s.weight, s.status) for s in steps] == [
        (StepKind.CANARY, 20, StepStatus.FAILED)]
    assert dep.details["abort_seconds"] <= 2.0
    assert current.model_version_id == deploy_world.versions[2].id
    assert set(stream.versions) <= {1, 2, bad}


def test_a_shadow_of_the_bad_model_changes_no_answer(story, deploy_world, docker_client):
    spec = _alone(story[0], "shadow")
    with deploy_world.store() as store:
        assert deploy(spec, store, "shadow", 1).status == DeploymentStatus.HEALTHY
    _shadow_refused(story, deploy_world, "shadow", stable=1, docker=docker_client)


def _shadow_refused(story, deploy_world, name, *, stable, docker):
    """A shadow of the bad version in ``name`` (where ``stable`` serves) under a steady stream:
    every answer is stable's own to that request, mirrored copies reach the shadow, the
    analysis refuses it, its servers go and the refusal is recorded, 0 failed requests."""
    import dataclasses

    from cd4ml.release.strategy import Strategy

    spec, bad = story
    spec = _alone(spec, name)
    env = spec.environments[0]
    env = dataclasses.replace(env, rollout=dataclasses.replace(
        env.rollout, strategy=Strategy.SHADOW, shadow_duration=4.0))
    spec = dataclasses.replace(spec, environments=(env,))
    with deploy_world.store() as store:
        store.set_model_flags(store.model(spec.name, bad).id, bad=False)
        stream = Stream(f"http://127.0.0.1:{PORTS[name]}",
                        input_rows(spec, deploy_world.versions[1]))
        try:
            with pytest.raises(DeployFailed) as failed:
                deploy(spec, store, name, bad)
        finally:
            stream.stop()
        result = failed.value.result
        (step,) = store.deployment_steps(result.deployment_id)
        dep = store.deployment(result.deployment_id)
        current = store.current_deployment(spec.name, name)
    answered = logged_answers(spec, name, stable)
    mirrored = logged_answers(spec, name, bad).keys() & stream.answers.keys()
    print(f"\n{name} shadow: {stream.sent} predictions, {len(stream.failed)} failed, "
          f"{len(mirrored)} mirrored to v{bad}; {step.details['summary']}")
    assert stream.failed == [] and stream.sent > 50, stream.failed[:3]
    assert stream.versions == {stable: len(stream.answers)}
    # no client saw the shadow: each answer is the one stable logged for that very request
    assert all(answered.get(rid) == label for rid, label in stream.answers.items())
    assert len(mirrored) >= 15
    assert (step.kind, step.status) == (StepKind.SHADOW, StepStatus.FAILED)
    assert step.analysis["mirrored"] and step.analysis["rows"]["matched"] >= 15
    assert dep.status == DeploymentStatus.ROLLED_BACK and result.status == dep.status
    assert store.model_by_id(dep.model_version_id).version == bad
    assert current.model_version_id == deploy_world.versions[stable].id
    # the shadow's servers are gone: Swarm's candidate service, or the local extra container
    owned = [f"cd4ml.pipeline={spec.name}", f"cd4ml.environment={name}"]
    if env.target == "swarm":
        assert docker.services.list(filters={"label": [*owned, "cd4ml.role=candidate"]}) == []
    else:
        assert len(docker.containers.list(filters={"label": [*owned, "cd4ml.role=model"]})) \
            == env.replicas
