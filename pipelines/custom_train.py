"""Train the wine classifier with your own code, recorded by cd4ml's tracking API.

Two ways to use this file:

* as the training entry point of ``pipelines/wine_custom.yaml`` (``model.entry_point``):
  ``cd4ml run -p pipelines/wine_custom.yaml`` validates the data, calls ``train(run, data)``
  below with the training rows, then evaluates and gates the model it logged, as for a declared
  estimator;
* on its own, from the repository root: ``python pipelines/custom_train.py [--n-estimators 200]
  [--gate]`` splits the data itself, trains, logs held-out metrics and the model in a tracked
  run, and with ``--gate`` gates the run on the metrics it logged (exit code 1 when it fails).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def train(run, data):
    """The entry point: fit on ``data.X``/``data.y`` (training rows only) and log the model.

    ``data.params`` are the spec's ``model.params``; ``data.seed`` its ``model.seed``.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    params = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1, **dict(data.params)}
    run.log_params(params)
    model = GradientBoostingClassifier(random_state=data.seed, **params)
    model.fit(data.X, data.y)
    # a training curve: the staged accuracy on the training rows, one step per boosting stage
    for step, predicted in enumerate(model.staged_predict(data.X), start=1):
        if step % 25 == 0 or step == params["n_estimators"]:
            run.log_metric("train_accuracy", float((predicted == data.y).mean()), step=step)
    run.log_model(model, signature_from=data.X)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--store", help="store URL (default: $CD4ML_STORE_URL or .cd4ml/cd4ml.db)")
    parser.add_argument("--gate", action="store_true", help="gate the run on the metrics it logged")
    args = parser.parse_args(argv)

    import pandas as pd
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    import cd4ml
    from cd4ml.stages.tracking import TrainingData, gate_run

    spec_path = HERE / "wine_custom.yaml"
    data_path = HERE / "data" / "wine.csv"
    frame = pd.read_csv(data_path)
    features = [c for c in frame.columns if c not in ("target", "alcohol_level")]
    train_rows, test_rows = train_test_split(frame, test_size=0.3, random_state=args.seed,
                                             stratify=frame["target"])
    params = {"n_estimators": args.n_estimators, "max_depth": args.max_depth,
              "learning_rate": args.learning_rate}

    with cd4ml.start_run(pipeline=spec_path, store=args.store, tags={"script": "custom_train.py"}) as run:
        run.log_dataset("wine", data_path)
        data = TrainingData(frame=train_rows, features=tuple(features), target="target",
                            task="classification", seed=args.seed, params=params)
        model = train(run, data)
        predicted = model.predict(test_rows[features])
        run.log_metrics({"accuracy": accuracy_score(test_rows["target"], predicted),
                         "f1_macro": f1_score(test_rows["target"], predicted, average="macro")})
        # the spec gates accuracy per alcohol level too: log it for each level
        for level, rows in test_rows.groupby("alcohol_level"):
            run.log_metric("accuracy", accuracy_score(rows["target"], model.predict(rows[features])),
                           slice="alcohol_level", slice_value=level)

    print(f"run {run.id}: {run.model.ref if run.model else 'no model'}")
    if not args.gate:
        return 0
    result = gate_run(spec_path, run.id, store=args.store)
    for outcome in result.outcomes:
        print(f"  {'pass' if outcome.passed else 'FAIL'}  {outcome.rule}: {outcome.reason}")
    print(f"gate {'passed' if result.passed else 'failed'}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
