"""A breach asks for retraining on GitHub (the local GitHub API server): one issue per pipeline
and environment, opened once and updated after, with the findings table and the lineage; the
retraining workflow dispatched when asked; nothing promoted or deployed."""

from __future__ import annotations

import subprocess
import sys

from cd4ml.watch.monitor import MonitorConfig, monitor
from cd4ml.watch.report import LABEL, marker, report
from cd4ml.watch.window import window
from tests.helpers import ROOT
from tests.watch_world import make_world, shifted


def _breached(world, tmp_path, name="p.jsonl"):
    log = tmp_path / name
    world.log(log, 1, shifted(world.frame))
    return monitor(world.spec, world.store, MonitorConfig(
        "production", window("1h"), logs=(str(log),), scrape=False))


def test_one_issue_per_pipeline_and_environment_and_a_dispatch(spec, store, tmp_path,
                                                               github_env):
    gh = github_env
    world = make_world(spec, store)
    first = report(spec, store, _breached(world, tmp_path), workflow="cd4ml.yml", ref="main")
    assert first.created and first.issue is not None and first.dispatched == "cd4ml.yml"
    (issue,) = gh.issues.values()
    assert marker("wine", "production") in issue["body"]
    assert [label["name"] for label in issue["labels"]] == [LABEL]
    assert "| wine:1 | input drift | proline |" in issue["body"]
    assert "**BREACH**" in issue["body"] and "### Lineage of wine:1" in issue["body"]
    assert f"`{world.models[1].sha256}`" in issue["body"]
    assert gh.dispatches == [{"workflow": "cd4ml.yml", "ref": "main"}]

    second = report(spec, store, _breached(world, tmp_path, "q.jsonl"))
    assert (second.issue, second.created, second.dispatched) == (first.issue, False, None)
    assert len(gh.issues) == 1 and len(gh.dispatches) == 1
    assert not store.deployments()  # asking for retraining promotes nothing


def test_no_breach_no_issue_and_no_token_a_file(spec, store, tmp_path, monkeypatch):
    world = make_world(spec, store)
    quiet_log = tmp_path / "quiet.jsonl"
    world.log(quiet_log, 1, world.frame)
    quiet = monitor(spec, store, MonitorConfig("production", window("1h"),
                                               logs=(str(quiet_log),), scrape=False))
    monkeypatch.setenv("CD4ML_REPORTS", str(tmp_path / "reports"))
    nothing = report(spec, store, quiet)
    assert nothing.issue is None and nothing.file is None
    assert not (tmp_path / "reports").exists()
    kept = report(spec, store, _breached(world, tmp_path))
    assert kept.file and "input drift" in (tmp_path / "reports" / "monitor-wine-production.md").read_text()


def test_the_cli_exits_1_and_reports(spec, store, tmp_path, github_env):
    world = make_world(spec, store)
    log = tmp_path / "p.jsonl"
    world.log(log, 1, shifted(world.frame))
    out = subprocess.run([sys.executable, "-m", "cd4ml", "monitor", "-p", str(spec.path),
                          "--store", store.url, "--env", "production", "--since", "1h",
                          "--log", str(log), "--no-scrape", "--report"],
                         capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    assert out.returncode == 1, out.stderr
    assert "opened monitoring issue #" in out.stdout and "monitoring: 3 breaches" in out.stdout
    assert github_env.token not in out.stdout + out.stderr
