"""Costs of the git store beside the SQLite store, measured in the same run.

Prints: the cost of one write (a commit pushed to a local bare repository over file://) beside
the same write on SQLite; a cold rebuild of the cache from a branch holding 1,000 pipeline runs
(8 records each, as `cd4ml run` writes them; target <= 5 s); and an incremental read (open the
store and list runs and models) after one more run landed on the branch, over the same read on
SQLite (target <= 0.3 s more).

The 1,000 runs are written once into SQLite with each write transaction journaled as the git
store journals it, then committed to the branch with one `git fast-import` (pushing 8,000
commits one by one would only measure the writer).
Run: python bench/bench_store_git.py
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import median_seconds
from cd4ml.states import RuleKind
from cd4ml.store import Store
from cd4ml.store.journal import Record
from cd4ml.store.records import RuleOutcome
from tests.helpers import Journaled

RUNS = 1000
WRITES = 20


def one_run(store: Store, i: int) -> None:
    """What `cd4ml run` writes for one pipeline run."""
    run = store.start_run("wine", git_commit=f"{i:040x}", branch="main", actor="bench",
                          data_hash="d" * 64, params={"i": i})
    store.record_validation(run.id, "wine", True, [{"expectation": "e", "success": True}] * 15, [], None)
    store.record_dataset("d" * 64, "data/wine.csv", "csv", 178, [f"c{j}" for j in range(14)])
    model = store.register_model("wine", run.id, "classification", f"/a/{i}", f"{i:064x}",
                                 {"inputs": []}, {})
    store.set_artifact_uri(model.id, f"/a/wine/v{model.version}")
    store.record_metrics(run.id, [{"name": f"m{j}", "value": 0.9, "slice": "s" if j > 4 else "",
                                   "slice_value": "x" if j > 4 else ""} for j in range(15)])
    rule = RuleOutcome("accuracy >= 0.85", "accuracy", None, None, RuleKind.MIN, 0.9, 0.85, None,
                       True, "0.9 >= 0.85", 1)
    store.record_gate(run.id, model.id, True, [rule] * 5, None)
    store.finish_run(run.id, "succeeded")


def fast_import(repo: Path, records: list[Record]) -> None:
    lines: list[bytes] = []
    for n, record in enumerate(records):
        data = record.to_bytes()
        msg = f"{record.op}: seed {n}\n".encode()
        lines += [b"commit refs/heads/cd4ml/state\n",
                  f"committer bench <bench@localhost> {1_700_000_000 + n} +0000\n".encode(),
                  f"data {len(msg)}\n".encode(), msg,
                  f"M 100644 inline {record.path}\n".encode(), f"data {len(data)}\n".encode(), data, b"\n"]
    subprocess.run(["git", "--git-dir", str(repo), "fast-import", "--quiet"], input=b"".join(lines),
                   check=True)


def timed(fn, repeat: int = 5) -> float:
    return median_seconds(fn, repeat, warm=False)


def reads(url: str) -> None:
    with Store(url) as store:
        store.runs("wine", limit=50)
        store.models("wine", limit=50)


def cpu_seconds() -> tuple[float, float]:
    """CPU time (user + system) used so far by this process, and by its finished children
    (git): on a loaded machine wall time says little, CPU time what the work costs."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="cd4ml-bench-git-"))
    os.environ.pop("GITHUB_TOKEN", None)
    remote = work / "state.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git_url = f"git+file://{remote}"

    # a write: a run started, on each store
    os.environ["CD4ML_HOME"] = str(work / "writer")
    sqlite_w, git_w = Store(f"sqlite:///{work / 'w.db'}"), Store(git_url)
    write_sqlite = timed(lambda: sqlite_w.start_run("wine"), WRITES)
    write_git = timed(lambda: git_w.start_run("wine"), WRITES)

    # 1,000 runs on the branch, and the same in a SQLite file
    remote2 = work / "big.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote2)], check=True)
    seed = Journaled(f"sqlite:///{work / 'seed.db'}")
    seed.actor = "bench"
    for i in range(RUNS):
        one_run(seed, i)
    fast_import(remote2, seed.records)
    seeded = len(seed.records)
    big = f"git+file://{remote2}"

    os.environ["CD4ML_HOME"] = str(work / "cold")
    t, cpu = time.perf_counter(), cpu_seconds()
    reads(big)
    cold = time.perf_counter() - t
    load = os.getloadavg()[0]
    cold_cpu = [after - before for after, before in zip(cpu_seconds(), cpu, strict=True)]

    # one more run lands (written by another runner), then a read command on the warm reader
    increments = []
    for i in range(5):
        os.environ["CD4ML_HOME"] = str(work / "other")
        with Store(big) as other:
            one_run(other, RUNS + i)
        os.environ["CD4ML_HOME"] = str(work / "cold")
        t = time.perf_counter()
        reads(big)
        increments.append(time.perf_counter() - t)
        one_run(seed, RUNS + i)
    incremental = statistics.median(increments)
    sqlite_read = timed(lambda: reads(f"sqlite:///{work / 'seed.db'}"))
    warm = timed(lambda: reads(big))

    print(f"{seeded} records on the branch for {RUNS} runs; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (during the cold rebuild: {load:.1f})")
    print("| measure | git store | SQLite | target | verdict |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| one write (start_run), median of {WRITES} | {write_git * 1000:.0f} ms | "
          f"{write_sqlite * 1000:.1f} ms | - | - |")
    print(f"| cold cache rebuild, {RUNS} runs, + read | {cold:.2f} s (CPU: {cold_cpu[0]:.2f} s "
          f"Python + {cold_cpu[1]:.2f} s git) | - | <= 5 s | {'pass' if cold <= 5 else 'FAIL'} |")
    print(f"| read after one new run (fetch + replay 8 records), median of 5 | {incremental:.3f} s | "
          f"{sqlite_read:.3f} s | <= +0.3 s | {'pass' if incremental - sqlite_read <= 0.3 else 'FAIL'} |")
    print(f"| read, nothing new (fetch only), median of 5 | {warm:.3f} s | {sqlite_read:.3f} s | - | - |")


if __name__ == "__main__":
    main()
