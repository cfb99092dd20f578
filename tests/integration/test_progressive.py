"""Canary and shadow releases through ``cd4ml.release.deploy`` with real model servers and a
steady stream of predictions (tests/canary_world.py): a good canary reaches 100 % with no failed
request, a canary trained on shuffled labels is stopped at its first step, a shadow of it
changes no client-visible answer and is refused, ``rollback`` stops a canary under way; each
step recorded, shown by history/status/lineage and reported to GitHub."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest

from cd4ml.errors import DeployError
from cd4ml.events import listening
from cd4ml.release.deploy import DeployFailed, deploy, rollback
from cd4ml.release.ghdeploy import github_listener
from cd4ml.release.state import history, status
from cd4ml.release.strategy import AnalysisSpec, RolloutSpec, Strategy
from cd4ml.states import DeploymentStatus, StepKind, StepStatus
from tests.canary_world import Front, ProcessTarget, Stream, input_rows, train_models
from tests.integration.test_deployment_ref import _reporter


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(spec, store url, {version: model}) shared by the tests; each test uses an environment
    of its own name, so that their deployments never meet."""
    from cd4ml.spec import load_spec
    from cd4ml.store import Store
    from tests.integration.test_analysis import ROOT

    tmp = tmp_path_factory.mktemp("progressive")
    os.environ["CD4ML_ARTIFACTS"] = str(tmp / "artifacts")
    try:
        spec = load_spec(ROOT / "pipelines" / "wine.yaml")
        url = f"sqlite:///{tmp / 'store.db'}"
        with Store(url) as store:
            found = train_models(spec, store, tmp)
    finally:
        del os.environ["CD4ML_ARTIFACTS"]
    return spec, url, found


@pytest.fixture
def world(models):
    from cd4ml.store import Store

    spec, url, found = models
    front = Front()
    with Store(url) as store:
        for m in found.values():  # a test before may have marked one bad
            store.set_model_flags(m.id, bad=False)
        target = ProcessTarget(store, front)
        try:
            yield spec, store, found, target
        finally:
            target.teardown()
            front.close()


def _spec(spec, name, **rollout):
    """``spec`` with one environment ``name`` (the first: the order rule admits any version)."""
    base = {"steps": (20, 50, 100), "interval": 2.0, "shadow_duration": 4.0, "max_wait": 60.0,
            "analysis": AnalysisSpec(min_requests=15)}
    env = dataclasses.replace(spec.environments[0], name=name, requires_approval=False,
                              rollout=RolloutSpec(**{**base, **rollout}))
    return dataclasses.replace(spec, environments=(env,))


def _serve_v1(spec, store, target, name):
    r = deploy(spec, store, name, 1, target=target)  # nothing served: all traffic at once
    assert r.status == DeploymentStatus.HEALTHY
    return Stream(target.front.url, input_rows(spec, store.model(spec.name, 1)))


def test_a_good_canary_reaches_all_traffic_without_a_failed_request(world):
    spec, store, models, target = world
    spec = _spec(spec, "canary-good", strategy=Strategy.CANARY)
    stream = _serve_v1(spec, store, target, "canary-good")
    try:
        result = deploy(spec, store, "canary-good", 2, target=target)
    finally:
        stream.stop()
    assert result.status == DeploymentStatus.HEALTHY, result.message
    assert stream.sent > 100 and stream.failed == [], stream.failed[:3]
    assert target.calls == [("split", 20), ("split", 50), ("unsplit", 2)]
    steps = store.deployment_steps(result.deployment_id)
    assert [(s.kind, s.weight, s.status) for s in steps] == [
        (StepKind.CANARY, 20, StepStatus.PASSED), (StepKind.CANARY, 50, StepStatus.PASSED)]
    assert steps[0].analysis["passed"] and steps[0].analysis["rows"]["candidate"] >= 15
    assert {c["name"] for c in steps[0].analysis["checks"]} >= {
        "traffic", "error_rate", "client_errors", "p99_latency", "agreement", "shift"}
    assert result.details["strategy"] == "canary"
    assert store.current_deployment(spec.name, "canary-good").model_version_id == models[2].id
    (latest, *_) = history(spec, store, "canary-good")
    assert latest.strategy == "canary" and [s["status"] for s in latest.steps] == ["passed"] * 2


