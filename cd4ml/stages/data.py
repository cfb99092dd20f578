"""Reading a pipeline's data, hashing it (a file, or a frame a tracked run logs), and choosing
the held-out rows.

The held-out split depends only on the data, the spec's split settings and the seed, so the
candidate and the production model are always scored on the same rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cd4ml.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from cd4ml.spec import DataSpec, Spec


_READERS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
            ".json": "json", ".jsonl": "jsonl"}


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes: the identity of a data set."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise DataError(f"{path}: cannot read the data: {e.strerror or e}") from None
    return h.hexdigest()


def frame_hash(frame: pd.DataFrame) -> str:
    """sha256 of a DataFrame's content: column names and dtypes, then every row's values in
    order. The index is left out, so a filtered-and-reset copy hashes like the original rows."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    try:
        rows = pd.util.hash_pandas_object(frame, index=False)
    except TypeError as e:
        raise DataError(f"cannot hash the frame: {e}; columns must hold scalars "
                        "(numbers, text, booleans, dates), not lists or dicts") from None
    h.update(rows.to_numpy().tobytes())
    return h.hexdigest()


def file_shape(path: Path) -> tuple[str, int, list[str]]:
    """Format, row count and column names of a data file, read as cheaply as the format allows."""
    import pandas as pd

    fmt = _READERS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot count the rows of a {path.suffix or 'suffix-less'} file; "
                        "log a .csv, .tsv, .parquet or .json(l) file, or pass a DataFrame")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            return fmt, int(meta.num_rows), [str(n) for n in meta.schema.names]
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
        else:
            frame = pd.read_json(path, lines=fmt == "jsonl")
    except Exception as e:  # noqa: BLE001 - each reader raises its own types for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot read as {fmt}: {first}") from None
    return fmt, len(frame), [str(c) for c in frame.columns]


def load_frame(data: DataSpec) -> pd.DataFrame:
    """Load the data set and check that the columns the spec names are there."""
    import pandas as pd

    try:
        if data.format == "parquet":
            frame = pd.read_parquet(data.path)
        else:
            frame = pd.read_csv(data.path)
    except FileNotFoundError:
        raise DataError(f"{data.path}: no such data file; fix data.path in the spec") from None
    except Exception as e:  # noqa: BLE001  (pandas and pyarrow raise many types for a malformed file)
        raise DataError(f"{data.path}: cannot parse as {data.format}: {str(e).splitlines()[0]}") from None
    if frame.empty:
        raise DataError(f"{data.path}: the data set has no rows")
    missing = [c for c in (data.target, *(data.features or ()), *data.slices) if c not in frame.columns]
    if missing:
        raise DataError(f"{data.path}: column {missing[0]!r} named in the spec is missing "
                        f"(columns: {', '.join(map(str, frame.columns[:12]))})")
    return frame


def feature_columns(data: DataSpec, frame: pd.DataFrame) -> list[str]:
    """The spec's features, or every column but the target and the slice columns."""
    if data.features is not None:
        return list(data.features)
    return [c for c in frame.columns if c != data.target and c not in data.slices]


@dataclass(frozen=True)
class Split:
    train_index: list[int]
    test_index: list[int]


def split(spec: Spec, frame: pd.DataFrame) -> Split:
    """Deterministic train/held-out split by the spec's test_size, seed and stratification."""
    from sklearn.model_selection import train_test_split

    idx = list(range(len(frame)))
    stratify = None
    if spec.model.task == "classification" and spec.split.stratify:
        counts = frame[spec.data.target].value_counts()
        # stratifying needs two rows of every class; fall back to a plain split otherwise
        if len(counts) > 1 and counts.min() >= 2:
            stratify = frame[spec.data.target]
    try:
        train_idx, test_idx = train_test_split(
            idx, test_size=spec.split.test_size, random_state=spec.split.seed, stratify=stratify)
    except ValueError as e:
        raise DataError(f"{spec.data.path}: cannot split {len(frame)} rows: {e}") from None
    return Split(sorted(train_idx), sorted(test_idx))
