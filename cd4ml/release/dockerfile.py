"""What goes into a model image: the pinned requirements, the rendered Dockerfile, the context.

The image installs only what serving needs: the distributions the pickled model refers to
(read from the pickle's opcodes, without unpickling it) and the ones the server imports, each
pinned to the exact version this machine has, with their dependencies. A model trained here is
therefore served with the very numpy and scikit-learn that fitted it, which is what lets infra
validation require predictions equal to the in-process ones.

Rendering is pure (spec + model + options -> text); :func:`make_context` writes the context.
"""

from __future__ import annotations

import ast
import configparser
import os
import pickletools
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cd4ml.errors import BuildError

if TYPE_CHECKING:
    from cd4ml.spec import Spec
    from cd4ml.store import ModelVersion

APP_DIR = "/opt/cd4ml/app"
MODEL_DIR = "/opt/cd4ml/model"
PORT = 8080
UID = 10001
CA_FILE = "ca-bundle.crt"
#: env: a CA bundle to give pip inside the build (behind a TLS-intercepting proxy)
CA_ENV = "CD4ML_BUILD_CA_BUNDLE"
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
               "BINSTRING", "STRING"}
_PACKAGE = Path(__file__).resolve().parents[1]
#: modules the server imports only for models that take a DataFrame (cd4ml.serve.predictor)
FRAME_MODULES = frozenset({"pandas"})
#: modules of the compiled path: the converter (only in the compile stage's image) and the runtime
COMPILE_MODULES = frozenset({"skl2onnx", "onnx"})
#: what the compile stage's image installs over the scikit-learn image's pins
COMPILER_MODULES = ("skl2onnx", "onnxruntime")
#: the labels of a compile stage's image: the pipeline's, none of a model version's
_PIPELINE_LABELS = ("org.opencontainers.image.vendor", "org.opencontainers.image.base.name",
                    "cd4ml.project", "cd4ml.pipeline", "cd4ml.version")
ONNX_MODULES = frozenset({"onnxruntime"})
#: what only the scikit-learn runtime imports: an image serving the compiled model goes without
SKLEARN_MODULES = frozenset({"sklearn", "scipy", "pandas", "joblib", "threadpoolctl"})


@dataclass(frozen=True)
class Requirements:
    pins: tuple[str, ...]  # "name==version", sorted
    user_modules: tuple[Path, ...]  # the user's own modules the model refers to, to copy


# ------------------------------------------------------------------------ what the image needs


def pickle_modules(path: str | Path) -> set[str]:
    """Top-level modules a pickle refers to (its GLOBAL / STACK_GLOBAL opcodes), found without
    unpickling it: opening an untrusted pickle to learn its needs would run its code."""
    found: set[str] = set()
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # strings pushed, in order, incl. memo fetches; enough for globals
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in _STRING_OPS:
                    pushed.append(arg)
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg is not None:
                    memo[int(arg)] = pushed[-1] if pushed else None
                elif op.name in ("GET", "BINGET", "LONG_BINGET") and arg is not None:
                    pushed.append(memo.get(int(arg)))
                elif op.name in ("GLOBAL", "INST"):
                    found.add(str(arg).split(" ")[0])
                elif op.name == "STACK_GLOBAL" and len(pushed) >= 2 and isinstance(pushed[-2], str):
                    found.add(pushed[-2])
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: cannot read the pickled model: {e}; retrain it") from None
    return {m.split(".")[0] for m in found}


def imported_modules(paths: Iterable[Path]) -> set[str]:
    """Top-level modules that these Python files import (absolute imports only)."""
    out: set[str] = set()
    for p in paths:
        tree = ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out


