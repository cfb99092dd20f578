"""``python -m cd4ml.serve.compile ROWS OUT``: convert the model to ONNX and prove parity, in the image.

Run by the build (``image.runtime: auto | onnx``) in a throwaway container of the scikit-learn
image plus skl2onnx and onnxruntime, as its unprivileged user, without network, read-only but
for ``OUT``: unpickling runs code, so it never happens on the build host. ``ROWS`` holds the
held-out rows (``{"instances": [...]}``); probe rows spanning the training data (its quantile
edges and categories, nulls where a feature may be null) are added to them.

The model is converted with skl2onnx (scikit-learn's own ONNX converter, maintained with it;
ONNX Runtime runs every family cd4ml trains, which treelite, for trees only, would not). Numbers
go in as float64 where the graph keeps them so (linear models, k-NN: exact to 1e-16), else as
float32 (trees, which scikit-learn evaluates in float32 too). A graph may serve only if, on
every row, its labels are scikit-learn's and its numbers are within
:data:`cd4ml.serve.compiled.TOLERANCE`. ``OUT`` gets ``compiled.json`` (the verdict, the
tolerance, what was measured, and on success the layout, classes and probe answers) and, on
success, ``model.onnx``. One JSON line on stdout says what happened; exit 0 either way (the
build decides), 1 when the model cannot even be loaded.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cd4ml.serve.compiled import (
    MISSING_TEXT,
    ONNX_FILE,
    REPORT_FILE,
    TOLERANCE,
    Layout,
    OnnxPredictor,
    compare,
    tolerance_dict,
)
from cd4ml.serve.predictor import Predictor, probe_rows
from cd4ml.serve.schema import Field

PROBES_KEPT = 16  # probe rows recorded in compiled.json for the server's check at load


@dataclass(frozen=True)
class Compiled:
    """The outcome: a graph that passed parity (``graph``), or the reason there is none."""

    graph: bytes | None
    report: dict

    @property
    def passed(self) -> bool:
        return self.graph is not None


def compile_model(model: Any, fields: tuple[Field, ...], task: str, stats: dict,
                  held_out: list[list[Any]], model_sha256: str = "") -> Compiled:
    """Convert ``model``, check parity on ``held_out`` rows and probe rows; never raises for a
    model that does not convert or does not agree (the report says why)."""
    predictor = Predictor(model, fields, task, stats)
    probes = probe_rows(fields, stats) + _null_probes(fields, stats)
    rows = [*held_out, *probes]
    classifier = task == "classification"
    expected, expected_proba = _sklearn(model, predictor, rows, classifier)
    base = {"task": task, "model_sha256": model_sha256, "tolerance": tolerance_dict(),
            "rule": str(TOLERANCE), "held_out_rows": len(held_out), "probe_rows": len(probes),
            "versions": _versions()}
    reasons = []
    for layout in _layouts(predictor, fields):
        try:
            graph = _convert(model, fields, layout, classifier)
        except Exception as e:  # noqa: BLE001 - an unsupported model is a verdict, not a crash
            reasons.append(f"{layout.dtype}: skl2onnx cannot convert it: {_first(e)}")
            continue
        classes = predictor.classes
        report = {**base, "layout": {"kind": layout.kind, "dtype": layout.dtype,
                                     "order": list(layout.order), "types": list(layout.types)},
                  "classes": classes}
        try:
            compiled = OnnxPredictor(graph, fields, report)
            got = compiled.predict(rows)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime refusing the graph is a verdict
            reasons.append(f"{layout.dtype}: ONNX Runtime cannot run it: {_first(e)}")
            continue
        parity = compare(expected, got.predictions, expected_proba, got.proba,
                         classifier=classifier)
        if not parity.passed:
            reasons.append(f"{layout.dtype}: parity failed on {parity.first}")
            continue
        import hashlib

        keep = probes[:PROBES_KEPT]
        kept = slice(len(held_out), len(held_out) + len(keep))
        report.update(
            runtime="onnx", max_abs_diff=parity.max_abs_diff, rows_checked=parity.rows,
            onnx_sha256=hashlib.sha256(graph).hexdigest(),
            reason=f"parity on {len(held_out)} held-out and {len(probes)} probe rows "
                   f"({layout.dtype} inputs, largest difference {parity.max_abs_diff:.2g})",
            probe={"rows": keep, "predictions": expected[kept],
                   "probabilities": expected_proba[kept] if expected_proba is not None else None})
        return Compiled(graph, report)
    return Compiled(None, {**base, "runtime": "sklearn", "reason": "; ".join(reasons)
                           or "no ONNX layout fits this model's inputs"})


def _sklearn(model: Any, predictor: Predictor, rows: list[list[Any]],
             classifier: bool) -> tuple[list, list | None]:
    """scikit-learn's own answers (plain ``predict``/``predict_proba``, no shortcut)."""
    X = predictor.matrix(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        labels = model.predict(X).tolist()
        proba = (model.predict_proba(X).tolist()
                 if classifier and hasattr(model, "predict_proba") else None)
    return labels, proba


def _layouts(predictor: Predictor, fields: tuple[Field, ...]) -> list[Layout]:
    """Candidate input layouts, most exact first."""
    if not predictor.needs_frame:
        order = tuple(predictor.order)
        return [Layout("matrix", d, order) for d in ("float64", "float32")]
    # one input per feature in the model's own column order (ColumnTransformer maps by name)
    order = tuple(predictor.order)
    out = []
    for d in ("float64", "float32"):
        types = tuple("str" if f.dtype == "str" else "int64" if f.dtype == "int" and not f.nullable
                      else d for f in (fields[i] for i in order))
        out.append(Layout("columns", d, order, types))
    return out


def _convert(model: Any, fields: tuple[Field, ...], layout: Layout,
             classifier: bool) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    numbers = DoubleTensorType if layout.dtype == "float64" else FloatTensorType
    if layout.kind == "matrix":
        types = [("X", numbers([None, len(fields)]))]
    else:
        kinds = {"str": StringTensorType, "int64": Int64TensorType, "float64": DoubleTensorType,
                 "float32": FloatTensorType}
        types = [(fields[i].name, kinds[t]([None, 1])) for i, t in zip(layout.order, layout.types)]
    options = {id(model): {"zipmap": False}} if classifier else None
    with warnings.catch_warnings(), _hist_gradient_boosting_fix():
        warnings.simplefilter("ignore")
        onx = convert_sklearn(model, initial_types=types, options=options)
    if layout.dtype == "float64":
        _exact_thresholds(onx, model)
    _missing_text_category(onx)
    return onx.SerializeToString()


def _missing_text_category(onx: Any) -> None:
    """Give a missing text value a category of its own that no text can collide with.

    ONNX string tensors have no missing value. scikit-learn's one-hot encoder learns a missing
    value (NaN) as a category, which skl2onnx writes as the string ``"nan"``: the server would
    have to feed ``"nan"`` for a missing value, and a real ``"nan"`` text (unknown to the
    encoder: all zeros in scikit-learn) would then take the missing category. The category is
    renamed :data:`MISSING_TEXT`, which the server feeds for a missing text value; a text
    ``"nan"`` is then unknown, as in scikit-learn. Parity proves it on probe rows with each
    nullable text missing, and with the text ``"nan"`` (a model that learned ``"nan"`` as a
    real category is caught there and served by scikit-learn)."""
    for node in onx.graph.node:
        if node.op_type != "OneHotEncoder":
            continue
        for attr in node.attribute:
            if attr.name == "cats_strings" and b"nan" in attr.strings:
                attr.strings[list(attr.strings).index(b"nan")] = MISSING_TEXT.encode()


def _exact_thresholds(onx: Any, model: Any) -> None:
    """Give a HistGradientBoosting graph its float64 split thresholds.

    scikit-learn compares float64 inputs with float64 thresholds; skl2onnx writes them as float32
    (``nodes_values``), so a value between the two roundings — a training quantile, where the
    bins' edges sit — takes the other branch. ONNX-ML 3 has ``nodes_values_as_tensor`` for
    exact ones; the ensemble's outputs stay float32 (ONNX Runtime's), the graph is told so.
    Thresholds are in the converter's order: trees in order, nodes in order, 0 for leaves."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    predictors = getattr(model, "_predictors", None)
    nodes = [n for n in onx.graph.node
             if n.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor")]
    if predictors is None or len(nodes) != 1:
        return
    exact = [0.0 if n["is_leaf"] else float(n["num_threshold"])
             for trees in predictors for tree in trees for n in tree.nodes]
    node = nodes[0]
    old = next((a for a in node.attribute if a.name == "nodes_values"), None)
    if old is None or len(old.floats) != len(exact):
        return
    node.attribute.remove(old)
    node.attribute.append(helper.make_attribute(
        "nodes_values_as_tensor", numpy_helper.from_array(np.array(exact, dtype=np.float64))))
    for op in onx.opset_import:
        if op.domain == "ai.onnx.ml":
            op.version = max(op.version, 3)
    produced = set(node.output[1:] if node.op_type == "TreeEnsembleClassifier" else node.output)
    for out in onx.graph.output:
        if out.name in produced:
            out.type.tensor_type.elem_type = TensorProto.FLOAT


class _hist_gradient_boosting_fix:
    """skl2onnx 1.20 hands a Python ``False`` to an ONNX integer list for HistGradientBoosting
    leaves, which protobuf 7 refuses; passed as ``0`` it is the same graph. Scoped to one
    conversion in this one-shot process, and checked by parity like everything else."""

    def __enter__(self) -> None:
        from skl2onnx.common import tree_ensemble

        self._module = tree_ensemble
        self._original = original = tree_ensemble.add_node

        def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
            return original(*args, nodes_missing_value_tracks_true=int(
                nodes_missing_value_tracks_true), **kwargs)

        tree_ensemble.add_node = add_node

    def __exit__(self, *exc: object) -> None:
        self._module.add_node = self._original


def _null_probes(fields: tuple[Field, ...], stats: dict) -> list[list[Any]]:
    """Probe rows with each nullable feature missing in turn (NaN has rules of its own), and
    each text feature given the text ``"nan"`` (see :func:`_missing_text_category`)."""
    base = probe_rows(fields, stats, n=1)[0]
    out = []
    for i, f in enumerate(fields):
        values = ([None] if f.nullable and f.dtype in ("float", "int", "str") else []) + (
            ["nan"] if f.dtype == "str" else [])
        for value in values:
            row = list(base)
            row[i] = value
            out.append(row)
    return out


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from cd4ml import artifacts
    from cd4ml.serve.schema import RequestError, fields_of, parse

    out = Path(argv[1])
    try:
        model_dir = Path(os.environ["CD4ML_MODEL_DIR"])
        model, meta = artifacts.load(model_dir, expected_sha256=os.environ.get("CD4ML_MODEL_SHA256"))
        fields = fields_of(meta.signature)
        rows = parse(json.loads(Path(argv[0]).read_text()), fields, max_rows=1_000_000).rows
    except (KeyError, IndexError, artifacts.ArtifactMismatch, RequestError, OSError,
            ValueError) as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"[:500]}))
        return 1
    compiled = compile_model(model, fields, meta.task, meta.stats, rows, meta.sha256)
    if compiled.graph is not None:
        (out / ONNX_FILE).write_bytes(compiled.graph)
    (out / REPORT_FILE).write_text(json.dumps(compiled.report, indent=1, sort_keys=True))
    print(json.dumps({"runtime": compiled.report["runtime"], "reason": compiled.report["reason"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
