"""kill -9 of ``cd4ml deploy`` mid-deploy does not wedge the environment: the next action takes the
dead one's lock over at once, marks its deployment record failed and removes the container it
had started, while the version that served before goes on serving through the front."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from cd4ml.release.deploy import deploy
from cd4ml.release.render import resource_name
from cd4ml.states import DeploymentStatus
from tests.fixtures.deploy import PORTS, ROOT, Load, served_version
from tests.integration.test_deploy_local import clean  # noqa: F401 -- the fixture

pytestmark = pytest.mark.docker


def _patient(world):
    """The deploy world's spec with a staging environment that waits long for a server to get
    ready (a loaded CI machine), beside it: the same project and pipeline."""
    raw = yaml.safe_load(world.spec_path.read_text())
    raw["environments"]["staging"]["health_timeout"] = 90
    path = world.spec_path.with_name("wine-patient.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _killed_mid_deploy(world, spec_path, docker_client, container: str) -> None:
    """Start ``cd4ml deploy`` of v3 (its server never gets ready, so the deploy waits) and
    kill -9 it once its new container runs."""
    proc = subprocess.Popen([sys.executable, "-m", "cd4ml", "deploy", "--env", "staging", "3",
                             "-p", str(spec_path), "--store", world.url],
                            env=world.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if docker_client.containers.list(filters={"name": container}):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the deploy ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_killed_deploy_leaves_nothing_that_blocks_the_next_one(deploy_world, clean,  # noqa: F811
                                                                  docker_client):
    from cd4ml.spec import load_spec

    path = _patient(deploy_world)
    spec = load_spec(path)
    env = spec.environment("staging")
    assert resource_name(spec, env) == resource_name(clean, clean.environment("staging"))
    with deploy_world.store() as store:
        assert deploy(spec, store, "staging", 1).status == "healthy"
    orphan = f"{resource_name(spec, env)}-green"  # the colour a deploy after blue starts
    with Load(PORTS["staging"], deploy_world.row) as load:
        load.wait_for_requests()
        _killed_mid_deploy(deploy_world, path, docker_client, orphan)
        with deploy_world.store() as store:
            left = store.deployments(spec.name, "staging", limit=1)[0]
            assert left.status == DeploymentStatus.IN_PROGRESS  # what the killed deploy left
            assert store.held_lock(f"deploy:{spec.name}:staging") is not None

        t0 = time.monotonic()
        again = deploy_world.cli("deploy", "--env", "staging", "1", spec=path)
        took = time.monotonic() - t0
        load.wait_for_requests()
        out = again.stdout + again.stderr
        assert again.returncode == 0, out
        assert "whose process is gone: taken over" in out, out
        assert f"deployment {left.id} was left in progress" in out and orphan in out, out
        assert "already serves" in out  # v1 was never replaced: nothing else to do
        assert not docker_client.containers.list(all=True, filters={"name": orphan})
        with deploy_world.store() as store:
            marked = store.deployment(left.id)
            assert marked.status == DeploymentStatus.FAILED
            assert "abandoned" in marked.details["error"] and "never finished" in marked.details["error"]
            assert store.held_lock(f"deploy:{spec.name}:staging") is None

        t1 = time.monotonic()
        assert deploy_world.cli("deploy", "--env", "staging", "2", spec=path).returncode == 0
        assert deploy_world.cli("rollback", "--env", "staging", spec=path).returncode == 0
        load.wait_for_requests()
        after = time.monotonic() - t1
    print(f"\nafter kill -9 mid-deploy: next deploy {took:.1f} s; deploy + rollback {after:.1f} s; "
          f"{load.ok} predictions, {len(load.failed)} failed")
    assert took < 60  # the lock's expiry was 15 minutes
    assert load.failed == [], load.failed[:5]
    assert served_version(PORTS["staging"]) == 1
