"""Every state cd4ml records or reports, as a ``StrEnum`` per concept.

A member equals its value (``RunStatus.SUCCEEDED == "succeeded"``), so the store keeps the same
text it always held, JSON shows plain strings, and rows written before these types existed read
back unchanged. Light on purpose: no import beyond the standard library.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's state in the store."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # an error stopped it
    VALIDATION_FAILED = "validation_failed"
    GATE_FAILED = "gate_failed"
    ABANDONED = "abandoned"  # the process running it was killed before it finished

    @property
    def failed(self) -> bool:
        return self in (RunStatus.FAILED, RunStatus.VALIDATION_FAILED, RunStatus.GATE_FAILED)


class RunKind(StrEnum):
    """How a run was started: by ``cd4ml run`` or by the tracking API (``cd4ml.start_run``)."""

    PIPELINE = "pipeline"
    TRACKED = "tracked"


class StageOutcome(StrEnum):
    """One stage's verdict within a run."""

    PASSED = "passed"
    FAILED = "failed"


class MetricScope(StrEnum):
    """Whose value a metric row holds: the candidate's, or production's on the same rows."""

    CANDIDATE = "candidate"
    PRODUCTION = "production"


class RuleKind(StrEnum):
    """Which bound of a gate rule an outcome checks."""

    MIN = "min"
    MAX = "max"
    MAX_DROP = "max_drop"
    NO_GATES = "no_gates"  # the spec has no gates (allowed or not)


class InfraStatus(StrEnum):
    """An image's infra validation."""

    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


class DeployAction(StrEnum):
    """What put a version into an environment."""

    DEPLOY = "deploy"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    DOWN = "down"  # ``cd4ml down``: the environment taken down, nothing serves


class DeploymentStatus(StrEnum):
    """A deployment's state in the store (``UNCHANGED`` only in a result: nothing was recorded)."""

    IN_PROGRESS = "in_progress"
    HEALTHY = "healthy"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"  # it failed and the previous version serves again
    REPLACED = "replaced"  # it was healthy until a newer one took its place
    UNCHANGED = "unchanged"
    DOWN = "down"  # the environment was taken down: it has no current deployment after it


class CommitState(StrEnum):
    """A commit status, and the verdict of a run's report (GitHub's words)."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"


class GitHubDeploymentState(StrEnum):
    """The state of a GitHub Deployment (GitHub's words)."""

    QUEUED = "queued"
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"
    INACTIVE = "inactive"


class ApprovalSource(StrEnum):
    """Where a recorded approval came from."""

    CLI = "cli"  # named with --approved-by
    GITHUB = "github"  # a review of the workflow run's environment gate


class StepKind(StrEnum):
    """One step of a progressive release (canary or shadow), or a request to stop one."""

    CANARY = "canary"  # a share of live traffic on the new version, then its analysis
    SHADOW = "shadow"  # a mirrored copy of live traffic, then its analysis
    ABORT_REQUEST = "abort_request"  # ``cd4ml rollback`` asked a running release to stop


class StepStatus(StrEnum):
    """Where a step of a progressive release is, or how it ended."""

    RUNNING = "running"  # under way: its traffic is split (``cd4ml status`` shows it)
    PASSED = "passed"  # its analysis passed: the release goes on
    FAILED = "failed"  # its analysis failed: all traffic went back to the stable version
    ABORTED = "aborted"  # stopped before its analysis (a rollback, an error, an interrupt)
    REQUESTED = "requested"  # an abort request, not acted on yet
