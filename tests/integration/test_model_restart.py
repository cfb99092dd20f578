"""A local model container that dies comes back by itself, and requests through the front recover:
one whose server crashes (killed from outside the engine: Docker's restart policy) and one that
is ``docker kill``ed (Docker never restarts those: the environment's keeper does). Failed
requests during each outage and the recovery time are printed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cd4ml.release.deploy import deploy
from cd4ml.spec import load_spec
from tests.fixtures.deploy import PORTS, Load, served_version
from tests.integration.test_deploy_killed import _patient
from tests.integration.test_deploy_local import clean  # noqa: F401 -- the fixture

pytestmark = pytest.mark.docker

RECOVERY = 45.0  # seconds: a restart plus the model's load on a busy CI machine


def _started(ctr) -> str:
    ctr.reload()
    return ctr.attrs["State"]["StartedAt"] if ctr.status == "running" else ""


def _outage(ctr, load: Load, kill) -> tuple[float, int]:
    """Kill ``ctr`` with ``kill``; (seconds until it runs again and a prediction through the
    front succeeds, predictions that failed meanwhile)."""
    load.wait_for_requests()
    before, failed = _started(ctr), len(load.failed)
    t0 = time.monotonic()
    kill(ctr)
    while time.monotonic() - t0 < RECOVERY:
        if _started(ctr) not in ("", before):
            ok = load.ok
            load.wait_for_requests(5, timeout=RECOVERY)
            if load.ok > ok:
                return time.monotonic() - t0, len(load.failed) - failed
        time.sleep(0.1)
    pytest.fail(f"{ctr.name} did not come back within {RECOVERY:g} s (status {ctr.status})")


def _crash(ctr) -> None:
    # the server's own process dies (as by the kernel's OOM killer): not a stop through the engine
    os.kill(int(ctr.attrs["State"]["Pid"]), signal.SIGKILL)


def test_a_killed_model_container_comes_back_and_requests_recover(deploy_world, clean,  # noqa: F811
                                                                  docker_client):
    spec = load_spec(_patient(deploy_world))
    with deploy_world.store() as store:
        assert deploy(spec, store, "staging", 1).status == "healthy"
    owner = [f"{k}={v}" for k, v in {"cd4ml.project": spec.project, "cd4ml.pipeline": spec.name,
                                     "cd4ml.environment": "staging"}.items()]
    (model,) = docker_client.containers.list(filters={"label": ["cd4ml.role=model", *owner]})
    assert model.attrs["HostConfig"]["Memory"] > 0  # every model container has a memory limit
    if not os.path.exists(f"/proc/{model.attrs['State']['Pid']}"):
        pytest.skip("the engine's processes are not visible from here: cannot crash the server")
    with Load(PORTS["staging"], deploy_world.row) as load:
        crash = _outage(model, load, _crash)
        killed = _outage(model, load, lambda c: c.kill())
    print(f"\nserver crash: back in {crash[0]:.1f} s, {crash[1]} failed requests; "
          f"docker kill: back in {killed[0]:.1f} s, {killed[1]} failed requests "
          f"({load.ok} predictions in all)")
    assert served_version(PORTS["staging"]) == 1