def third_party(modules: Iterable[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m != "cd4ml"}


def pin(modules: Iterable[str]) -> tuple[str, ...]:
    """``name==version`` for the distributions providing ``modules`` and everything they need,
    as installed here (extras and markers that do not apply to Linux CPython are left out)."""
    import importlib.metadata as md

    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    providers = md.packages_distributions()
    todo: list[str] = []
    for m in sorted(modules):
        if m not in providers:
            raise BuildError(f"module {m!r} is needed by the model or the server but no installed "
                             "distribution provides it; pip install it where you build")
        todo.extend(providers[m])
    env = {**{k: str(v) for k, v in default_environment().items()}, "sys_platform": "linux",
           "platform_system": "Linux", "extra": ""}
    pins: dict[str, str] = {}
    while todo:
        name = todo.pop()
        key = canonicalize_name(name)
        if key in pins:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise BuildError(f"distribution {name!r} is required but not installed here; "
                             f"pip install {name}") from None
        pins[key] = f"{dist.metadata['Name']}=={dist.version}"
        for line in dist.requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return tuple(sorted(pins.values(), key=str.lower))


def server_files() -> list[Path]:
    """The model server's source files: cd4ml/serve/ and the stdlib-only artifact format."""
    serve = _PACKAGE / "serve"
    if not (serve / "__main__.py").is_file():
        raise BuildError(f"{serve}: the model server package is missing; reinstall cd4ml")
    files = [p for p in sorted(serve.rglob("*")) if p.is_file()
             and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]
    return [_PACKAGE / "artifacts.py", *files]


def requirements(spec: Spec, model_dir: Path, frame: bool = True,
                 runtime: str = "sklearn") -> Requirements:
    """What the image must install (pins) and copy (the user's modules the pickle names).

    ``frame``: whether the server will hand this model a pandas DataFrame; it imports pandas
    only then, and pandas is a fifth of the image. ``runtime: onnx``: the image serves the
    compiled model, and needs the server's own imports and onnxruntime, but none of scikit-learn
    and its friends nor what the pickle refers to (it is never opened there).
    """
    from cd4ml.artifacts import MODEL_FILE

    needed = third_party(imported_modules(p for p in server_files() if p.suffix == ".py"))
    needed -= COMPILE_MODULES
    if runtime == "onnx":
        # the server (its HTTP layer included) and ONNX Runtime; never the pickle's modules
        return Requirements(pin((needed - SKLEARN_MODULES) | ONNX_MODULES), ())
    needed -= ONNX_MODULES
    if not frame:
        needed -= FRAME_MODULES
    user: list[Path] = []
    for m in sorted(third_party(pickle_modules(model_dir / MODEL_FILE))):
        local = _user_module(spec.root, m)
        if local is None:
            needed.add(m)
            continue
        user.append(local)
        files = [local] if local.is_file() else sorted(local.rglob("*.py"))
        local_names = {p.stem for p in spec.root.glob("*.py")} | {m}
        needed |= third_party(imported_modules(files)) - local_names
    return Requirements(pin(needed), tuple(user))


def needs_frame(model: ModelVersion) -> bool:
    """Whether the server will build a DataFrame for this model (and so needs pandas), as the
    predictor decided when the model was registered (``signature["frame"]``). The build host
    never unpickles a model to find out; a version recorded before cd4ml kept that answer
    carries pandas, to be safe."""
    recorded = model.signature.get("frame")
    return recorded if isinstance(recorded, bool) else True


def _user_module(root: Path, name: str) -> Path | None:
    for candidate in (root / f"{name}.py", root / name):
        if candidate.is_file() or (candidate / "__init__.py").is_file():
            return candidate
    return None


# ------------------------------------------------------------------------ build options


def ca_bundle() -> Path | None:
    """The CA bundle to copy into the build context for pip, or None (the default).

    Only when asked: ``CD4ML_BUILD_CA_BUNDLE=path``, or in CI (``CI=true``) the bundle pip uses
    on this machine. A user's image never gets a copy of their machine's trust store otherwise.
    """
    explicit = os.environ.get(CA_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise BuildError(f"{CA_ENV}={explicit}: no such file; point it at a PEM bundle")
        return path
    if os.environ.get("CI", "").lower() != "true":
        return None
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("REQUESTS_CA_BUNDLE"),
                      os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def pip_index_url() -> str | None:
    """The package index pip uses here (``PIP_INDEX_URL``, else pip's config files), when it is
    not PyPI's default: the build must install from the same place. file:// indexes do not
    exist inside the build and are left out."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        files = [os.environ.get("PIP_CONFIG_FILE"), "/etc/xdg/pip/pip.conf", "/etc/pip.conf",
                 str(Path.home() / ".pip/pip.conf"), str(Path.home() / ".config/pip/pip.conf")]
        parser = configparser.ConfigParser()
        parser.read([f for f in files if f])
        for section in ("install", "global"):
            if parser.has_option(section, "index-url"):
                url = parser.get(section, "index-url")
                break
    if url and re.match(r"https?://", url.strip()):
        return url.strip()
    return None


# ------------------------------------------------------------------------ rendering


def template_path(spec: Spec) -> Path:
    """The spec's own template (image.dockerfile), else ``infra/docker/Dockerfile.j2`` beside
    the spec or one level up (where ``cd4ml init`` copies it), else cd4ml's."""
    if spec.image.dockerfile is not None:
        return spec.image.dockerfile
    from cd4ml.release.render import template_dirs

    for directory in reversed(template_dirs(spec, "docker")):
        if (directory / "Dockerfile.j2").is_file():
            return directory / "Dockerfile.j2"
    raise BuildError("cd4ml's infra/docker/Dockerfile.j2 is missing; reinstall cd4ml")


def base_image(spec: Spec) -> str:
    """``CD4ML_BASE_IMAGE`` (a machine's stand-in for the spec's base) or spec.image.base."""
    return os.environ.get("CD4ML_BASE_IMAGE") or spec.image.base


def labels(spec: Spec, model: ModelVersion, git_commit: str | None, data_hash: str | None,
           base: str) -> dict[str, str]:
    """OCI annotations plus the lineage ids ``cd4ml lineage`` and a deploy can read back."""
    from cd4ml import __version__

    out = {
        "org.opencontainers.image.title": f"cd4ml-{spec.name}",
        "org.opencontainers.image.description": f"cd4ml model server for {model.ref} ({model.task})",
        "org.opencontainers.image.version": str(model.version),
        # the model's creation time, not the build's: the same model gives the same image
        "org.opencontainers.image.created": model.created_at,
        "org.opencontainers.image.revision": git_commit or "",
        "org.opencontainers.image.vendor": "cd4ml",
        "org.opencontainers.image.base.name": base,
        "cd4ml.project": spec.project, "cd4ml.pipeline": spec.name,
        "cd4ml.model.version": str(model.version),
        "cd4ml.model.sha256": model.sha256,
        "cd4ml.run.id": model.run_id,
        "cd4ml.git.commit": git_commit or "",
        "cd4ml.data.hash": data_hash or "",
        "cd4ml.version": __version__,
    }
    return out


def _dq(value: Any) -> str:
    text = str(value)
    if "\n" in text or "\r" in text:
        raise BuildError(f"label value {text[:40]!r}... has a line break; labels are one line")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(template: Path, **variables: Any) -> str:
    """Render a Dockerfile template; a template error names the file and line."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    env.filters["dq"] = _dq
    try:
        return env.from_string(template.read_text(encoding="utf-8")).render(**variables)
    except FileNotFoundError:
        raise BuildError(f"{template}: no such Dockerfile template; fix image.dockerfile") from None
    except jinja2.TemplateSyntaxError as e:
        raise BuildError(f"{template}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.UndefinedError as e:
        raise BuildError(f"{template}: {e.message}; the variables are listed in "
                         "infra/docker/Dockerfile.j2's header") from None


@dataclass(frozen=True)
class Context:
    directory: Path
    dockerfile: str
    requirements: Requirements
    buildargs: dict[str, str]


def make_context(directory: Path, spec: Spec, model: ModelVersion, *, git_commit: str | None,
                 data_hash: str | None, ca: Path | None = None,
                 index_url: str | None = None, compiled: Path | None = None,
                 compiler: bool = False) -> Context:
    """Write the build context: Dockerfile, requirements.txt, app/ (the server), model/.

    ``compiled``: a directory with ``model.onnx`` and ``compiled.json`` that passed parity
    (:mod:`cd4ml.release.compile`): the image then serves them with ONNX Runtime.
    ``compiler``: the compile stage's image instead: the scikit-learn image's template and
    pins plus the converter's, and an empty ``model/`` (the model is mounted when it runs), with
    nothing of one model version in it, so that the engine's layer cache serves every later
    build of the pipeline, offline ones included."""
    from cd4ml.artifacts import META_FILE, MODEL_FILE
    from cd4ml.serve.compiled import ONNX_FILE, REPORT_FILE

    model_dir = Path(model.artifact_uri)
    for name in (MODEL_FILE, META_FILE):
        if not (model_dir / name).is_file():
            raise BuildError(f"{model_dir / name}: missing; the artifact of {model.ref} is "
                             "incomplete, retrain it")
    directory.mkdir(parents=True, exist_ok=True)
    runtime = "onnx" if compiled is not None else "sklearn"
    reqs = requirements(spec, model_dir, frame=needs_frame(model), runtime=runtime)
    base = base_image(spec)
    tags = {**labels(spec, model, git_commit, data_hash, base), "cd4ml.runtime": runtime}
    if compiler:
        reqs = Requirements(_merged(reqs.pins, pin(COMPILER_MODULES)), reqs.user_modules)
        tags = {**{k: v for k, v in tags.items() if k in _PIPELINE_LABELS},
                "org.opencontainers.image.title": f"cd4ml-{spec.name}-compiler",
                "cd4ml.role": "compiler"}
    text = render(
        template_path(spec), base_image=base, requirements=reqs.pins,
        ca_bundle=CA_FILE if ca else None, pip_index_url=bool(index_url), app_dir=APP_DIR,
        model_dir=MODEL_DIR, port=PORT, uid=UID, model_sha256="" if compiler else model.sha256,
        labels=tags)
    (directory / "Dockerfile").write_text(text)
    (directory / "requirements.txt").write_text("".join(f"{p}\n" for p in reqs.pins))
    app = directory / "app" / "cd4ml"
    for src in server_files():
        dst = app / src.relative_to(_PACKAGE)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    # the package's own __init__ may grow imports of the rest of cd4ml: the image gets a stub
    (app / "__init__.py").write_text('"""cd4ml model server (image copy)."""\n')
    for local in reqs.user_modules:
        target = directory / "app" / local.name
        if local.is_dir():
            shutil.copytree(local, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(local, target)
    (directory / "model").mkdir()
    for name in () if compiler else (MODEL_FILE, META_FILE):
        shutil.copyfile(model_dir / name, directory / "model" / name)
    if compiled is not None:
        # model.pkl stays: its sha256 is the model's identity everywhere; it is never unpickled
        for name in (ONNX_FILE, REPORT_FILE):
            shutil.copyfile(compiled / name, directory / "model" / name)
    if ca:
        shutil.copyfile(ca, directory / CA_FILE)
    _normalise(directory)
    return Context(directory, text, reqs, {"PIP_INDEX_URL": index_url} if index_url else {})


def _merged(*pin_sets: tuple[str, ...]) -> tuple[str, ...]:
    """One pin per distribution (both sets are this machine's, so the versions agree)."""
    from packaging.utils import canonicalize_name

    out = {canonicalize_name(p.split("==")[0]): p for pins in pin_sets for p in pins}
    return tuple(sorted(out.values(), key=str.lower))


def _normalise(directory: Path) -> None:
    # the same bytes must give the same layer: fixed modes and times, whoever built the tree
    for p in [directory, *directory.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
        os.utime(p, (0, 0))
