"""The swarm target live on a single-node Swarm with real cd4ml images: a stack deploy, a release
refused by the pre-flight start, an update Swarm itself rolls back (failure_action: rollback), and
a rollback, under a steady stream of predictions that must all succeed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from cd4ml.release.deploy import DeployFailed, deploy, rollback
from cd4ml.release.render import render, resource_name
from cd4ml.release.state import history, status
from cd4ml.release.targets import NotHealthy
from cd4ml.release.targets.swarm import SwarmTarget
from tests.fixtures.deploy import PORTS, Load, logged, served_version

pytestmark = pytest.mark.docker


@pytest.fixture
def stack(deploy_world, swarm):
    spec = deploy_world.swarm_spec()
    env = spec.environment("swarm")
    target = SwarmTarget()
    target.teardown(spec, env)
    yield spec, env, target
    target.teardown(spec, env)
    with deploy_world.store() as store:
        with store.tx() as conn:
            from cd4ml.store import deployments

            conn.execute(deployments.delete().where(deployments.c.environment == "swarm"))
        for v in deploy_world.versions.values():
            store.set_model_flags(v.id, bad=False)


def test_swarm_rolling_updates_and_rollbacks_under_load(deploy_world, stack):
    import dataclasses

    spec, env, target = stack
    # a model server took ~10 s to get ready on the shared 2-core test machine: 20 s, not 12
    env = dataclasses.replace(env, health_timeout=20.0)
    spec = dataclasses.replace(spec, environments=(env,))
    port = PORTS["swarm"]
    with deploy_world.store() as store:
        first = deploy(spec, store, "swarm", 1)
        assert first.status == "healthy" and served_version(port) == 1
        service = target.client.services.get(f"{resource_name(spec, env)}_model").attrs["Spec"]
        update = service["UpdateConfig"]
        assert (update["Order"], update["FailureAction"]) == ("start-first", "rollback")
        front_tasks = _running_tasks(target, f"{resource_name(spec, env)}_front")

        with Load(port, deploy_world.row) as load:
            load.wait_for_requests()
            second = deploy(spec, store, "swarm", 2)
            load.wait_for_requests()

            # a release whose /ready never answers is refused before Swarm sees it
            with pytest.raises(DeployFailed, match="pre-flight.*not ready within") as never:
                deploy(spec, store, "swarm", 3)
            load.wait_for_requests()

            # a server that exits on start, past the pre-flight: Swarm rolls the update back
            v2, v4 = store.model(spec.name, 2), store.model(spec.name, 4)
            # by image ID, as cd4ml deploys them: the previous stack must be the very one that
            # runs (a tag would make Swarm restart v2's tasks when it is put back)
            current = store.current_deployment(spec.name, "swarm")
            img2, id2 = current.image_ref, current.details["image_id"]
            img4, id4 = store.images_for(v4.id)[0].reference, store.images_for(v4.id)[0].image_id
            proxy = target.proxy_image(spec, env, img4)
            with pytest.raises(NotHealthy) as crash:
                target.apply(render(spec, env, v4, img4, proxy_image=proxy, image_id=id4), timeout=60,
                             previous=render(spec, env, v2, img2, proxy_image=proxy, image_id=id2),
                             preflight=False)
            load.wait_for_requests()
            assert served_version(port) == 2

            back, took, to_serving = load.timed(lambda: rollback(spec, store, "swarm"), version=1)
        print(load.summary("swarm", took, to_serving), "steps", back.details.get("steps"))
        assert load.failed == [], load.failed[:5]
        assert load.versions[0] == 1 and load.versions[-1] == 1 and 2 in load.versions

        assert second.status == "healthy" and second.previous_version == 1
        assert never.value.result.status == "rolled_back"
        assert crash.value.restored is True
        # Swarm: the version rolled back to serves once its bridge container's model is loaded
        # (13.9 s measured, 12.8 s of it the server's start, on the shared machine); 20 s here
        assert back.version == 1 and to_serving < 20 and served_version(port) == 1
        assert store.model(spec.name, 2).bad and store.model(spec.name, 3).bad
        assert [(r.action, r.version, r.status) for r in history(spec, store, "swarm")] == [
            ("rollback", 1, "healthy"), ("deploy", 3, "rolled_back"), ("deploy", 2, "replaced"),
            ("deploy", 1, "replaced")]
        assert status(spec, store, "swarm")[0].healthy is True
        # the front's task never changed: it held the port through every change
        assert _running_tasks(target, f"{resource_name(spec, env)}_front") == front_tasks


def _running_tasks(target, service: str) -> set[str]:
    return {t["ID"] for t in target.client.services.get(service).tasks(
        filters={"desired-state": "running"})}


def test_rendered_stack_is_what_runs(deploy_world, stack, tmp_path):
    out = deploy_world.cli("render", "--env", "swarm", "1", "-o", str(tmp_path),
                           spec=deploy_world.swarm_spec_path)
    assert out.returncode == 0, out.stderr
    doc = yaml.safe_load((tmp_path / "stack.yml").read_text())
    with deploy_world.store() as store:
        (image,) = store.images_for(deploy_world.versions[1].id)
    # the exact image by ID: a tag can be moved by anyone
    assert doc["services"]["model"]["image"] == image.image_id
    assert doc["services"]["front"]["ports"][0]["published"] == PORTS["swarm"]
    # the front's nginx configuration, a Swarm config of the stack
    assert "resolver 127.0.0.11" in (tmp_path / "front.conf").read_text()


def test_swarm_split_mirror_and_unsplit_under_load(deploy_world, stack):
    import requests

    spec, env, target = stack
    port = PORTS["swarm"]
    with deploy_world.store() as store:
        assert deploy(spec, store, "swarm", 1).status == "healthy"
        releases = {}
        for n in (1, 2):
            image = store.images_for(deploy_world.versions[n].id)[0]
            releases[n] = render(spec, env, deploy_world.versions[n], image.reference,
                                 proxy_image=target.proxy_image(spec, env, image.reference),
                                 image_id=image.image_id)
    url = f"http://127.0.0.1:{port}/predict"
    body = {"instances": [deploy_world.row]}
    with Load(port, deploy_world.row) as load:
        load.wait_for_requests()
        target.split(releases[1], releases[2], weight=10, timeout=60)
        session = requests.Session()
        versions = [session.post(url, json=body, timeout=10).json()["model_version"]
                    for _ in range(300)]
        share = versions.count(2) / len(versions)
        print(f"\nswarm weight 10: {versions.count(2)} of {len(versions)} requests to the candidate")
        # split by a hash of each request's random id: about 10 %, not exactly
        assert 0.04 <= share <= 0.18, share

        target.split(releases[1], releases[2], weight=0, shadow=True, timeout=60)
        ids = [f"swarm-shadow-{i}-{time.time_ns()}" for i in range(20)]
        answers = [session.post(url, json=body, headers={"X-Request-ID": i}, timeout=10).json()
                   for i in ids]
        assert {a["model_version"] for a in answers} == {1}
        logs = Path(releases[1].context["prediction_logs"])
        assert logged(logs, ids, version=2) and logged(logs, ids, version=1)

        done = target.unsplit(releases[1], releases[2], timeout=60)
        load.wait_for_requests()
    print(f"swarm unsplit: all traffic on stable {done.details['switch_seconds']:.2f} s after the call")
    assert done.details["switch_seconds"] < 2.0
    assert load.failed == [], load.failed[:5]
    assert target._service(f"{resource_name(spec, env)}_candidate") is None
    assert served_version(port) == 1


def test_a_task_swarm_restarts_by_itself_fails_no_request(deploy_world, stack):
    """``docker kill`` of one of two model tasks under load: Swarm starts another, which the
    front resolves before its model is loaded; the front must send each request to a server
    that can take it, never pass on a loading task's 503."""
    import dataclasses

    spec, env, target = stack
    two = dataclasses.replace(env, replicas=2)
    with deploy_world.store() as store:
        image = store.images_for(deploy_world.versions[1].id)[0]
    rendered = render(spec, two, deploy_world.versions[1], image.reference,
                      proxy_image=target.proxy_image(spec, two, image.reference),
                      image_id=image.image_id)
    target.apply(rendered, timeout=60)
    service = f"{rendered.name}_model"
    with Load(PORTS["swarm"], deploy_world.row) as load:
        load.wait_for_requests()
        for _ in range(2):
            before = _running_tasks(target, service)
            victim = target.client.containers.list(
                filters={"label": f"com.docker.swarm.service.name={service}"})[0]
            victim.kill()
            t0 = time.monotonic()
            # Swarm notices, starts a new task (restart delay 2 s) and it loads its model
            while not _running_tasks(target, service) - before and time.monotonic() < t0 + 30:
                time.sleep(0.2)
            target._wait_tasks(service, rendered.context["image_pinned"], timeout=30, count=2)
            took = time.monotonic() - t0
            load.wait_for_requests(100)
    print(f"\nswarm task killed twice: {load.ok} predictions, {len(load.failed)} failed "
          f"{load.failed[:2]}; a new task ready {took:.1f} s after the kill")
    # no 503 of a task loading its model, no timeout on a task gone; only a request the
    # killed server held when it died may fail (sent, so never sent again)
    assert not [f for f in load.failed if "HTTP 502" not in f], load.failed[:5]
    assert len(load.failed) <= 2, load.failed[:5]

    # a deploy killed after starting its bridge, before routing to it: the next action's
    # clean-up removes it (a routed one stays until the next deploy replaces it)
    left = target._start_bridge(rendered, timeout=60)
    assert target.remove_orphans(spec, env, keep=set(), anything_current=True) == [left]
    assert target._bridges(rendered.context["labels"]) == []
