"""What every command shares: the pipeline and store options, opening them, the model version
argument (its grammar is :mod:`cd4ml.refs`), the gate override options, and progress on stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from cd4ml.errors import StoreError, UsageError

if TYPE_CHECKING:
    from cd4ml.refs import ModelRef
    from cd4ml.spec import Spec
    from cd4ml.store import ModelVersion, Store


class _Redacting(logging.Formatter):
    """Known secrets never reach a log line, whatever a library put into the message."""

    def format(self, record: logging.LogRecord) -> str:
        from cd4ml.secrets import redact

        return redact(super().format(record))


def setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Redacting("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])


def add_pipeline(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--pipeline", metavar="SPEC",
                   help="pipeline: a spec path, a file stem under pipelines/ or a spec's name "
                        "(default: the only one)")


def add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL", help="store URL (default: $CD4ML_STORE_URL or "
                   "sqlite:///.cd4ml/cd4ml.db)")


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def add_common(p: argparse.ArgumentParser, *, json: bool = True) -> None:
    """``-p/--pipeline`` and ``--store``, which every command on a spec takes, and ``--json``
    for those whose result can be read by a machine."""
    add_pipeline(p)
    add_store(p)
    if json:
        add_json(p)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (e.g. ``--limit``)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {n}")
    return n


def person(text: str) -> str:
    """An argparse type for a person's name (``--by``, ``--approved-by``): recorded and shown in
    terminals, PR comments and the web view, so no control characters (a forged line, an escape
    sequence) and not blank."""
    name = line_of_text(text)
    if not name:
        raise argparse.ArgumentTypeError("must not be blank")
    if len(name) > 100:
        raise argparse.ArgumentTypeError(f"a name of at most 100 characters, got {len(name)}")
    return name


def line_of_text(text: str) -> str:
    """An argparse type for one line of recorded text (``--reason``): no control characters."""
    import unicodedata

    bad = [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad:
        raise argparse.ArgumentTypeError(f"control character {bad[0]!r} is not allowed here")
    return text.strip()


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 0-65535, got {n}")
    return n


def add_override(p: argparse.ArgumentParser,
                 what: str = "bless despite a failed gate, or accept drift") -> None:
    """``--override --reason TEXT [--by USER]``: past a failed check, on the record."""
    p.add_argument("--override", action="store_true", help=f"{what} (needs --reason)")
    p.add_argument("--reason", type=line_of_text, help="why (recorded with the decision)")
    p.add_argument("--by", metavar="USER", type=person,
                   help="who overrides (default: $GITHUB_ACTOR or git user.name)")


def overrider(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """Who overrides and why, or (None, None); a half-given override is a usage error."""
    if not args.override:
        if args.reason or args.by:
            raise UsageError("--reason and --by only go with --override")
        return None, None
    reason = (args.reason or "").strip()
    if not reason:
        raise UsageError("--override needs --reason TEXT: the reason is recorded with the decision")
    by = (args.by or "").strip() or _git_user()
    if not by:
        raise UsageError("--override needs a named person: pass --by USER (no $GITHUB_ACTOR or "
                        "git user.name here)")
    return by, reason


def _git_user() -> str | None:
    from cd4ml.integrations.git import git_info

    return git_info().actor  # $GITHUB_ACTOR, else git user.name


def load_pipeline(args: argparse.Namespace, ref: ModelRef | None = None) -> Spec:
    """The spec ``-p`` names (see :mod:`cd4ml.refs`); without ``-p``, the pipeline a model
    version like ``wine:3`` names, else the only spec under pipelines/."""
    from cd4ml.refs import load_pipeline as load

    arg = getattr(args, "pipeline", None)
    return load(arg or (ref.pipeline if ref is not None else None))


def pipeline_specs(args: argparse.Namespace) -> list[Spec]:
    """For read commands: the spec ``-p`` names, or without ``-p`` every spec under pipelines/."""
    from cd4ml.refs import spec_files
    from cd4ml.spec import load_spec

    if getattr(args, "pipeline", None):
        return [load_pipeline(args)]
    files = spec_files()
    return [load_spec(f) for f in files] if len(files) > 1 else [load_pipeline(args)]


def with_env(specs: list[Spec], env: str | None) -> list[Spec]:
    """With ``--env``, the pipelines that have that environment; none having it is the error
    of the first (it lists the environments there are)."""
    if env is None or len(specs) == 1:
        return specs
    having = [s for s in specs if any(e.name == env for e in s.environments)]
    if not having:
        specs[0].environment(env)
    return having


def open_store(args: argparse.Namespace) -> Store:
    from cd4ml.store import Store

    return Store(getattr(args, "store", None))


@contextmanager
def store_with_progress(args: argparse.Namespace) -> Iterator[Store]:
    """The store, with each stage's progress written to stderr (stdout stays for the result)."""
    from cd4ml.events import listening
    from cd4ml.reporting.console import Progress

    with open_store(args) as store, listening(Progress(sys.stderr)):
        yield store


