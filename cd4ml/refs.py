"""How a user names a pipeline and a model version: one grammar, parsed here and nowhere else,
so that every command and the Python API accept the same words.

A **model version** (``MODEL_VERSION`` in every command; ``version`` in the Python API)::

    5, v5                       version 5 of the pipeline in hand (-p, or the only one)
    wine:5, wine:v5             version 5 of pipeline wine
    latest, wine:latest         the newest version
    @production, wine@production  the version current in environment production

Commands that take a run as well (``show``, ``compare``) read 12 hexadecimal characters, or a
prefix of a run id that is none of the forms above, as a run id.

A **pipeline** (``-p``, ``cd4ml.start_run``, ``gate_run``) is a spec path, a file stem under
``pipelines/`` (``wine_custom``), or a spec's ``name:`` (``wine-custom``), tried in that order.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cd4ml.errors import StoreError, UsageError

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import ModelVersion, Store

_NAME = r"[a-z0-9][a-z0-9_-]*"
_MODEL = re.compile(rf"(?:(?P<pipeline>{_NAME}):)?(?:v?(?P<version>\d+)|(?P<latest>latest))"
                    rf"|(?P<env_pipeline>{_NAME})?@(?P<environment>{_NAME})")
_RUN_ID = re.compile(r"[0-9a-f]+")
FORMS = "N, vN, PIPELINE:N, latest, PIPELINE:latest, @ENV or PIPELINE@ENV"
EXAMPLES = "e.g. 3, v3, wine:3, wine:latest, wine@production"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model version reference. ``pipeline`` None: the pipeline in hand; ``version``
    and ``environment`` both None: the newest version."""

    pipeline: str | None = None
    version: int | None = None
    environment: str | None = None

    @property
    def latest(self) -> bool:
        return self.version is None and self.environment is None

    def __str__(self) -> str:
        if self.environment is not None:
            return f"{self.pipeline or ''}@{self.environment}"
        tail = "latest" if self.version is None else str(self.version)
        return f"{self.pipeline}:{tail}" if self.pipeline else tail


def parse_model_ref(text: ModelRef | str | int) -> ModelRef:
    """``text`` in the grammar above; anything else is a :class:`UsageError` naming it."""
    if isinstance(text, ModelRef):
        return text
    shown = str(text).strip()
    m = _MODEL.fullmatch(shown) if not isinstance(text, bool) else None
    if m is None:
        raise UsageError(f"model version {shown!r}: expected {FORMS} ({EXAMPLES})")
    if m["environment"]:
        return ModelRef(m["env_pipeline"], None, m["environment"])
    if m["latest"]:
        return ModelRef(m["pipeline"])
    version = int(m["version"])
    if version < 1:
        raise UsageError(f"model version {shown!r}: versions are numbered from 1 ({EXAMPLES})")
    return ModelRef(m["pipeline"], version)


def parse_run_or_model(text: str) -> ModelRef | str:
    """A model version, or else a run id (or a unique prefix of one) as a string."""
    shown = text.strip()
    if len(shown) == 12 and _RUN_ID.fullmatch(shown):
        return shown  # a whole run id, even one that happens to be all digits
    try:
        return parse_model_ref(shown)
    except UsageError:
        if _RUN_ID.fullmatch(shown):
            return shown
        raise UsageError(f"{shown!r}: expected a run id (see 'cd4ml runs') or a model version: "
                         f"{FORMS} ({EXAMPLES})") from None


def find_model(store: Store, ref: ModelRef | str | int, pipeline: Spec | str | None = None,
               ) -> ModelVersion:
    """The model version ``ref`` names; a bare ``5``, ``latest`` or ``@ENV`` is of ``pipeline``
    (a Spec, whose environments are then checked, or a name). A version that is not recorded,
    or an environment where nothing runs, is a :class:`StoreError`."""
    ref = parse_model_ref(ref)
    spec, in_hand = ((None, pipeline) if pipeline is None or isinstance(pipeline, str)
                     else (pipeline, pipeline.name))
    if ref.pipeline and in_hand and ref.pipeline != in_hand:
        raise UsageError(f"model version {str(ref)!r} is of pipeline {ref.pipeline!r}, not "
                         f"{in_hand!r}; name a version of {in_hand}, or choose -p {ref.pipeline}")
    name = ref.pipeline or in_hand
    if not name:
        raise UsageError(f"model version {str(ref)!r} names no pipeline and there is none in hand; "
                         f"write PIPELINE:{ref} (e.g. wine:{ref}) or choose one with -p")
    if ref.environment is not None:
        if spec is not None:
            spec.environment(ref.environment)  # an unknown environment lists the known ones
        current = store.current_deployment(name, ref.environment)
        if current is None:
            raise StoreError(f"{ref}: no version of {name} is deployed in {ref.environment}; "
                             "see 'cd4ml status'")
        return store.model_by_id(current.model_version_id)
    if ref.version is None:
        model = store.latest_model(name)
        if model is None:
            raise StoreError(f"pipeline {name!r} has no model versions; see 'cd4ml models'")
        return model
    return store.model(name, ref.version)


_COMMIT = re.compile(r"[0-9a-f]{7,40}")


