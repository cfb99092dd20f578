"""The hostile corpus (tests/hostile/): specs and data sets written to leak secrets, run code,
exhaust memory or bless a useless model. Every case must end in one clear error line, a non-zero
exit, no traceback, no secret in the output, no file written by a command it smuggled in, and no
blessed model in the store.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from cd4ml.cli import main
from cd4ml.store import Store

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "hostile" / "specs"
CASES = sorted(p for p in CORPUS.glob("*.yaml") if not p.name.startswith("_"))
BOMBS = [p for p in CASES if "bomb" in p.name]
SECRET = "ghp_hostileTokenThatMustNeverBePrinted0123"


def _expected(case: Path) -> str:
    first = case.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{case.name}: first line must say '# expect: ...'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("case", [c for c in CASES if c not in BOMBS], ids=lambda p: p.stem)
def test_hostile_case_is_refused_in_one_line(case, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "store.db"
    code = main(["run", "-p", str(case), "--store", f"sqlite:///{db}"])
    out, err = capsys.readouterr()
    assert code in (1, 2), (code, out, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("cd4ml: error: "), err
    assert _expected(case) in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    assert not (tmp_path / "hostile-pwned").exists(), "a command named in the spec ran"
    if db.exists():
        store = Store(f"sqlite:///{db}")
        assert not [m for m in store.models("hostile") if m.blessed]


def test_a_secret_in_a_file_named_by_the_spec_is_redacted(tmp_path):
    """Opted out of the repository fence, /proc/self/environ is read as a CSV header: the token
    it holds (in a process started with it, as in CI) is still never printed."""
    proc = subprocess.run([sys.executable, "-m", "cd4ml", "run", "-p",
                           str(CORPUS / "data_path_proc_environ_opted_out.yaml"),
                           "--store", f"sqlite:///{tmp_path / 's.db'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "GITHUB_TOKEN": SECRET})
    assert proc.returncode == 2 and "is not in environ" in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr and SECRET[:12] not in proc.stderr


def test_clean_base_of_the_corpus_trains_and_blesses(tmp_path, monkeypatch):
    """The corpus' base spec is valid: each case fails for its own reason, not the base's."""
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "base.yaml"
    base.write_text((CORPUS / "_base.yaml").read_text().replace("../data/", str(CORPUS.parent / "data") + "/")
                    + "allow_paths_outside_repository: true\n")
    assert main(["run", "-p", str(base), "--store", f"sqlite:///{tmp_path / 's.db'}"]) == 0


def test_a_relaxed_check_warns_and_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "relaxed.yaml"
    text = (CORPUS / "data_stray_text.yaml").read_text()
    spec.write_text(text.replace("../data/", str(CORPUS.parent / "data") + "/")
                    .replace("  target: target\n", "  target: target\n  relax: [stray_text]\n")
                    + "allow_paths_outside_repository: true\n")
    assert main(["run", "-p", str(spec), "--store", f"sqlite:///{tmp_path / 's.db'}"]) == 0
    assert "relaxed by data.relax: stray_text" in capsys.readouterr().err


@pytest.mark.parametrize("case", BOMBS, ids=lambda p: p.stem)
def test_alias_bomb_is_refused_within_a_memory_ceiling(case, tmp_path):
    """In a process of its own under a 1 GiB address-space limit: without the bound, expanding the
    bomb grows without end (4.1 GB after 92 s was seen)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run([sys.executable, "-m", "cd4ml", "validate", "-p", str(case),
                           "--store", f"sqlite:///{tmp_path / 's.db'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=limit, check=False)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert _expected(case) in proc.stderr and "Traceback" not in proc.stderr
    print(f"{case.stem}: refused, peak RSS {peak_mb:.0f} MB")


@pytest.mark.parametrize("body,says", [
    ("sys.exit(0)", "called sys.exit(0)"),
    ("raise KeyboardInterrupt", "was interrupted"),
])
def test_an_entry_point_that_exits_fails_the_run(tmp_path, monkeypatch, capsys, body, says):
    """A training script that calls sys.exit(0) used to leave CI green with no message."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(CORPUS.parent / "data" / "clean.csv", tmp_path / "clean.csv")
    (tmp_path / "quits.py").write_text(f"import sys\n\n\ndef train(run, data):\n    {body}\n")
    (tmp_path / "quits.yaml").write_text(
        (CORPUS / "_base.yaml").read_text().replace("../data/clean.csv", "clean.csv")
        .replace("  estimator: sklearn.linear_model:LogisticRegression\n  params: {max_iter: 200}\n",
                 "  entry_point: quits.py\n"))
    db = tmp_path / "s.db"
    assert main(["run", "-p", str(tmp_path / "quits.yaml"), "--store", f"sqlite:///{db}"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("cd4ml: error: entry point") and says in last, last
    assert [r.status for r in Store(f"sqlite:///{db}").runs("hostile")] == ["failed"]
