"""The compiled serving path: the model as ONNX, run by ONNX Runtime, with the predictor's interface.

An image built with ``image.runtime: onnx`` (or ``auto``, where conversion and parity passed)
carries ``model.onnx`` and ``compiled.json`` beside ``model.pkl``/``model.json``, and neither
scikit-learn, scipy nor pandas: this module needs only numpy and onnxruntime. ``model.pkl``
stays in the image as the identity every check reads (its sha256), and is never unpickled.

``compiled.json`` is written by :mod:`cd4ml.serve.compile` in a locked-down container of the
scikit-learn image. It records how rows become the graph's inputs, the classes, the tolerance
the parity check held the graph to, what it measured, and a few probe rows with scikit-learn's
answers: at load the server runs them again and refuses to start unless the answers are still
within the tolerance (the same runtime version is pinned, so they are, unless something was
tampered with).

The parity rule (:func:`compare`), used at build, at load and by infra validation: labels
identical; probabilities and regression values within ``atol + rtol * |expected|``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cd4ml.serve.predictor import Prediction
from cd4ml.serve.schema import Field, label_key

ONNX_FILE = "model.onnx"
REPORT_FILE = "compiled.json"
#: what a missing text value is fed as (:func:`cd4ml.serve.compile._missing_text_category`)
MISSING_TEXT = "\x00cd4ml:missing"


class CompiledMismatch(Exception):
    """The compiled model is not the recorded one, or no longer answers as scikit-learn did."""


@dataclass(frozen=True)
class Tolerance:
    """How far a compiled output may sit from scikit-learn's: ``atol + rtol * |expected|``.

    ONNX Runtime computes trees and most classifiers in float32; measured on the four benchmark
    families the worst gaps were 1.1e-6 (probabilities) and under 1e-6 relative (regression),
    so 1e-5 leaves room without letting a real difference (a wrong branch moves a probability by
    more than 1e-3) through. Labels have no tolerance: they must be identical."""

    rtol: float = 1e-5
    atol: float = 1e-5

    def __str__(self) -> str:
        return f"labels identical; numbers within {self.atol:g} + {self.rtol:g} x |expected|"


TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Parity:
    """What a comparison of two sets of answers found."""

    rows: int
    passed: bool
    max_abs_diff: float
    first: str  # the first difference past the rule, or ""


def compare(expected: list, got: list, expected_proba: list | None = None,
            got_proba: list | None = None, *, classifier: bool,
            tolerance: Tolerance = TOLERANCE) -> Parity:
    """Hold ``got`` to ``expected`` under the parity rule (plain lists: the build host uses it
    on JSON answers). Classifier labels must be equal; regression values and probabilities
    (row by row, in the same class order) within the tolerance."""
    worst = 0.0
    first = ""
    if len(got) != len(expected):
        return Parity(len(expected), False, math.inf,
                      f"{len(got)} answers for {len(expected)} rows")

    def close(a: Any, b: Any) -> bool:
        nonlocal worst
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError):
            return a == b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        d = abs(a - b)
        worst = max(worst, d)
        return d <= tolerance.atol + tolerance.rtol * abs(b)

    for i, (e, g) in enumerate(zip(expected, got)):
        ok = e == g and type(e) is type(g) if classifier else close(g, e)
        if not ok and not first:
            first = f"row {i}: {g!r} != {e!r}"
    if expected_proba is not None:
        if got_proba is None or len(got_proba) != len(expected_proba):
            return Parity(len(expected), False, math.inf, first or "no probabilities to compare")
        for i, (e, g) in enumerate(zip(expected_proba, got_proba)):
            # a list, not a generator: every value counts towards the largest difference
            if len(e) != len(g) or not all([close(b, a) for a, b in zip(e, g)]):  # noqa: C419
                first = first or f"row {i}: probabilities {g} vs {e}"
    return Parity(len(expected), not first, worst, first)


# ------------------------------------------------------------------------------ serving


@dataclass(frozen=True)
class Layout:
    """How checked rows (signature order) become the graph's inputs.

    ``matrix``: one float tensor named ``X``, columns in ``order`` (positions in a row);
    ``columns``: one ``[n, 1]`` tensor per feature, named after it, in the model's order (row
    positions in ``order``), of ``types[j]`` (``float32``, ``float64``, ``int64`` or ``str``):
    for models that select columns by name."""

    kind: str  # matrix | columns
    dtype: str  # the float type of numbers (float32 | float64)
    order: tuple[int, ...] = ()
    types: tuple[str, ...] = ()


class OnnxPredictor:
    """A compiled model behind :class:`cd4ml.serve.predictor.Predictor`'s interface."""

    runtime = "onnx"
    shortcut = False
    single_call = True  # labels and probabilities come from one run of the graph
    positional = False
    needs_frame = False

    def __init__(self, graph: bytes, fields: tuple[Field, ...], report: dict, threads: int = 1):
        import numpy as np
        import onnxruntime as ort

        self.fields = fields
        self.report = report
        self.classifier = report["task"] == "classification"
        self.tolerance = Tolerance(**report["tolerance"])
        lay = report["layout"]
        self.layout = Layout(lay["kind"], lay["dtype"], tuple(lay.get("order", ())),
                             tuple(lay.get("types", ())))
        self.classes = report.get("classes")
        self._keys = tuple(label_key(c) for c in self.classes or ())
        self._np = np
        self._float = np.dtype(self.layout.dtype)
        options = ort.SessionOptions()
        # the server gives each worker its share of the CPUs; ORT's own pool would take them all
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self._outputs = outputs[:2] if self.classifier else outputs[:1]
        self._index = {c: i for i, c in enumerate(self.classes or ())}
        self._check_probes()

    def predict(self, rows: list[list[Any]], matrix: Any = None) -> Prediction:
        """Predict checked rows (``matrix``: the same as a float64 array, when the request's
        parser made one); raises ``ValueError`` when the graph refuses them."""
        feeds = self.inputs(rows, matrix)
        try:
            out = self.session.run(self._outputs, feeds)
        except Exception as e:  # noqa: BLE001 - ORT raises its own types for bad values
            raise ValueError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        if not self.classifier:
            return Prediction(out[0].reshape(-1).astype("float64").tolist())
        labels = out[0].reshape(-1).tolist()
        if self.classes is not None and labels and type(labels[0]) is not type(self.classes[0]):
            # e.g. bool classes come back as int64: answer in the classes' own type
            labels = [self.classes[self._index[v]] for v in labels]
        proba = out[1].astype("float64")
        return Prediction(labels, proba.tolist(), self._keys, bool(self._np.isfinite(proba).all()))

    def inputs(self, rows: list[list[Any]], matrix: Any = None) -> dict[str, Any]:
        """The graph's inputs for checked rows."""
        np = self._np
        lay = self.layout
        if lay.kind == "matrix":
            X = np.array(rows, dtype=np.float64) if matrix is None else matrix
            if X.ndim != 2:
                X = X.reshape(len(rows), len(self.fields))
            if lay.order != tuple(range(len(self.fields))):
                X = X[:, list(lay.order)]
            return {self._names[0]: X.astype(self._float, copy=False)}
        feeds = {}
        for name, i, kind in zip(self._names, lay.order, lay.types):
            values = [r[i] for r in rows]
            if kind == "str":
                column = np.array([MISSING_TEXT if v is None else v for v in values], dtype=object)
            else:
                column = np.array(values, dtype=np.float64 if kind != "int64" else np.int64)
                column = column.astype(kind, copy=False)
            feeds[name] = column.reshape(-1, 1)
        return feeds

    def _check_probes(self) -> None:
        probe = self.report.get("probe") or {}
        rows = probe.get("rows") or []
        if not rows:
            return
        got = self.predict(rows)
        parity = compare(probe["predictions"], got.predictions, probe.get("probabilities"),
                         got.proba, classifier=self.classifier, tolerance=self.tolerance)
        if not parity.passed:
            raise CompiledMismatch(f"the compiled model no longer answers as scikit-learn did on "
                                   f"the recorded probe rows ({parity.first}); rebuild the image")


