"""Deploys under load: a steady stream of predictions to 127.0.0.1 while an environment gets a
new version, a version whose /ready never turns healthy, and a rollback, on the local and the
Swarm targets. Real cd4ml images (cd4ml.release.build), a throwaway store and artifacts directory.

Prints, per target: predictions sent and failed (target: 0 failed), latency p50/p99/max, the
seconds each action took, and the rollback's time to serving (the old version answering again;
target: < 10 s).

The canary scenario (``--targets ...,canary``: on the local target, strategy canary with steps
10, 50, 100) releases v2 under the same stream, then a version trained on shuffled labels
(infra-valid, wrong), and prints beside the blue/green figures above: failed predictions
(target: 0), each step's verdict and seconds, whether the bad version was stopped at its first
step, and the time from the decision to abort to all traffic on stable (target: <= 2 s).

Run: python bench/bench_deploy.py [--targets local,swarm,canary] [--seconds-between 2]
     (needs the Docker engine: scripts/docker-up.sh; for swarm, this engine becomes a single-node
     Swarm for the run if it is not one, and leaves it afterwards)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PORTS = {"local": 18310, "swarm": 18311, "canary": 18312}


def world(tmp: Path, canary: bool = False):
    """Spec, store and images: v1 and v2 built and validated, v3 never ready, and with
    ``canary`` v4 trained on shuffled labels, built and validated."""
    import yaml

    from cd4ml.integrations.docker import client
    from cd4ml.release.build import build
    from cd4ml.spec import load_spec
    from cd4ml.store import Store
    from tests.fixtures.deploy import _derived
    from tests.helpers import train_version, wine_spec_dict

    raw = wine_spec_dict()
    raw["image"]["repository"] = "cd4ml-bench/deploy-wine"
    raw["environments"] = {
        "local": {"target": "local", "port": PORTS["local"], "health_timeout": 15},
        # a timeout, not a figure: a Swarm candidate is scheduled, started and loads its model
        # within it, which on a loaded machine takes more than 15 s (the run then fails)
        "swarm": {"target": "swarm", "port": PORTS["swarm"], "health_timeout": 60,
                  "healthcheck": False},
        "canary": {"target": "local", "port": PORTS["canary"], "health_timeout": 30,
                   "strategy": "canary", "canary": {"steps": [10, 50, 100], "interval": 5}},
    }
    spec_path = tmp / "wine.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    os.environ["CD4ML_ARTIFACTS"] = str(tmp / "artifacts")
    if os.environ.get("PIP_CERT") and not os.environ.get("CD4ML_BUILD_CA_BUNDLE"):
        os.environ["CD4ML_BUILD_CA_BUNDLE"] = os.environ["PIP_CERT"]
    spec = load_spec(spec_path)
    store = Store(f"sqlite:///{tmp / 'store.db'}")
    versions = {n: train_version(spec, store, seed=n) for n in (1, 2, 3)}
    for n in (1, 2):
        t0 = time.perf_counter()
        result = build(spec, store, versions[n], latency_requests=20)
        print(f"built {result.reference} in {time.perf_counter() - t0:.1f} s "
              f"(infra validation {'passed' if result.infra.passed else 'FAILED'})")
    never = _derived(client(), f"{spec.image.repository}:2", f"{spec.image.repository}:3-never-ready",
                     'CMD ["python", "-m", "http.server", "8080"]')
    store.record_image(versions[3].id, never[0], never[1], never[2], "passed")
    if canary:
        from tests.canary_world import train_shuffled

        versions[4] = train_shuffled(spec, store, tmp, seed=4)
        result = build(spec, store, versions[4], latency_requests=20)
        print(f"built {result.reference} (trained on shuffled labels; infra validation "
              f"{'passed' if result.infra.passed else 'FAILED'})")
    frame = __import__("pandas").read_csv(spec.data.path)
    inputs = [i["name"] for i in versions[1].signature["inputs"]]
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in frame[inputs].iloc[0].items()}
    return spec, store, row


def run_target(spec, store, row, env_name: str, pause: float) -> None:
    import dataclasses

    from cd4ml.release.deploy import DeployFailed, deploy, rollback
    from cd4ml.release.targets import get_target
    from tests.fixtures.deploy import Load

    env = spec.environment(env_name)
    # each target measured on its own: as the first environment, so that the release policy
    # does not ask for the version to run in the other one first
    spec = dataclasses.replace(spec, environments=(env,))
    target = get_target(env)
    target.teardown(spec, env)
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        deploy(spec, store, env_name, 1)
        timings["first deploy (v1)"] = time.perf_counter() - t0
        with Load(env.port, row, limit=600) as load:
            time.sleep(pause)
            t0 = switching = time.perf_counter()
            deploy(spec, store, env_name, 2)
            timings["deploy v2 (healthy)"] = time.perf_counter() - t0
            time.sleep(pause)
            t0 = time.perf_counter()
            with contextlib.suppress(DeployFailed):
                deploy(spec, store, env_name, 3)
            timings["deploy v3 (never ready, refused)"] = time.perf_counter() - t0
            time.sleep(pause)
            t0 = rolling = time.perf_counter()
            rollback(spec, store, env_name)
            timings["rollback to v1"] = time.perf_counter() - t0
            since = load.serving_since(1, t0)
            to_serving = since - t0 if since is not None else float("nan")
            time.sleep(pause)
        lat = sorted(load.latencies) or [0.0]
        print(f"\n== {env_name} ({env.target}) ==")
        print(f"predictions: {load.ok + len(load.failed)} sent, {len(load.failed)} failed")
        print(f"latency ms: p50 {1000 * lat[len(lat) // 2]:.1f}, p99 {load.p99_ms:.1f}, "
              f"max {load.max_ms:.1f}")
        for what, seconds in timings.items():
            print(f"{what:<34} {seconds:6.2f} s")
        print(f"rollback time to serving: {to_serving:.2f} s (target < 10 s)")
        print(f"versions seen by the client, in order: {load.versions}")
        overlap = max(load.both_answered(1, 2, switching, rolling), load.both_answered(2, 1, rolling))
        print(f"both versions answered during a switch for {1000 * overlap:.0f} ms "
              "(the front's reload: old workers accept beside the new ones)")
        for failure in load.failed[:5]:
            print(f"  failed: {failure}")
    finally:
        target.teardown(spec, env)


def run_canary(spec, store, env_name: str, pause: float) -> None:
    """v1, then v2 by canary (good), then v4 (shuffled labels) by canary, under a stream."""
    import dataclasses

    from cd4ml.release.deploy import DeployFailed, deploy
    from cd4ml.release.targets import get_target
    from tests.canary_world import Stream, input_rows

    env = spec.environment(env_name)
    spec = dataclasses.replace(spec, environments=(env,))
    target = get_target(env)
    target.teardown(spec, env)
    try:
        deploy(spec, store, env_name, 1)
        stream = Stream(f"http://127.0.0.1:{env.port}", input_rows(spec, store.model(spec.name, 1)),
                        limit_seconds=600)
        try:
            time.sleep(pause)
            t0 = time.perf_counter()
            good = deploy(spec, store, env_name, 2)
            good_s = time.perf_counter() - t0
            time.sleep(pause)
            t0 = time.perf_counter()
            try:
                deploy(spec, store, env_name, 4)
                bad = None
            except DeployFailed as e:
                bad = e.result
            bad_s = time.perf_counter() - t0
            time.sleep(pause)
        finally:
            stream.stop()
        print(f"\n== {env_name} (local, strategy canary, steps {list(env.rollout.steps)}, "
              f"interval {env.rollout.interval:g} s) ==")
        print(f"predictions: {stream.sent} sent, {len(stream.failed)} failed (target 0); "
              f"answers by version: {stream.versions}")
        print(f"canary of v2 (good): {good.status} in {good_s:.1f} s")
        for step in good.details.get("steps", []):
            print(f"  {step['status']:<7} {step['seconds']:6.2f} s  {step['summary']}")
        if bad is None:
            print("canary of v4 (shuffled labels): NOT STOPPED (it was promoted)")
        else:
            steps = bad.details.get("steps", [])
            print(f"canary of v4 (shuffled labels): {bad.status} in {bad_s:.1f} s, stopped at "
                  f"step {len(steps)} of {len(env.rollout.steps) - 1} (target: step 1)")
            for step in steps:
                print(f"  {step['status']:<7} {step['seconds']:6.2f} s  {step['summary']}")
            print(f"abort decision -> all traffic on stable: {bad.details.get('abort_seconds')} s "
                  f"(target <= 2 s; the front's switch {bad.details.get('switch_seconds')} s)")
        for failure in stream.failed[:5]:
            print(f"  failed: {failure}")
    finally:
        target.teardown(spec, env)


def main() -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--targets", default="local,swarm,canary",
                   help="local, swarm (blue/green) and canary (local, strategy canary)")
    p.add_argument("--seconds-between", type=float, default=2.0,
                   help="steady load before and after each action")
    args = p.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    from cd4ml.integrations.docker import client

    joined = False
    if "swarm" in targets and (client().info().get("Swarm") or {}).get("LocalNodeState") != "active":
        subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=True,
                       capture_output=True)
        joined = True
    try:
        with tempfile.TemporaryDirectory(prefix="cd4ml-bench-deploy-") as tmp:
            spec, store, row = world(Path(tmp), canary="canary" in targets)
            try:
                for t in targets:
                    # each scenario from the same start: the one before marked v2 (rolled back)
                    # and v3 (refused) bad, and the release policy refuses a bad version
                    for model in store.models(spec.name):
                        store.set_model_flags(model.id, bad=False)
                    if t == "canary":
                        run_canary(spec, store, t, args.seconds_between)
                    else:
                        run_target(spec, store, row, t, args.seconds_between)
            finally:
                store.close()
                for tag in ("1", "2", "3-never-ready", "4"):  # untag; the layers stay as build cache
                    subprocess.run(["docker", "rmi", "--no-prune", f"{spec.image.repository}:{tag}"],
                                   capture_output=True, check=False)
    finally:
        if joined:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
