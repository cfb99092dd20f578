"""Stage events are typed: the console listener picks them by type and draws one line per
stage end, warning and progress step; events it has no view for leave it silent."""

from __future__ import annotations

import io

from cd4ml import events
from cd4ml.events import emit, listening
from cd4ml.reporting.console import Progress
from cd4ml.states import DeployAction, DeploymentStatus


def test_the_console_draws_each_kind_of_event():
    out = io.StringIO()
    with listening(Progress(out)):
        emit(events.StageStarted("train", "training wine"))
        emit(events.StageFinished("train", "wine:1 on 133 rows"))
        emit(events.StageStarted("gate", "gating wine:1"))
        emit(events.StageFailed("gate", "wine:1 not blessed"))
        emit(events.StageSkipped("run", "inputs unchanged"))
        emit(events.StageWarning("validate", "no expectation suite"))
        emit(events.StageProgress("push", "layer 1: pushed"))
        emit(events.Deployed(stage="deploy", message="not drawn", pipeline="wine",
                             environment="staging", action=DeployAction.DEPLOY, version=1,
                             image="cd4ml/wine:1", digest=None, target="local",
                             status=DeploymentStatus.HEALTHY, deployment_id=3))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("✓ train") and lines[0].split("  (")[0].endswith("wine:1 on 133 rows")
    assert lines[1].startswith("✗ gate") and "not blessed" in lines[1]
    assert lines[2].startswith("↷ run") and "(" not in lines[2]  # never started: no time
    assert lines[3:] == ["warning: no expectation suite", "  layer 1: pushed"]


def test_a_listener_hears_only_inside_its_block():
    heard: list[object] = []
    with listening(heard.append):
        emit(events.StageStarted("build", "building"))
    emit(events.StageStarted("build", "again"))
    assert heard == [events.StageStarted("build", "building")]
    assert events.StageStarted("build", "building") != events.StageFinished("build", "building")  # type counts


def test_the_console_draws_a_take_down_as_a_stage_end():
    out = io.StringIO()
    with listening(Progress(out)):
        emit(events.TakenDown(stage="down", message="staging is down: wine:2 no longer serves there",
                       pipeline="wine", environment="staging", action=DeployAction.DOWN,
                       version=2, image="cd4ml/wine:2", digest=None, target="local",
                       status=DeploymentStatus.DOWN, deployment_id=7))
    assert out.getvalue() == "↓ down      staging is down: wine:2 no longer serves there\n"
