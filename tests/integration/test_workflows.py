"""The GitHub workflows: valid against GitHub's workflow schema (check-jsonschema), no zizmor
finding of medium severity or more (offline), and the shape cd4ml relies on: least privilege per
job, actions pinned by full SHA, inputs reaching shells only through env."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ("cd4ml.yml", "promote.yml", "rollback.yml", "ci.yml", "monitor.yml")
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")

BAD = """\
name: bad
on:
  pull_request:
jobs:
  x:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: pip install -e '.[test]'"
    return path


def _load(name: str) -> dict:
    # YAML 1.1 reads the key `on` as True
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def _zizmor(*files: Path) -> list[dict]:
    out = subprocess.run([_tool("zizmor"), "--offline", "--format", "json", *map(str, files)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.strip(), out.stderr
    return json.loads(out.stdout)


def test_workflows_match_githubs_schema():
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                          *(str(WORKFLOWS / n) for n in NAMES)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory) -> list[Path]:
    """The workflows ``cd4ml init`` writes into a user's repository."""
    from cd4ml.scaffold import init

    repo = tmp_path_factory.mktemp("user-repo")
    init(ROOT / "pipelines" / "data" / "wine.csv", "target", directory=repo, name="grapes")
    return sorted((repo / ".github" / "workflows").glob("*.yml"))


def test_scaffolded_workflows_match_githubs_schema_and_zizmor_finds_nothing(scaffolded):
    assert [p.name for p in scaffolded] == ["cd4ml.yml", "monitor.yml", "promote.yml", "rollback.yml"]
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                          *map(str, scaffolded)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    serious = [(f["ident"], f["desc"]) for f in _zizmor(*scaffolded)
               if f["determinations"]["severity"] in ("Medium", "High")]
    assert serious == []


def test_the_schema_check_can_fail(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: broken\non: push\njobs:\n  x:\n    steps: []\n")  # no runs-on
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                          str(broken)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode != 0


def test_zizmor_finds_nothing_of_medium_severity_or_more():
    findings = _zizmor(*(WORKFLOWS / n for n in NAMES))
    serious = [(f["ident"], f["determinations"]["severity"], f["desc"]) for f in findings
               if f["determinations"]["severity"] in ("Medium", "High")]
    assert serious == []


def test_zizmor_catches_what_it_should(tmp_path):
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(BAD)
    found = {f["ident"] for f in _zizmor(workflows / "bad.yml")}
    assert {"template-injection", "unpinned-uses", "artipacked"} <= found


@pytest.mark.parametrize("name", NAMES)
def test_least_privilege_pinned_actions_no_injection(name):
    wf = _load(name)
    assert wf["permissions"] == {}, "top-level permissions: {} (jobs ask for what they need)"
    for job_name, job in wf["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{name}: job {job_name} states its permissions"
        assert all(v in ("read", "write") for v in job["permissions"].values())
        assert "write-all" not in str(job["permissions"])
    for step in _steps(wf):
        if "uses" in step:
            assert SHA_PIN.match(step["uses"]), f"{name}: {step['uses']} is not pinned by full SHA"
            if step["uses"].startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        if "run" in step:
            assert "${{" not in step["run"], f"{name}: an expression inside a script: pass it via env"


def test_the_pipeline_workflow_reports_and_deploys_to_staging():
    wf = _load("cd4ml.yml")
    assert set(wf["on"]) == {"push", "pull_request"}
    pipeline, pr = wf["jobs"]["pipeline"], wf["jobs"]["pull-request"]
    deploy = wf["jobs"]["deploy-staging"]
    for p in pipeline["strategy"]["matrix"]["pipeline"]:
        assert (ROOT / "pipelines" / f"{p}.yaml").is_file()
    assert pr["strategy"] == pipeline["strategy"] and pr["steps"] == pipeline["steps"]
    runs = [s["run"] for s in pipeline["steps"] if "run" in s]
    assert any(r.startswith("cd4ml run ") for r in runs)
    report = next(s for s in pipeline["steps"] if s.get("run", "").startswith("cd4ml report"))
    assert report["if"] == "${{ !cancelled() }}"  # a failed gate is reported too
    assert report["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    # a push records its runs on the git store's branch; a pull request's token may not write
    assert pipeline["if"] == "${{ github.event_name != 'pull_request' }}"
    assert pipeline["permissions"] == {"contents": "write", "statuses": "write", "checks": "write"}
    assert pr["if"] == "${{ github.event_name == 'pull_request' }}"
    assert pr["permissions"] == {"contents": "read", "statuses": "write", "checks": "write",
                                 "pull-requests": "write"}
    assert deploy["needs"] == "pipeline" and deploy["environment"] == "staging"
    assert "refs/heads/main" in deploy["if"]
    assert deploy["permissions"] == {"contents": "write", "deployments": "write"}
    deploy_runs = " ".join(s.get("run", "") for s in deploy["steps"])
    assert "cd4ml build" in deploy_runs and "cd4ml deploy" in deploy_runs and "--env staging" in deploy_runs
    # what this commit's run made, never merely the newest blessed version
    for command in ("cd4ml build", "cd4ml deploy"):
        step = next(s for s in deploy["steps"] if s.get("run", "").startswith(command))
        assert '--commit "$GITHUB_SHA"' in step["run"], step


def test_promotion_waits_for_the_production_environment_reviewers():
    wf = _load("promote.yml")
    assert set(wf["on"]) == {"workflow_dispatch"}
    assert wf["on"]["workflow_dispatch"]["inputs"]["version"]["required"] is True
    job = wf["jobs"]["promote"]
    assert job["environment"] == "production"
    assert job["permissions"] == {"contents": "write", "deployments": "write", "actions": "read"}
    step = next(s for s in job["steps"] if "cd4ml promote" in s.get("run", ""))
    assert step["env"]["VERSION"] == "${{ inputs.version }}"
    assert '"$VERSION" --to production' in step["run"]


def test_rollback_and_ci():
    rollback = _load("rollback.yml")
    assert set(rollback["on"]) == {"workflow_dispatch"}
    inputs = rollback["on"]["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == ["production", "staging"]
    assert "cd4ml \"$@\"" in _steps(rollback)[-1]["run"]
    ci = _load("ci.yml")
    assert [s["run"] for s in _steps(ci) if "run" in s] == ["bash .ci/run"]


def test_monitoring_runs_on_a_schedule_and_may_only_open_issues_and_dispatch():
    wf = _load("monitor.yml")
    assert set(wf["on"]) == {"schedule", "workflow_dispatch"} and wf["on"]["schedule"][0]["cron"]
    job = wf["jobs"]["monitor"]
    assert job["permissions"] == {"contents": "write", "issues": "write", "actions": "write"}
    step = next(s for s in job["steps"] if "cd4ml" in s.get("run", "") and "monitor" in s["run"])
    assert "--report" in step["run"] and "--retrain-workflow" in step["run"]
    assert step["env"]["GITHUB_TOKEN"] == "${{ github.token }}"
    assert "promote" not in step["run"] and "deploy" not in step["run"]
    for p in job["strategy"]["matrix"]["pipeline"]:
        assert (ROOT / "pipelines" / f"{p}.yaml").is_file()


#: the store each workflow chooses: the secret, else the git store of the repository itself;
#: a pull request never gets the secret and never writes the branch
STORE = "${{ secrets.CD4ML_STORE_URL || 'git+origin' }}"
PR_STORE = ("${{ github.event_name == 'pull_request' && 'git+origin?writes=local' || "
            "secrets.CD4ML_STORE_URL || 'git+origin' }}")


@pytest.mark.parametrize("name", ("cd4ml.yml", "promote.yml", "rollback.yml", "monitor.yml"))
def test_one_store_one_install_and_deploys_wait_for_their_configuration(name):
    text = (WORKFLOWS / name).read_text()
    wf = _load(name)
    # the store is chosen in one place, the workflow's env (a default store goes there)
    assert wf["env"]["CD4ML_STORE_URL"] == (PR_STORE if name == "cd4ml.yml" else STORE)
    assert text.count("secrets.CD4ML_STORE_URL") == 1
    assert wf["env"]["CD4ML_INSTALL"] == ".[postgres]"  # cd4ml's own: the checkout
    for job in wf["jobs"].values():
        runs = [s.get("run", "") for s in job["steps"]]
        assert any('pip install -r "$RUNNER_TEMP/cd4ml-requirements.txt"' in r for r in runs)
        # the git store reads and writes with the workflow's token: every step that opens the
        # store has it, and only a job whose event may write asks for contents: write
        for step in job["steps"]:
            command = step.get("run", "").split(" -p ")[0].split("\n")[-1].strip()
            if command in ("cd4ml run", "cd4ml report", "cd4ml build", "cd4ml deploy", "cd4ml promote"):
                assert step["env"]["GITHUB_TOKEN"] == "${{ github.token }}", step
        writes = "== 'pull_request'" not in str(job.get("if", ""))
        assert job["permissions"]["contents"] == ("write" if writes else "read")
        ids = [s.get("id") for s in job["steps"]]
        if "preflight" not in ids:
            continue
        for step in job["steps"][ids.index("preflight") + 1:]:
            assert "steps.preflight.outputs.ready == 'true'" in step.get("if", ""), step
