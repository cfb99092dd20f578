"""A canary or shadow step is in the store while it runs (so that ``cd4ml status``, ``history``
and ``lineage`` show it), ends with its verdict, and a step a dead release left running is
marked aborted by the next action's clean-up."""

from __future__ import annotations

from cd4ml.release.leftovers import clean_up
from cd4ml.spec import load_spec
from cd4ml.states import DeploymentStatus, StepKind, StepStatus
from cd4ml.store import Store, now
from tests.helpers import ROOT


class _NothingLeft:
    """The target's part of the clean-up: no container of a dead deploy (none was started)."""

    def remove_orphans(self, spec, env, *, keep, anything_current):
        return []


def test_a_running_step_ends_with_its_verdict_or_as_abandoned(tmp_path):
    spec = load_spec(ROOT / "pipelines" / "wine.yaml")
    env = spec.environment("staging")
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        run = store.start_run(spec.name)
        model = store.register_model(spec.name, run.id, "classification", "/a", "a" * 64, {}, {})
        deps = [store.start_deployment(spec.name, env.name, model.id, "img", "local", "deploy",
                                       "ana", details={"strategy": "canary"}) for _ in range(2)]
        first, _ = (store.record_step(d.id, StepKind.CANARY, 20, StepStatus.RUNNING, now(),
                                     details={"name": "step 1/2 canary 20%",
                                              "summary": "step 1/2 canary 20%: under way since 10:00"})
                   for d in deps)
        assert first.ended_at is None and first.status == StepStatus.RUNNING
        store.finish_step(first.id, StepStatus.PASSED, analysis={"passed": True},
                          details={"summary": "step 1/2 canary 20%: analysis passed"})
        store.finish_deployment(deps[0].id, DeploymentStatus.HEALTHY)
        # the second release's process died mid-step: the next action cleans up after it
        cleaned = clean_up(store, spec, env, _NothingLeft(), "deploy")
        (ended,) = store.deployment_steps(deps[0].id)
        (left,) = store.deployment_steps(deps[1].id)
    assert cleaned.failed == (deps[1].id,)
    assert (ended.status, ended.analysis, ended.details["summary"]) == (
        StepStatus.PASSED, {"passed": True}, "step 1/2 canary 20%: analysis passed")
    assert ended.ended_at is not None
    assert left.status == StepStatus.ABORTED and left.ended_at is not None
    assert left.details["summary"] == "step 1/2 canary 20%: abandoned (its process is gone)"
