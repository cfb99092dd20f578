"""Worker count and thread pools of the model server, from the CPUs the container may use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cd4ml.serve.resources import available_cpus, choose_workers, limit_threads, thread_budget


def cgroup(tmp_path, cpu_max: str | None):
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


def test_the_cgroup_quota_caps_the_affinity_rounded_up(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(cgroup(tmp_path, None)) == affinity
    assert available_cpus(cgroup(tmp_path, "max 100000")) == affinity
    assert available_cpus(cgroup(tmp_path, "50000 100000")) == 1  # --cpus 0.5
    assert available_cpus(cgroup(tmp_path, f"{150000 * 64} 100000")) == affinity
    if affinity >= 2:
        assert available_cpus(cgroup(tmp_path, "150000 100000")) == 2  # --cpus 1.5


def test_garbage_in_cpu_max_is_ignored(tmp_path):
    assert available_cpus(cgroup(tmp_path, "lots")) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value,workers", [(None, 3), ("", 3), ("auto", 3), ("AUTO", 3),
                                           ("1", 1), ("4", 4)])
def test_workers_are_one_per_cpu_unless_given(value, workers):
    assert choose_workers(value, cpus=3) == workers


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_worker_count_is_refused_by_name(value):
    with pytest.raises(ValueError, match=f"workers '{value}' is not a positive whole number"):
        choose_workers(value, cpus=3)


def test_each_worker_gets_an_equal_share_of_threads_unless_the_operator_chose():
    assert thread_budget(4, {}, cpus=4) == 1
    assert thread_budget(1, {}, cpus=4) == 4
    assert thread_budget(3, {}, cpus=8) == 2
    assert thread_budget(8, {}, cpus=2) == 1
    assert thread_budget(4, {"OMP_NUM_THREADS": "3"}, cpus=4) == 3
    assert thread_budget(4, {"OMP_NUM_THREADS": "x"}, cpus=8) == 2


def test_thread_variables_keep_an_operators_value():
    env = {"OPENBLAS_NUM_THREADS": "5"}
    limit_threads(2, env)
    assert env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_NUM_THREADS"] == "5"


def test_the_entry_point_refuses_a_bad_worker_count():
    run = subprocess.run([sys.executable, "-m", "cd4ml.serve", "--model-dir", "/nowhere",
                          "--workers", "zero"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "cd4ml.serve: error: workers 'zero' is not a positive whole number or 'auto'; pass "
        "--workers N or set CD4ML_WORKERS")