def model_of_commit(store: Store, pipeline: str, commit: str) -> ModelVersion:
    """The model version the newest run of ``pipeline`` at git ``commit`` (or a prefix of it)
    trained, or reused: a cached run answers with the model of the run it reused. This is what
    a workflow builds and deploys for the commit it runs on, never merely the newest blessed
    version, which a run of another commit may have made."""
    if not _COMMIT.fullmatch(commit):
        raise UsageError(f"--commit {commit!r}: expected a git commit id, 7 to 40 lower-case "
                         "hexadecimal characters (e.g. \"$GITHUB_SHA\" in a workflow)")
    found = store.runs(pipeline, limit=100, commit=commit)
    for run in found:
        model = store.model_for_run(run.reused_from or run.id)
        if model is not None:
            return model
    raise StoreError(f"no run of {pipeline} at commit {commit[:12]} has a model "
                     f"({len(found)} run(s) there); run 'cd4ml run -p {pipeline}' on that commit "
                     "first (in a workflow, the pipeline job of the same push does)")


# ----------------------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class PipelineFile:
    """A spec under ``pipelines/`` and the ``name:`` it declares (None when unreadable)."""

    path: Path
    name: str | None


def spec_files(root: Path | None = None) -> list[Path]:
    """The spec files under ``<root>/pipelines`` (``root`` defaults to the working directory)."""
    folder = (root or Path.cwd()) / "pipelines"
    return sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))


def known_pipelines(root: Path | None = None) -> list[PipelineFile]:
    """Every spec under ``pipelines/`` with its declared name, read without validating it (a
    broken spec is reported when it is used, not when another one is looked up)."""
    return [PipelineFile(path, _declared_name(path)) for path in spec_files(root)]


def _declared_name(path: Path) -> str | None:
    import yaml

    try:
        name = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("name")
    except (yaml.YAMLError, OSError, AttributeError, UnicodeDecodeError):
        return None
    return name if isinstance(name, str) else None


def _is_path(arg: str | Path) -> bool:
    text = str(arg)
    return (isinstance(arg, Path) or text.endswith((".yaml", ".yml")) or "/" in text
            or "\\" in text or Path(text).is_file())


def find_pipeline(arg: str | Path, root: Path | None = None) -> Path | None:
    """The spec file ``arg`` names: a path (returned as is), a file stem under ``pipelines/``,
    or a spec's ``name:``. None when ``arg`` is a name no spec has."""
    if _is_path(arg):
        return Path(arg)
    folder = (root or Path.cwd()) / "pipelines"
    for stem in (folder / f"{arg}.yaml", folder / f"{arg}.yml"):
        if stem.is_file():
            return stem
    return next((f.path for f in known_pipelines(root) if f.name == str(arg)), None)


def describe_known(root: Path | None = None, extra: tuple[str, ...] = ()) -> str:
    """``wine (pipelines/wine.yaml), wine-custom (pipelines/wine_custom.yaml)``, for errors."""
    files = known_pipelines(root)
    specs = [f"{f.name or '?'} (pipelines/{f.path.name})" for f in files]
    names = {f.name for f in files}
    return ", ".join(specs + [n for n in extra if n not in names]) or "none"


def spec_path(arg: str | Path | None, root: Path | None = None) -> Path:
    """The spec file of ``-p``: ``arg`` resolved by :func:`find_pipeline`, or without one the
    only spec under ``pipelines/``. An unknown name is a :class:`UsageError` listing the known."""
    if arg:
        found = find_pipeline(arg, root)
        if found is None:
            raise UsageError(f"pipeline {str(arg)!r}: no spec pipelines/{arg}.yaml and none whose "
                             f"name is {str(arg)!r} (known: {describe_known(root)}); pass one of "
                             "these or a spec path")
        return found
    found_files = spec_files(root)
    if len(found_files) == 1:
        return found_files[0]
    if not found_files:
        raise UsageError("no pipelines/*.yaml here; pass --pipeline PATH or run 'cd4ml init'")
    raise UsageError(f"several pipelines ({describe_known(root)}); choose one with --pipeline NAME")


def load_pipeline(arg: str | Path | Spec | None, root: Path | None = None) -> Spec:
    """The validated spec ``arg`` names (see :func:`spec_path`); a Spec is returned as is."""
    from cd4ml.spec import Spec, load_spec

    return arg if isinstance(arg, Spec) else load_spec(spec_path(arg, root))


def find_spec(pipeline: str | Path | Spec, root: Path | None = None) -> Spec | None:
    """Like :func:`load_pipeline`, but a name no spec has is None rather than an error: the
    tracking API records runs of pipelines that have no spec."""
    from cd4ml.spec import Spec, load_spec

    if isinstance(pipeline, Spec):
        return pipeline
    path = find_pipeline(pipeline, root)
    return load_spec(path) if path is not None else None


def pipeline_name(arg: str | Path, recorded: Collection[str] = (), root: Path | None = None) -> str:
    """The name of the pipeline ``arg`` names, for commands that read the store: a spec path
    (validated), a file stem, a spec's ``name:``, or a name in ``recorded`` (the store's: a
    tracked run needs no spec). Anything else is a :class:`UsageError` listing the known."""
    from cd4ml.spec import load_spec

    if _is_path(arg):
        return load_spec(arg).name
    path = find_pipeline(arg, root)
    if path is not None:
        return _declared_name(path) or load_spec(path).name  # a broken spec says what is wrong
    if str(arg) in recorded:
        return str(arg)
    raise UsageError(f"pipeline {str(arg)!r}: no spec pipelines/{arg}.yaml, none whose name is "
                     f"{str(arg)!r} and nothing recorded of it (known: "
                     f"{describe_known(root, tuple(recorded))}); pass one of these or a spec path")
