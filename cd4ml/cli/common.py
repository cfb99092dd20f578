"""What every command shares: the pipeline and store options, opening them, the model version
argument, the gate override options, and progress on stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cd4ml.errors import SpecError, StoreError

if TYPE_CHECKING:
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
                   help="pipeline spec: a path or a name under pipelines/ (default: the only one)")


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
            raise SpecError("--reason and --by only go with --override")
        return None, None
    reason = (args.reason or "").strip()
    if not reason:
        raise SpecError("--override needs --reason TEXT: the reason is recorded with the decision")
    by = (args.by or "").strip() or _git_user()
    if not by:
        raise SpecError("--override needs a named person: pass --by USER (no $GITHUB_ACTOR or "
                        "git user.name here)")
    return by, reason


def _git_user() -> str | None:
    from cd4ml.integrations.git import git_info

    return git_info().actor  # $GITHUB_ACTOR, else git user.name


def spec_path(arg: str | None) -> Path:
    """A spec path from ``--pipeline``: a file, a name under pipelines/, or the only spec there."""
    if arg:
        p = Path(arg)
        if p.suffix in (".yaml", ".yml") or p.exists():
            return p
        return Path("pipelines") / f"{arg}.yaml"
    found = sorted(Path("pipelines").glob("*.yaml")) + sorted(Path("pipelines").glob("*.yml"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise SpecError("no pipelines/*.yaml here; pass --pipeline PATH or run 'cd4ml init'")
    raise SpecError(f"several pipelines ({', '.join(p.stem for p in found)}); choose one with --pipeline NAME")


def load_pipeline(args: argparse.Namespace) -> Spec:
    from cd4ml.spec import load_spec

    return load_spec(spec_path(getattr(args, "pipeline", None)))


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


def model_ref(text: str, what: str = "MODEL_VERSION", example: str = "wine") -> tuple[str | None, int]:
    """``wine:3`` -> ("wine", 3); ``3`` -> (None, 3); anything else is a usage error."""
    head, _, tail = text.rpartition(":")
    if not tail.isdigit():
        raise SpecError(f"{what} {text!r}: expected PIPELINE:VERSION or a version number, "
                        f"e.g. {example}:3 or 3")
    return (head or None), int(tail)


def chosen_model(store: Store, pipeline: str, text: str | None, *, what: str = "MODEL_VERSION",
                 blessed: bool | None = None, missing: str = "") -> ModelVersion:
    """The version ``text`` names (``3`` or ``<pipeline>:3``), or without one the pipeline's
    newest (blessed, when asked) version; ``missing`` says what to do when there is none."""
    if text:
        head, number = model_ref(text, what, example=pipeline)
        if head and head != pipeline:
            raise SpecError(f"{what} {text!r} is of pipeline {head!r}, but the spec is "
                            f"{pipeline!r}; pass --pipeline {head}")
        return store.model(pipeline, number)
    model = store.latest_model(pipeline, blessed=blessed)
    if model is None:
        kind = "blessed model version" if blessed else "model version yet"
        raise StoreError(f"pipeline {pipeline!r} has no {kind}; {missing}")
    return model
