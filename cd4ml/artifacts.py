"""The model artifact format, shared by training and the model server.

An artifact is a directory::

    model.pkl     the fitted estimator, pickled
    model.json    ArtifactMeta: format, pipeline, version, task, sha256 of model.pkl,
                  input signature, training-data statistics, lineage ids

This module uses only the standard library: the model server imports it inside the image,
where nothing else of cd4ml is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "cd4ml-model/1"
MODEL_FILE = "model.pkl"
META_FILE = "model.json"


class ArtifactMismatch(Exception):
    """The artifact on disk is not the one that was recorded (sha256 differs, or files missing)."""


@dataclass(frozen=True)
class ArtifactMeta:
    """What the server and the lineage need to know about a model artifact.

    ``signature`` is ``{"inputs": [{"name", "dtype", "nullable"}...], "target": str,
    "classes": [...] or None}``; dtype is one of ``float``, ``int``, ``bool``, ``str``.
    ``stats`` maps each feature to its training-data statistics (see ``cd4ml.stages.train``).
    """

    pipeline: str
    task: str
    sha256: str
    signature: dict
    stats: dict = field(default_factory=dict)
    version: int | None = None
    run_id: str | None = None
    data_hash: str | None = None
    git_commit: str | None = None
    spec_hash: str | None = None
    created_at: str | None = None
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, d: dict) -> ArtifactMeta:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    # a crash mid-write must never leave a half artifact that a later run would trust
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(root: str | Path, pipeline: str, estimator: Any) -> tuple[Path, str]:
    """Pickle ``estimator`` into a content-addressed directory under ``root``.

    Returns the directory and the sha256 of ``model.pkl``; the same model bytes land in the
    same directory, so retraining to an identical model writes nothing new.
    """
    blob = pickle.dumps(estimator, protocol=5)
    digest = hashlib.sha256(blob).hexdigest()
    directory = Path(root) / pipeline / digest[:16]
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / MODEL_FILE
    if not target.exists() or sha256_file(target) != digest:
        _atomic_write(target, blob)
    return directory, digest


def publish(blob_dir: str | Path, meta: ArtifactMeta) -> Path:
    """Give a registered model version its own directory (``<pipeline>/v<version>/``): the
    model bytes hard-linked from the content-addressed blob, and a ``model.json`` that names this
    version, so that two versions with identical bytes never share (and overwrite) one
    description."""
    blob_dir = Path(blob_dir)
    if meta.version is None:
        raise ValueError("publish needs meta.version")
    target = blob_dir.parent / f"v{meta.version}"
    target.mkdir(parents=True, exist_ok=True)
    model = target / MODEL_FILE
    if not model.exists():
        try:
            os.link(blob_dir / MODEL_FILE, model)
        except OSError:  # another file system, or links not allowed
            _atomic_write(model, (blob_dir / MODEL_FILE).read_bytes())
    write_meta(target, meta)
    return target


def write_meta(directory: str | Path, meta: ArtifactMeta) -> Path:
    path = Path(directory) / META_FILE
    _atomic_write(path, meta.to_json().encode())
    return path


def read_meta(directory: str | Path) -> ArtifactMeta:
    path = Path(directory) / META_FILE
    try:
        meta = ArtifactMeta.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ArtifactMismatch(f"{path}: missing; the model directory is incomplete") from None
    except (ValueError, TypeError) as e:
        raise ArtifactMismatch(f"{path}: not a cd4ml model description: {e}") from None
    if meta.format != FORMAT:
        raise ArtifactMismatch(f"{path}: format {meta.format!r} is not {FORMAT!r}")
    return meta


def load(directory: str | Path, expected_sha256: str | None = None) -> tuple[Any, ArtifactMeta]:
    """Verify ``model.pkl`` against the recorded sha256, then unpickle it.

    The check comes first: unpickling runs code, so a file that is not the recorded one is
    never opened with pickle.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    expected = expected_sha256 or meta.sha256
    if expected_sha256 and meta.sha256 != expected_sha256:
        raise ArtifactMismatch(
            f"{directory / META_FILE}: records sha256 {meta.sha256[:12]}, expected {expected_sha256[:12]}")
    model_path = directory / MODEL_FILE
    verify_file(model_path, expected, ArtifactMismatch,
                "refusing to load a model that is not the one recorded")
    with open(model_path, "rb") as f:
        return pickle.load(f), meta


def verify_file(path: Path, expected: str, error: type[Exception], fix: str) -> None:
    """Raise ``error`` unless ``path`` exists and has the sha256 ``expected``; ``fix`` ends the
    message with what to do."""
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise error(f"{path}: missing; {fix}") from None
    if actual != expected:
        raise error(f"{path}: sha256 {actual[:12]}... does not match the recorded "
                    f"{str(expected)[:12]}...; {fix}")
