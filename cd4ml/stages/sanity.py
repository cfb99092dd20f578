"""Built-in sanity checks on the data, before any training: what no expectation suite was written
for but would still bless a useless model — one class (accuracy 1.0), a feature with no values, a
numeric column turned into text by one stray value, duplicated column names, NUL bytes.

Each check is an error unless the spec lists it under ``data.relax``, which turns it into a
warning: a team that knows its data can say so, on the record of the spec.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from cd4ml.errors import DataError
from cd4ml.events import StageWarning, emit

if TYPE_CHECKING:
    import pandas as pd

    from cd4ml.spec import Spec

#: a text column with at least this share of numbers is a numeric column with stray values
_NUMERIC_SHARE = 0.9
_CHUNK = 1 << 20


class Check(StrEnum):
    ONE_CLASS = "one_class"
    EMPTY_FEATURE = "empty_feature"
    STRAY_TEXT = "stray_text"
    DUPLICATE_COLUMNS = "duplicate_columns"
    NUL_BYTES = "nul_bytes"


def check(spec: Spec, frame: pd.DataFrame) -> list[str]:
    """Run every check; raise :class:`DataError` on the first that fails and is not relaxed.
    Returns the warnings of relaxed checks that failed (also emitted as warning events)."""
    from cd4ml.stages.data import feature_columns

    warnings: list[str] = []
    for name, problem in _problems(spec, frame, feature_columns(spec.data, frame)):
        message = f"{spec.data.path}: {problem}"
        if name in spec.data.relax:
            warnings.append(f"{message} (relaxed by data.relax: {name})")
            emit(StageWarning("sanity", warnings[-1]))
        else:
            raise DataError(f"{message}; fix the data, or list {name!r} under data.relax in the "
                            "spec to accept it")
    return warnings


def _problems(spec: Spec, frame: pd.DataFrame, features: list[str]):
    from cd4ml.secrets import excerpt

    if spec.data.format == "csv":
        dup = _duplicate_header(spec)
        if dup:
            yield Check.DUPLICATE_COLUMNS, f"column {excerpt(dup)!r} appears more than once in the header"
        row = _nul_line(spec)
        if row:
            yield Check.NUL_BYTES, f"line {row} holds a NUL byte (a binary file, or a broken export?)"
    target = frame[spec.data.target].dropna()
    if target.nunique() < 2:
        what = "class" if spec.model.task == "classification" else "value"
        seen = excerpt(target.iloc[0]) if len(target) else "none"
        yield Check.ONE_CLASS, (f"target {spec.data.target!r} has a single {what} ({seen}); a model "
                                "of it learns nothing and scores perfectly")
    for name in features:
        column = frame[name]
        if column.isna().all():
            yield Check.EMPTY_FEATURE, f"feature {name!r} has no values (every row is missing)"
        elif not _numeric(column):
            stray = _stray_text(column)
            if stray is not None:
                index, value, count = stray
                yield Check.STRAY_TEXT, (f"feature {name!r} is numeric but for {count} text "
                                         f"value(s), e.g. {excerpt(value)!r} at row {index}")


def _duplicate_header(spec: Spec) -> str | None:
    import csv

    with open(spec.data.path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    seen: set[str] = set()
    for name in header:
        if name in seen:
            return name
        seen.add(name)
    return None


def _nul_line(spec: Spec) -> int | None:
    lines = 1
    with open(spec.data.path, "rb") as f:
        while chunk := f.read(_CHUNK):
            at = chunk.find(b"\0")
            if at >= 0:
                return lines + chunk.count(b"\n", 0, at)
            lines += chunk.count(b"\n")
    return None


def _numeric(column: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def _stray_text(column: pd.Series) -> tuple[object, object, int] | None:
    import pandas as pd

    values = column.dropna()
    numbers = pd.to_numeric(values, errors="coerce")
    text = numbers.isna()
    if not text.any() or text.all() or 1 - text.mean() < _NUMERIC_SHARE:
        return None
    first = text.idxmax()
    return first, values[first], int(text.sum())
