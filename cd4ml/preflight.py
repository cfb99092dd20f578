"""What a CI job needs that the repository has not configured yet.

A freshly scaffolded repository keeps its store on a branch of its own git (the git store,
which holds the model artifacts too), but has no registry and no runner that reaches the deploy
targets. Its first push must still be green: the jobs that would need them skip their work and
say, in the job summary, exactly what to set and where. The names here (``CD4ML_STORE_URL``, the
variables ``CD4ML_ARTIFACTS`` and ``CD4ML_RUNNER``, ``image.registry``) are the contract between
the workflows ``cd4ml init`` writes and README's set-up section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cd4ml.spec import Spec

#: the workflows' name for "cd4ml's jobs run on a self-hosted runner that keeps the artifacts
#: and reaches the deploy targets"
RUNNER_ENV = "CD4ML_RUNNER"
STORE_ENV = "CD4ML_STORE_URL"
ARTIFACTS_ENV = "CD4ML_ARTIFACTS"
SETTINGS = "Settings > Secrets and variables > Actions"


@dataclass(frozen=True)
class Missing:
    """One piece of configuration a job needs: what it is, and where to set it."""

    what: str
    where: str


@dataclass(frozen=True)
class Preflight:
    pipeline: str
    environment: str | None  # None: the pipeline job (nothing is skipped, only advice given)
    missing: tuple[Missing, ...]

    @property
    def ready(self) -> bool:
        """Whether the job's work can run: always for the pipeline job, for a deploy when
        nothing is missing."""
        return self.environment is None or not self.missing


def preflight(spec: Spec, environment: str | None = None,
              env: Mapping[str, str] | None = None) -> Preflight:
    """What ``spec``'s job (its pipeline run, or a deploy to ``environment``) lacks here."""
    from cd4ml.store.gitlocal import writes_locally

    env = os.environ if env is None else env
    missing = []
    url = env.get(STORE_ENV, "")
    if not url:
        missing.append(Missing(
            "a store that outlives the runner (runs, model versions, what is deployed where)",
            f"{STORE_ENV}: git+origin (the git store, the default of the workflows cd4ml init "
            f"writes) or the repository secret {STORE_ENV} ({SETTINGS} > Secrets), e.g. "
            "postgresql+psycopg://cd4ml@db.example.com/cd4ml"))
    elif environment is not None and writes_locally(url):
        missing.append(Missing(
            "a store the deploy may write (this one keeps its writes on the runner, as a pull "
            "request's job does)",
            f"{STORE_ENV} without ?writes=local"))
    # the git store keeps model artifacts on its branch; any other store needs a directory
    if url and not url.startswith("git+") and not env.get(ARTIFACTS_ENV):
        missing.append(Missing(
            "model artifacts that outlive the runner (the production model is evaluated "
            "against on every run, and built and deployed from)",
            f"the repository variable {ARTIFACTS_ENV} ({SETTINGS} > Variables): a directory "
            f"of the self-hosted runner named by {RUNNER_ENV}; or the git store "
            f"({STORE_ENV}=git+origin), which keeps them on its branch"))
    if environment is not None:
        target = spec.environment(environment).target
        if not spec.image.registry:
            missing.append(Missing(
                "a registry for the model image",
                f"image.registry in {spec.path.name} (e.g. ghcr.io/your-org); a login goes in "
                "the secrets CD4ML_REGISTRY_USER and CD4ML_REGISTRY_PASSWORD"))
        if not env.get(RUNNER_ENV):
            missing.append(Missing(
                f"a runner that reaches the {environment} target ({target})",
                f"the repository variable {RUNNER_ENV} ({SETTINGS} > Variables): the label of "
                "the self-hosted runner cd4ml's jobs run on, which reaches it (for target "
                "local: its Docker engine)"))
    return Preflight(spec.name, environment, tuple(missing))


def summary(result: Preflight) -> str:
    """Markdown for the job summary: what was skipped, what to set, where."""
    if not result.missing:
        return ""
    if result.environment is None:
        head = (f"### cd4ml: {result.pipeline} ran, but nothing keeps it for the next run\n\n"
                "The run is reported; what it records ends with this runner (no comparison "
                "with production, no deploys). To keep it, set:\n")
    else:
        head = (f"### cd4ml: deploying {result.pipeline} to {result.environment} skipped\n\n"
                "Nothing failed: this job needs configuration the repository does not have "
                "yet. Set:\n")
    items = "".join(f"- **{m.what}**: {m.where}\n" for m in result.missing)
    return (head + "\n" + items + "\nSee \"Set up cd4ml in your repository\" in cd4ml's "
            "README.\n")
