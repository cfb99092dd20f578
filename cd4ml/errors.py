"""The cd4ml exception tree.

    Cd4mlError                 every error a user can act on; exit code 2 unless said otherwise
    ├── UsageError             the command line is wrong (a flag, an argument, their combination)
    ├── SpecError              the pipeline spec is wrong (file:line: what is wrong)
    ├── DataError              the data cannot be read or lacks what the spec names
    ├── StoreError             the metadata store cannot be reached or is inconsistent
    ├── ArtifactError          a model artifact is missing or its sha256 does not match
    ├── BuildError             the image could not be built, validated or pushed
    ├── DeployError            a deploy, promotion or rollback was refused or failed: exit code 1
    ├── TrackerError           the tracker (GitHub) refused or could not be reached (``status``)
    ├── TrackedRunError        the tracking API was misused (cd4ml.start_run, entry points)
    ├── CommandError           an external command exited non-zero
    └── UiError                the web view (cd4ml ui) cannot listen where asked

Messages name the file, field or value and end with what to do about it. A failed validation
or gate is a result (exit code 1 from the command), not an exception.
"""

from __future__ import annotations


class Cd4mlError(Exception):
    """Root of every error cd4ml raises on purpose."""

    exit_code = 2


class UsageError(Cd4mlError):
    """The command line (or the equivalent call) is malformed: a flag or argument is wrong,
    missing, or goes only with another."""


class SpecError(Cd4mlError):
    """The pipeline spec is malformed or names something that does not exist."""


class DataError(Cd4mlError):
    """The data cannot be read, or does not have the columns or types the spec names."""


class StoreError(Cd4mlError):
    """The metadata store cannot be reached, or a record is missing."""


class ArtifactError(Cd4mlError):
    """A model artifact is missing, unreadable or does not match its recorded sha256."""


class BuildError(Cd4mlError):
    """The model image could not be built, validated or pushed."""


class DeployError(Cd4mlError):
    """A deploy, promotion or rollback was refused or did not become healthy."""

    exit_code = 1


class TrackerError(Cd4mlError):
    """The tracker (GitHub) refused a request or could not be reached. ``status`` is the HTTP
    status when there was an answer; ``ambiguous`` says the request may have taken effect
    although it failed (a gateway error or a timeout on a POST): look before repeating it."""

    def __init__(self, message: str, status: int | None = None, ambiguous: bool = False):
        super().__init__(message)
        self.status = status
        self.ambiguous = ambiguous


class TrackedRunError(Cd4mlError):
    """A tracked run was misused: a bad name or value, no model logged, logging after the end."""


class TrainingFailed(TrackedRunError):
    """The user's training code failed: raised, called ``sys.exit`` or was interrupted. A
    failed run, not a usage error: exit 1, so CI goes red."""

    exit_code = 1


class CommandError(Cd4mlError):
    """An external command exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, stderr: str):
        import shlex

        tail = stderr.strip().splitlines()[-5:]
        super().__init__(
            f"command failed (exit {returncode}): {shlex.join(argv)}"
            + (f": {' | '.join(tail)}" if tail else "")
        )
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr


class UiError(Cd4mlError):
    """The web view cannot start: its address is taken or cannot be bound."""