def load(model_dir: Path, fields: tuple[Field, ...], model_sha256: str,
         threads: int = 1) -> OnnxPredictor | None:
    """The compiled predictor of ``model_dir``, or None when the model was not compiled.

    Refuses (:class:`CompiledMismatch`) a graph whose sha256 is not the one recorded beside it,
    or that was compiled from another ``model.pkl`` than the one being served."""
    from cd4ml.artifacts import verify_file

    report_path = model_dir / REPORT_FILE
    if not report_path.is_file():
        return None
    try:
        report = json.loads(report_path.read_text())
    except ValueError as e:
        raise CompiledMismatch(f"{report_path}: not JSON: {e}; rebuild the image") from None
    if report.get("runtime") != "onnx":
        return None
    if report.get("model_sha256") != model_sha256:
        raise CompiledMismatch(f"{report_path}: compiled from model sha256 "
                               f"{str(report.get('model_sha256'))[:12]}..., not the served "
                               f"{model_sha256[:12]}...; rebuild the image")
    graph = model_dir / ONNX_FILE
    verify_file(graph, str(report.get("onnx_sha256")), CompiledMismatch, "rebuild the image")
    return OnnxPredictor(graph.read_bytes(), fields, report, threads)


def tolerance_dict(tolerance: Tolerance = TOLERANCE) -> dict:
    return asdict(tolerance)