def test_a_canary_trained_on_shuffled_labels_is_stopped_at_its_first_step(world, github_server):
    spec, store, models, target = world
    spec = _spec(spec, "canary-bad", strategy=Strategy.CANARY)
    stream = _serve_v1(spec, store, target, "canary-bad")
    gh = github_server
    try:
        with listening(github_listener(_reporter(gh, gh.add_commit(author="sam")))), \
                pytest.raises(DeployFailed) as failed:
            deploy(spec, store, "canary-bad", 3, target=target)
        time.sleep(1)  # the stream goes on after the abort: stable answers it
    finally:
        stream.stop()
    result = failed.value.result
    assert result.status == DeploymentStatus.ROLLED_BACK
    assert "stopped by its analysis" in result.message and "agreement" in result.message
    assert stream.failed == [], stream.failed[:3]
    assert target.calls == [("split", 20), ("unsplit", 1)]
    (step,) = store.deployment_steps(result.deployment_id)
    assert (step.weight, step.status) == (20, StepStatus.FAILED)
    agreement = next(c for c in step.analysis["checks"] if c["name"] == "agreement")
    assert agreement["verdict"] == "failed" and agreement["value"] < 0.9
    dep = store.deployment(result.deployment_id)
    assert dep.status == DeploymentStatus.ROLLED_BACK and dep.details["analysis"]["passed"] is False
    took = dep.details["abort_seconds"]
    print(f"\nabort decision -> all traffic on stable: {took:.3f} s")
    assert took <= 2.0
    assert store.model_by_id(models[3].id).bad
    assert store.current_deployment(spec.name, "canary-bad").model_version_id == models[1].id
    (latest, *_) = history(spec, store, "canary-bad")
    assert latest.status == DeploymentStatus.ROLLED_BACK and latest.abort_seconds == took
    # lineage shows the step under the deployment
    from cd4ml.cli.lineage import _lineage_text
    from cd4ml.reporting.lineage import lineage

    lin = lineage(store, models[3].version, spec.name)
    assert [s.status for s in lin.steps[result.deployment_id]] == [StepStatus.FAILED]
    assert "failed    step 1/2 canary 20%: analysis FAILED: agreement" in _lineage_text(lin)
    # GitHub shows the step and its verdict, then the failure
    (ghdep,) = gh.deployments.values()
    states = [(x["state"], x["description"]) for x in reversed(gh.deployment_statuses[ghdep["id"]])]
    assert [st for st, _ in states] == ["in_progress", "in_progress", "failure"]
    assert states[1][1].startswith("step 1/2 canary 20%: analysis FAILED: agreement")


def test_a_shadow_of_the_bad_model_changes_no_answer_and_is_refused(world):
    spec, store, models, target = world
    # it ends on its number of requests, long before its duration
    spec = _spec(spec, "shadow-bad", strategy=Strategy.SHADOW, shadow_requests=40,
                 shadow_duration=60.0)
    stream = _serve_v1(spec, store, target, "shadow-bad")
    v1 = _answers_of(target, models, stream)
    try:
        with pytest.raises(DeployFailed) as failed:
            deploy(spec, store, "shadow-bad", 3, target=target)
    finally:
        stream.stop()
    assert stream.failed == []
    assert target.calls == [("split", 0), ("unsplit", 1)]
    # every answer clients got is the stable version's answer to that very request
    logged = v1()
    assert stream.answers and all(logged[rid] == label for rid, label in stream.answers.items())
    (step,) = store.deployment_steps(failed.value.result.deployment_id)
    assert (step.kind, step.status) == (StepKind.SHADOW, StepStatus.FAILED)
    assert step.analysis["mirrored"] and step.analysis["rows"]["matched"] >= 40
    assert step.details["seconds"] < 45


def _answers_of(target, models, stream):
    """A reader of v1's prediction log: request id -> the label v1 answered."""
    import json

    from cd4ml.paths import logs_root

    def read():
        out = {}
        for path in logs_root().rglob("v1-*.jsonl"):
            for line in path.read_text().splitlines():
                r = json.loads(line)
                if "predictions" in r:
                    out[r["request_id"]] = r["predictions"][0]
        return out

    return read


