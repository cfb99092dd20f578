"""Start-up and no-op run costs of the cd4ml command.

Prints: `cd4ml --help` start-up over bare Python (target <= 0.3 s), and a no-op `cd4ml run`
(inputs unchanged since the last run, so the cache answers) over Python's start-up (target <= 1 s).
Run: python bench/bench_cli.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEAT = 7


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="cd4ml-bench-"))
    try:
        shutil.copytree(ROOT / "pipelines", work / "pipelines")
        env = {**os.environ, "CD4ML_HOME": str(work / ".cd4ml"), "NO_COLOR": "1"}
        env.pop("CD4ML_STORE_URL", None)
        py = sys.executable
        bare = timed([py, "-c", "pass"], env, work)
        helps = timed([py, "-m", "cd4ml", "--help"], env, work)
        spec = "pipelines/wine.yaml"
        subprocess.run([py, "-m", "cd4ml", "run", "-p", spec], env=env, cwd=work, check=False,
                       capture_output=True)
        noop = timed([py, "-m", "cd4ml", "run", "-p", spec], env, work)
        rows = [
            ("bare python start-up", bare, None, None),
            ("cd4ml --help over bare python", helps - bare, 0.3, helps - bare <= 0.3),
            ("no-op cd4ml run over bare python", noop - bare, 1.0, noop - bare <= 1.0),
        ]
        print(f"{'measure':<36} {'seconds':>8} {'target':>8}  verdict   (median of {REPEAT})")
        for name, v, target, ok in rows:
            t = f"<= {target}" if target else ""
            verdict = "" if ok is None else ("PASS" if ok else "FAIL")
            print(f"{name:<36} {v:8.3f} {t:>8}  {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
