"""Stage events. The library never prints: stages emit events, and reporters (the console,
GitHub, the step summary) listen, so every view shows the same facts.

Each kind of event is a frozen dataclass; a listener picks what it cares about by type
(``isinstance`` or ``match``), never by reading keys out of a dict.

    Event                      stage, message
    ├── StageStarted
    ├── StageFinished
    ├── StageFailed
    ├── StageSkipped           a cached run answered
    ├── StageWarning           something a person should see; the stage goes on
    ├── StageProgress          a step within a stage
    ├── ExpectationFailed      outcome: one failed expectation
    ├── GateDecided            result: the gate's decision on model_version
    ├── ImageBuilt             result: the built image and its infra validation
    └── DeploymentEvent        pipeline, environment, action, version, image, digest, ...
        ├── DeploymentStarted  git_commit: the commit the version was trained from
        ├── Deployed
        ├── DeploymentFailed
        ├── DeployUnchanged    that version already served, healthy: nothing was done
        ├── RolledBack         rolled_back_version, automatic
        └── TakenDown          ``cd4ml down``: nothing serves in the environment any more
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cd4ml.release.build import BuildResult
    from cd4ml.stages.gate import GateResult
    from cd4ml.stages.validate import ExpectationOutcome

Listener = Callable[["Event"], None]
_listeners: list[Listener] = []


@dataclass(frozen=True)
class Event:
    """Something a stage says: ``stage`` names it (validate, train, ..., deploy, report)."""

    stage: str
    message: str


class StageStarted(Event):
    pass


class StageFinished(Event):
    pass


class StageFailed(Event):
    pass


class StageSkipped(Event):
    pass


class StageWarning(Event):
    pass


class StageProgress(Event):
    pass


@dataclass(frozen=True)
class ExpectationFailed(Event):
    outcome: ExpectationOutcome


@dataclass(frozen=True)
class GateDecided(Event):
    result: GateResult
    model_version: int
    run_id: str


@dataclass(frozen=True)
class ImageBuilt(Event):
    result: BuildResult


@dataclass(frozen=True, kw_only=True)
class DeploymentEvent(Event):
    """A deploy, promotion or rollback of ``pipeline:version`` into ``environment``;
    ``deployment_id`` is the store's record of it."""

    pipeline: str
    environment: str
    action: str  # a cd4ml.states.DeployAction
    version: int
    image: str | None
    digest: str | None
    target: str
    status: str  # a cd4ml.states.DeploymentStatus
    deployment_id: int | None
    url: str | None = None
    previous_version: int | None = None
    actor: str | None = None
    override: dict | None = None  # {by, reason, skipped}: the policy was overridden


@dataclass(frozen=True, kw_only=True)
class DeploymentStarted(DeploymentEvent):
    git_commit: str | None = None


class Deployed(DeploymentEvent):
    pass


class DeploymentFailed(DeploymentEvent):
    pass


class DeployUnchanged(DeploymentEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class RolledBack(DeploymentEvent):
    rolled_back_version: int | None = None  # the version taken out
    automatic: bool = False  # the target put the previous version back after a failed release


class TakenDown(DeploymentEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class DeploymentStepped(DeploymentEvent):
    """A step of a canary or shadow release ended (``message`` says how, with its analysis)."""

    step: int  # 1-based
    steps: int
    kind: str  # a cd4ml.states.StepKind
    weight: int  # percent of live traffic on the candidate (0: a shadow)
    step_status: str  # a cd4ml.states.StepStatus


def emit(event: Event) -> None:
    """Tell every listener."""
    # a copy: a listener may leave (end its ``listening`` block) while it is being told
    for listener in list(_listeners):  # noqa: PERF101
        listener(event)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """``listener`` hears every event emitted inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