def test_rollback_during_a_canary_returns_all_traffic_to_stable(world):
    spec, store, models, target = world
    spec = _spec(spec, "canary-stop", strategy=Strategy.CANARY, interval=30.0)
    stream = _serve_v1(spec, store, target, "canary-stop")
    outcome = {}

    def release():
        try:
            deploy(spec, store, "canary-stop", 2, target=target)
        except DeployFailed as e:
            outcome["result"] = e.result

    t = threading.Thread(target=release)
    t.start()
    try:
        from cd4ml.store import Store

        deadline = time.monotonic() + 60
        while not target.calls and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # the canary serves its 20 %
        (now,) = status(spec, store, "canary-stop", probe=False)
        assert now.rollout and now.rollout["strategy"] == "canary" and now.rollout["version"] == 2
        with Store(store.url) as other:  # another process's view of the same store
            stopped = rollback(spec, other, "canary-stop", actor="ops")
        t.join(60)
    finally:
        stream.stop()
    assert stopped.status == DeploymentStatus.HEALTHY and "marked bad" in stopped.message
    assert "all traffic is on wine:1" in stopped.message, stopped.message
    assert stopped.version == 1 and stream.failed == []
    assert outcome["result"].status == DeploymentStatus.ROLLED_BACK
    steps = store.deployment_steps(outcome["result"].deployment_id)
    assert [(s.kind, s.status) for s in steps] == [
        (StepKind.CANARY, StepStatus.ABORTED), (StepKind.ABORT_REQUEST, StepStatus.REQUESTED)]
    assert steps[1].actor == "ops" and "stopped by ops" in steps[0].details["summary"]
    assert store.current_deployment(spec.name, "canary-stop").model_version_id == models[1].id


def test_the_policy_still_applies(world):
    spec, store, _, target = world
    spec = _spec(spec, "canary-gated", strategy=Strategy.CANARY)
    env = dataclasses.replace(spec.environments[0], requires_approval=True)
    spec = dataclasses.replace(spec, environments=(env,))
    with pytest.raises(DeployError, match="requires an approval"):
        deploy(spec, store, "canary-gated", 2, target=target, approver_check=None)
    assert target.calls == [] and store.deployments(spec.name, "canary-gated") == []


