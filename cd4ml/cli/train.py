"""``cd4ml train``: fit the spec's estimator and register a model version, in a run of its own."""

from __future__ import annotations

import argparse

from cd4ml.cli.common import add_common, load_pipeline, store_with_progress


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from cd4ml.integrations.git import git_info
    from cd4ml.reporting.console import print_json, to_jsonable
    from cd4ml.stages.data import file_hash
    from cd4ml.stages.train import train
    from cd4ml.states import RunStatus

    spec = load_pipeline(args)
    git = git_info(spec.root)
    with store_with_progress(args) as store:
        current = store.start_run(
            spec.name, git_commit=git.commit, branch=git.branch, actor=git.actor,
            spec_hash=spec.spec_hash, data_hash=file_hash(spec.data.path),
            params={"model": dict(spec.model.params), "seed": spec.model.seed},
            tags={"stage": "train", **git.tags})
        try:
            result = train(spec, store, current.id)
        except BaseException as e:
            store.finish_run(current.id, RunStatus.FAILED, error=str(e) or type(e).__name__)
            raise
        store.finish_run(current.id, RunStatus.SUCCEEDED)
    if args.json:
        print_json({"run_id": current.id, **to_jsonable(result)})
    else:
        print(f"trained {result.model.ref} in run {current.id}: {result.train_rows} training rows, "
              f"{result.seconds:.2f}s")
        print(f"artifact {result.artifact_dir}  sha256 {result.sha256}")
    return 0