def model_arg(text: str | None) -> ModelRef | None:
    """A MODEL_VERSION argument parsed (a usage error when malformed), or None when not given."""
    from cd4ml.refs import parse_model_ref

    return None if text is None else parse_model_ref(text)


def add_commit(p: argparse.ArgumentParser) -> None:
    """``--commit SHA``: the version the run of that commit made (see :func:`chosen_model`)."""
    p.add_argument("--commit", metavar="SHA",
                   help="instead of MODEL_VERSION: the version the pipeline's run of this git "
                        "commit trained or reused (a workflow passes \"$GITHUB_SHA\")")


def chosen_model(store: Store, pipeline: Spec | str, ref: ModelRef | None, *,
                 blessed: bool | None = None, missing: str = "",
                 commit: str | None = None) -> ModelVersion:
    """The version ``ref`` names, or the one the run of git ``commit`` made, or else the
    pipeline's newest (blessed, when asked) version; ``missing`` says what to do when there is
    none."""
    from cd4ml.refs import find_model, model_of_commit

    name = pipeline if isinstance(pipeline, str) else pipeline.name
    if ref is not None and commit:
        raise UsageError(f"--commit {commit} and model version {ref} both name a version; give one")
    if commit:
        return model_of_commit(store, name, commit)
    if ref is not None:
        return find_model(store, ref, pipeline)
    model = store.latest_model(name, blessed=blessed)
    if model is None:
        kind = "blessed model version" if blessed else "model version yet"
        raise StoreError(f"pipeline {name!r} has no {kind}; {missing}")
    return model


def add_read_pipeline(p: argparse.ArgumentParser, what: str) -> None:
    """``-p`` of a read command, which also takes a pipeline known only to the store."""
    p.add_argument("-p", "--pipeline", metavar="PIPELINE",
                   help=f"{what}: a spec path, a file stem under pipelines/, a spec's name, or a "
                        "name with recorded runs")


def read_pipeline(store: Store, args: argparse.Namespace, *, only: bool = False) -> str | None:
    """The pipeline name ``-p`` gives a read command (None: all of them). With ``only``, and no
    ``-p``, the name of the only spec under pipelines/ (for a bare version like ``3``)."""
    from cd4ml.refs import known_pipelines, pipeline_name

    if args.pipeline:
        return pipeline_name(args.pipeline, store.pipelines())
    if only:
        files = known_pipelines()
        return files[0].name if len(files) == 1 else None
    return None


def add_listing(p: argparse.ArgumentParser, limit: int) -> None:
    """The options of a command that lists records (``runs``, ``models``)."""
    add_store(p)
    add_json(p)
    add_read_pipeline(p, "only this pipeline (default: every one)")
    p.add_argument("--limit", type=positive_int, default=limit, metavar="N",
                   help="show the newest N (default: %(default)s)")