@pytest.fixture
def cli_spec(models, tmp_path):
    """A spec file of the wine pipeline whose one environment releases by canary in steps of
    20 and 50 % held 12 s each (the commands below, and another process's start, fit in the
    second on a loaded machine), for the commands run as a user runs them."""
    import yaml

    from tests.integration.test_analysis import ROOT

    spec = models[0]
    raw = yaml.safe_load((ROOT / "pipelines" / "wine.yaml").read_text())
    raw.update(project=spec.project, allow_paths_outside_repository=True, environments={
        # its port is not used: the world's front is on a free port
        "canary-cli": {"target": "local", "port": 19110, "strategy": "canary",
                       "canary": {"steps": [20, 50, 100], "interval": 12, "max_wait": 60},
                       "analysis": {"min_requests": 15}}})
    raw["data"]["path"] = str(spec.data.path)
    raw["expectations"] = str(spec.expectations)
    path = tmp_path / "wine.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def test_the_commands_during_a_canary_show_it_and_rollback_stops_it(models, cli_spec, capsys,
                                                                     monkeypatch):
    """``cd4ml status`` (and --json), ``history`` and ``lineage`` during a canary's second step,
    then ``cd4ml rollback`` from another process: all traffic back on stable within 2 s of the
    request, rollback exits 0, the release (``cd4ml deploy`` in its own process) exits 1."""
    import json
    import subprocess
    import sys
    from datetime import datetime

    from cd4ml.cli import main
    from cd4ml.store import Store
    from tests.integration.test_analysis import ROOT

    spec, url, found = models
    monkeypatch.setenv("CD4ML_STORE_URL", url)
    monkeypatch.setenv("NO_COLOR", "1")
    with Store(url) as store:
        for m in found.values():
            store.set_model_flags(m.id, bad=False)

    def cli(*argv):
        code = main([argv[0], "-p", cli_spec, *argv[1:]])
        return code, capsys.readouterr().out

    def steps(store, deployment):
        return [(s.weight, s.status) for s in store.deployment_steps(deployment)
                if s.kind == StepKind.CANARY]

    proc = subprocess.Popen([sys.executable, "-m", "tests.canary_world", "-p", cli_spec,
                             "--env", "canary-cli", "1", "2"], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stream = None
    try:
        stream = Stream(_line_from(proc, "serving").split()[1], input_rows(spec, found[1]))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        with Store(url) as store:
            deadline = time.monotonic() + 90
            deployment = None
            while time.monotonic() < deadline:
                (latest, *_) = store.deployments(spec.name, "canary-cli", limit=1)
                deployment = latest.id if latest.status == DeploymentStatus.IN_PROGRESS else None
                if deployment and steps(store, deployment)[:1] == [(20, "passed")]:
                    break
                time.sleep(0.1)
            else:
                pytest.fail(f"the first step did not pass: {latest}")
            time.sleep(0.3)
            # during the second step
            seen = time.monotonic()
            code, out = cli("status", "--no-probe")
            assert code == 0, out
            assert f"canary-cli: canary of wine:2 under way (deployment {deployment}): " \
                   "step 2/2 canary 50%: under way since " in out, out
            code, out = cli("status", "--no-probe", "--json")
            (now,) = json.loads(out)
            assert now["version"] == 1 and now["rollout"]["version"] == 2, now
            assert [(s["weight"], s["status"]) for s in now["rollout"]["steps"]] == [
                (20, "passed"), (50, "running")]
            code, out = cli("history", "--env", "canary-cli")
            assert code == 0 and f"#{deployment} wine:2 -> canary-cli, canary:" in out, out
            assert "  passed    step 1/2 canary 20%: analysis passed: " in out, out
            assert "  running   step 2/2 canary 50%: under way since " in out, out
            code, out = cli("lineage", "wine:2")
            assert code == 0 and f"deployment {deployment}, 2 step(s):" in out, out
            # another process stops it
            took = time.monotonic() - seen
            rolled = subprocess.run([sys.executable, "-m", "cd4ml", "rollback", "-p", cli_spec,
                                     "--env", "canary-cli", "--actor", "ops"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120, check=False)
            took = (took, time.monotonic() - seen)
            _line_from(proc, "released")
            time.sleep(0.5)  # stable answers what comes after
            stream.stop()
            proc.stdin.write("done\n")
            proc.stdin.flush()
            released = proc.wait(30)
    finally:
        if stream is not None:
            stream.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert rolled.returncode == 0, rolled.stderr
    assert "was stopped: all traffic is on wine:1 (" in rolled.stdout, rolled.stdout
    assert released == 1, proc.stderr.read()
    assert stream.failed == [], stream.failed[:3]
    with Store(url) as store:
        dep = store.deployment(deployment)
        recorded = store.deployment_steps(deployment)
        current = store.current_deployment(spec.name, "canary-cli")
        assert store.model_by_id(found[2].id).bad
    assert dep.status == DeploymentStatus.ROLLED_BACK
    assert current.model_version_id == found[1].id
    asked = next(s for s in recorded if s.kind == StepKind.ABORT_REQUEST)
    stopped = next(s for s in recorded if s.status == StepStatus.ABORTED)

    def at(stamp):
        return datetime.fromisoformat(stamp).timestamp()

    # the release saw the request (the step ended), then switched: all traffic on stable
    switched = at(stopped.ended_at) - at(asked.started_at) + dep.details["abort_seconds"]
    # what a client saw: the candidate's last answer, from the request on
    last = stream.last[2] - at(asked.started_at)
    with capsys.disabled():
        print(f"\nthe commands took {took[0]:.1f} s of the second step, with the rollback "
              f"{took[1]:.1f} s; rollback asked -> all traffic on stable {switched:.3f} s "
              f"(decision -> stable {dep.details['abort_seconds']:.3f} s), the candidate's last "
              f"answer {last:.3f} s after the request")
    assert switched <= 2.0 and last <= 2.0
    assert stream.versions.get(1) and stream.last[1] > stream.last[2]
    code, out = cli("history", "--env", "canary-cli")
    assert "rolled_back" in out and "  aborted   step 2/2 canary 50%: stopped by ops " \
           "(cd4ml rollback)" in out and "  requested stop asked by ops" in out, out


def _line_from(proc, word):
    """The next line the release process prints that starts with ``word`` (its results come
    before: ``cd4ml deploy`` prints them)."""
    for line in proc.stdout:
        if line.startswith(word):
            return line
    pytest.fail(f"the release exited ({proc.wait(30)}) before {word!r}: {proc.stderr.read()}")
