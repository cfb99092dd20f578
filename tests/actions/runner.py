"""Run a repository's workflows for an event, as GitHub Actions would, on this machine.

Jobs run one after another in ``needs`` order (matrix legs too), each in a fresh runner:
an empty workspace at the same path every time (as on GitHub's hosted runners), a fresh HOME
and RUNNER_TEMP, a fresh venv from setup-python, and the environment GitHub gives (``CI``,
``GITHUB_*``, ``RUNNER_*``) plus the workflow's, job's and step's ``env:``. Secrets and
variables come from the test; ``github.token`` is the local GitHub server's token. Steps run
with GitHub's default shell (``bash --noprofile --norc -eo pipefail``).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.actions import emulated
from tests.actions.expressions import ExpressionError, condition, interpolate, to_string

#: the keys each level of a workflow may use; anything else is an error (not emulated)
WORKFLOW_KEYS = {"name", "on", "permissions", "concurrency", "env", "jobs", "run-name"}
JOB_KEYS = {"name", "runs-on", "needs", "if", "timeout-minutes", "strategy", "permissions",
            "environment", "concurrency", "env", "steps", "outputs"}
STEP_KEYS = {"id", "name", "if", "uses", "with", "run", "env", "timeout-minutes"}
STEP_TIMEOUT = 900  # seconds: a step that hangs fails the test instead of blocking it
_COMMAND = re.compile(r"^::(notice|warning|error)(?: ([^:]*))?::(.*)$")


@dataclass
class StepResult:
    name: str
    outcome: str  # success | failure | skipped
    log: str = ""
    seconds: float = 0.0


@dataclass
class JobResult:
    id: str
    name: str
    matrix: dict[str, Any]
    result: str  # success | failure | skipped | waiting (for a review nobody gave)
    runs_on: Any = None
    environment: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""  # $GITHUB_STEP_SUMMARY of every step, in order
    annotations: list[tuple[str, str, str]] = field(default_factory=list)  # kind, title, text
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    leaked: list[str] = field(default_factory=list)  # secrets (by name) a step printed

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)


@dataclass
class RunResult:
    workflow: str
    event: str
    run_id: int
    jobs: list[JobResult]

    @property
    def leaked(self) -> set[str]:
        return {name for j in self.jobs for name in j.leaked}

    @property
    def conclusion(self) -> str:
        """GitHub's: failure if a job failed, else success (skipped jobs do not count)."""
        return "failure" if any(j.result in ("failure", "waiting") for j in self.jobs) else "success"

    def job(self, id: str, **matrix: Any) -> JobResult:
        return next(j for j in self.jobs if j.id == id
                    and all(j.matrix.get(k) == v for k, v in matrix.items()))

    def log(self) -> str:
        """Every job and step, with the log of each step that did not succeed."""
        out = [f"{self.workflow} on {self.event} (run {self.run_id}): {self.conclusion}"]
        for j in self.jobs:
            out.append(f"  job {j.name}: {j.result} ({j.seconds:.1f} s)")
            for s in j.steps:
                out.append(f"    {s.outcome:8} {s.name} ({s.seconds:.1f} s)")
                if s.outcome == "failure":
                    out.extend("      | " + line for line in s.log.splitlines()[-40:])
        return "\n".join(out)


@dataclass(frozen=True)
class Event:
    name: str
    sha: str
    ref: str
    actor: str
    payload: dict[str, Any]
    head_ref: str = ""
    base_ref: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    unknown = set(doc) - WORKFLOW_KEYS
    if unknown:
        raise emulated.NotEmulated(f"{path.name}: workflow keys {sorted(unknown)} are not emulated")
    # every job and step, run or not: a workflow may not hold anything the runner cannot do
    for job_id, job in doc["jobs"].items():
        if set(job) - JOB_KEYS:
            raise emulated.NotEmulated(f"{path.name}: job {job_id}: keys "
                                       f"{sorted(set(job) - JOB_KEYS)} are not emulated")
        for i, step in enumerate(job.get("steps") or []):
            where = f"{path.name}: job {job_id}: step {step.get('name', i)}"
            if set(step) - STEP_KEYS:
                raise emulated.NotEmulated(f"{where}: keys {sorted(set(step) - STEP_KEYS)} not emulated")
            if ("run" in step) == ("uses" in step):
                raise emulated.NotEmulated(f"{where}: needs exactly one of run/uses")
            if "uses" in step:
                emulated.check_action(step["uses"], step.get("with") or {})
    return doc


class Runner:
    """The GitHub Actions of one repository (``repository``, a git repository) on the local
    GitHub server ``github``. ``approvers``: environment -> who approves its reviews (an
    environment listed with nobody leaves its jobs waiting). ``origin``: the repository's
    address in a checkout's remote ``origin`` (default: its path as a file URL), e.g. the same
    repository served over HTTP."""

    def __init__(self, root: Path, github: Any, repository: Path, python: emulated.Python, *,
                 secrets: Mapping[str, str] | None = None, variables: Mapping[str, str] | None = None,
                 machine_env: Mapping[str, str] | None = None,
                 approvers: Mapping[str, tuple[str, ...]] | None = None,
                 origin: str | None = None):
        self.root, self.gh, self.repository, self.python = root, github, repository, python
        self.origin = origin or repository.as_uri()
        self.secrets = dict(secrets or {})
        self.variables = dict(variables or {})
        self.machine_env = dict(machine_env or {})
        self.approvers = dict(approvers or {})
        self.run_ids = itertools.count(9001)
        self.dry_run = False

    # ---------------------------------------------------------------- events

    def git(self, *args: str) -> str:
        # GitHub's own identity: it makes the merge commits of pull requests
        return subprocess.run(["git", "-c", "user.name=GitHub", "-c", "user.email=noreply@github.com",
                               *args], cwd=self.repository, capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()

    def _known(self, sha: str) -> str:
        author = self.git("log", "-1", "--format=%an", sha)
        self.gh.add_commit(sha, author=author)
        return sha

    def push(self, sha: str, branch: str = "main", actor: str | None = None,
             only: tuple[str, ...] | None = None) -> list[RunResult]:
        """A push of ``sha`` to ``branch``: every workflow it starts (or those named ``only``)."""
        self._known(sha)
        actor = actor or self.git("log", "-1", "--format=%an", sha)
        payload = {"ref": f"refs/heads/{branch}", "after": sha, "before": "0" * 40,
                   "repository": self._repo_payload(), "pusher": {"name": actor},
                   "sender": {"login": actor}, "head_commit": {"id": sha}}
        return self._start(Event("push", sha, f"refs/heads/{branch}", actor, payload), only)

    def pull_request(self, number: int, head_sha: str, head_branch: str, base: str = "main",
                     action: str = "synchronize", only: tuple[str, ...] | None = None) -> list[RunResult]:
        """A pull request from ``head_branch`` into ``base``; GITHUB_SHA is the merge commit
        GitHub makes (made here with git, its tree the merge result)."""
        self._known(head_sha)
        self.gh.add_pull(number, head_sha)
        base_sha = self.git("rev-parse", base)
        tree = self.git("merge-tree", "--write-tree", base_sha, head_sha).splitlines()[0]
        merge = self.git("commit-tree", tree, "-p", base_sha, "-p", head_sha, "-m",
                         f"Merge {head_sha} into {base_sha}")
        self.gh.add_commit(merge, author=None)
        actor = self.git("log", "-1", "--format=%an", head_sha)
        payload = {"action": action, "number": number,
                   "pull_request": {"number": number, "head": {"sha": head_sha, "ref": head_branch},
                                    "base": {"sha": base_sha, "ref": base}},
                   "repository": self._repo_payload(), "sender": {"login": actor}}
        return self._start(Event("pull_request", merge, f"refs/pull/{number}/merge", actor, payload,
                                 head_ref=head_branch, base_ref=base), only)

    def dispatch(self, workflow: str, inputs: Mapping[str, Any], actor: str, ref: str = "main") -> RunResult:
        """workflow_dispatch of ``workflow`` (a file name) on ``ref``, by ``actor``."""
        sha = self._known(self.git("rev-parse", ref))
        path = self._workflows(sha) / workflow
        spec = (load(path)["on"] or {}).get("workflow_dispatch") or {}
        given = {}
        for name, decl in (spec.get("inputs") or {}).items():
            value = inputs.get(name, decl.get("default", ""))
            if decl.get("required") and value in ("", None):
                raise ValueError(f"{workflow}: input {name} is required")
            if decl.get("type") == "choice" and value not in decl.get("options", []):
                raise ValueError(f"{workflow}: input {name}={value!r} is not one of {decl['options']}")
            given[name] = value
        if set(inputs) - set(given):
            raise ValueError(f"{workflow}: unexpected inputs {sorted(set(inputs) - set(given))}")
        payload = {"inputs": given, "ref": f"refs/heads/{ref}", "repository": self._repo_payload(),
                   "sender": {"login": actor}}
        event = Event("workflow_dispatch", sha, f"refs/heads/{ref}", actor, payload, inputs=given)
        return self.run(path, event)

    def _repo_payload(self) -> dict[str, Any]:
        return {"full_name": self.gh.full_name, "name": self.gh.repo,
                "owner": {"login": self.gh.owner}, "default_branch": "main"}

    def _workflows(self, sha: str) -> Path:
        """The workflow files as they are at ``sha`` (GitHub reads them from the commit)."""
        where = self.root / "workflows" / sha
        if not where.exists():
            where.mkdir(parents=True)
            names = self.git("ls-tree", "--name-only", f"{sha}:.github/workflows").splitlines()
            for name in names:
                (where / name).write_text(self.git("show", f"{sha}:.github/workflows/{name}") + "\n")
        return where

    def _start(self, event: Event, only: tuple[str, ...] | None) -> list[RunResult]:
        runs = []
        for path in sorted(self._workflows(event.sha).glob("*.y*ml")):
            if (only is None or path.name in only) and self.triggers(load(path), event):
                runs.append(self.run(path, event))
        return runs

    @staticmethod
    def triggers(workflow: dict[str, Any], event: Event) -> bool:
        on = workflow["on"]
        if isinstance(on, str | list):
            return event.name in ([on] if isinstance(on, str) else on)
        if event.name not in on:
            return False
        spec = on[event.name] or {}
        unknown = set(spec) - {"branches", "inputs", "types"}
        if unknown:
            raise emulated.NotEmulated(f"on.{event.name}: {sorted(unknown)} not emulated")
        branch = event.base_ref if event.name == "pull_request" else event.ref.removeprefix("refs/heads/")
        if "branches" in spec and branch not in spec["branches"]:
            return False
        return "types" not in spec or event.payload.get("action") in spec["types"]

    # ---------------------------------------------------------------- a workflow run

    def run(self, path: Path, event: Event) -> RunResult:
        wf = load(path)
        run_id = next(self.run_ids)
        self.gh.add_run(run_id)
        base = self.root / "run" / str(run_id)
        (base / "artifacts").mkdir(parents=True)
        (base / "event.json").write_text(json.dumps(event.payload))
        github = {
            "event_name": event.name, "event": event.payload, "sha": event.sha, "ref": event.ref,
            "ref_name": event.ref.split("/", 2)[-1], "ref_type": "branch",
            "head_ref": event.head_ref, "base_ref": event.base_ref,
            "repository": self.gh.full_name, "repository_owner": self.gh.owner,
            "actor": event.actor, "triggering_actor": event.actor, "run_id": str(run_id),
            "run_number": str(run_id - 9000), "run_attempt": "1", "token": self.gh.token,
            "server_url": self.gh.url, "api_url": self.gh.api_url,
            "graphql_url": self.gh.api_url + "/graphql", "workflow": wf.get("name", path.name),
            "workflow_ref": f"{self.gh.full_name}/.github/workflows/{path.name}@{event.ref}",
            "event_path": str(base / "event.json"), "workspace": str(self._workspace()),
            "retention_days": "90",
        }
        contexts: dict[str, Any] = {"github": github, "secrets": {**self.secrets,
                                    "GITHUB_TOKEN": self.gh.token},
                                    "vars": dict(self.variables), "inputs": event.inputs,
                                    "env": {}, "runner": self._runner_context(base)}
        contexts["env"] = self._env(wf.get("env"), contexts)
        done: dict[str, list[JobResult]] = {}
        jobs = wf["jobs"]
        result = RunResult(path.name, event.name, run_id, [])
        while len(done) < len(jobs):
            ready = [j for j in jobs if j not in done and all(n in done for n in _needs(jobs[j]))]
            if not ready:
                raise emulated.NotEmulated(f"{path.name}: jobs {set(jobs) - set(done)} wait on each other")
            job_id = ready[0]
            done[job_id] = self._job(job_id, jobs[job_id], contexts, done, base)
            result.jobs.extend(done[job_id])
        return result

    def _workspace(self) -> Path:
        return self.root / "work" / self.gh.repo / self.gh.repo

    def _runner_context(self, base: Path) -> dict[str, str]:
        return {"os": "Linux", "arch": "X64", "name": "GitHub Actions 1", "temp": str(self.root / "temp"),
                "tool_cache": str(self.root / "toolcache"), "environment": "github-hosted"}

    @staticmethod
    def _env(decl: Any, contexts: Mapping[str, Any]) -> dict[str, str]:
        env = dict(contexts.get("env") or {})
        for k, v in (decl or {}).items():
            env[k] = to_string(interpolate(v, {**contexts, "env": env}))
        return env

    # ---------------------------------------------------------------- jobs

    def _job(self, job_id: str, job: dict[str, Any], contexts: dict[str, Any],
             done: Mapping[str, list[JobResult]], base: Path) -> list[JobResult]:
        needs = {n: {"result": _combined(done[n]), "outputs": _outputs(done[n])} for n in _needs(job)}
        ctx = {**contexts, "needs": needs}

        def status(fn: str) -> bool:
            results = [v["result"] for v in needs.values()]
            return {"success": all(r == "success" for r in results),
                    "failure": any(r == "failure" for r in results),
                    "cancelled": False, "always": True}[fn]

        strategy = job.get("strategy") or {}
        if set(strategy) - {"matrix", "fail-fast", "max-parallel"}:
            raise emulated.NotEmulated(f"job {job_id}: strategy {sorted(strategy)} not emulated")
        legs = _matrix(strategy.get("matrix"), ctx)
        if not condition(job.get("if"), {k: v for k, v in ctx.items() if k != "env"}, status):
            return [JobResult(job_id, to_string(interpolate(job.get("name", job_id),
                              {**ctx, "matrix": leg})), leg, "skipped") for leg in legs]
        return [self._leg(job_id, job, {**ctx, "matrix": leg}, base) for leg in legs]

    def _leg(self, job_id: str, job: dict[str, Any], ctx: dict[str, Any], base: Path) -> JobResult:
        started = time.monotonic()
        name = to_string(interpolate(job.get("name", job_id), ctx))
        environment = job.get("environment")
        if isinstance(environment, dict):
            environment = environment.get("name")
        environment = to_string(interpolate(environment, ctx)) if environment else None
        result = JobResult(job_id, name, ctx["matrix"], "success",
                           runs_on=interpolate(job.get("runs-on"), ctx), environment=environment)
        interpolate(str((job.get("concurrency") or {}).get("group", "")), ctx)  # must evaluate
        if environment in self.approvers:
            if not self.approvers[environment]:
                result.result = "waiting"
                return result
            for user in self.approvers[environment]:
                self.gh.add_approval(int(ctx["github"]["run_id"]), user, environments=(environment,))
        workspace, home, temp = self._workspace(), self.root / "home", self.root / "temp"
        for d in (workspace, home, temp, self.root / "toolcache"):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        state = emulated.Job(workspace=workspace, tool_cache=self.root / "toolcache",
                             repository=self.repository, origin=self.origin,
                             sha=ctx["github"]["sha"],
                             artifacts=base / "artifacts", python=self.python)
        ctx = {**ctx, "job": {"status": "success"}, "steps": {}}
        ctx["env"] = self._env(job.get("env"), ctx)
        runner_env = {
            **emulated.clean_env(), **self.machine_env, "CI": "true", "GITHUB_ACTIONS": "true",
            "HOME": str(home), "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64",
            "RUNNER_NAME": "GitHub Actions 1", "RUNNER_TEMP": str(temp),
            "RUNNER_TOOL_CACHE": str(self.root / "toolcache"),
            "RUNNER_ENVIRONMENT": "github-hosted", "RUNNER_WORKSPACE": str(workspace.parent),
            **{f"GITHUB_{k.upper()}": str(v) for k, v in ctx["github"].items()
               if k not in ("token", "event") and isinstance(v, str)},
            "GITHUB_JOB": job_id,
        }
        failed = False
        for i, step in enumerate(job.get("steps") or []):
            try:
                sr = self._step(i, step, ctx, state, runner_env, failed, result)
            except ExpressionError as e:
                raise emulated.NotEmulated(f"job {job_id}: step {step.get('name', i)}: {e}") from None
            result.steps.append(sr)
            failed = failed or sr.outcome == "failure"
            ctx["job"]["status"] = "failure" if failed else "success"
        result.result = "failure" if failed else "success"
        for k, v in (job.get("outputs") or {}).items():
            result.outputs[k] = to_string(interpolate(v, ctx))
        result.seconds = time.monotonic() - started
        return result

    def _step(self, i: int, step: dict[str, Any], ctx: dict[str, Any], state: emulated.Job,
              runner_env: dict[str, str], failed: bool, job: JobResult) -> StepResult:
        name = to_string(interpolate(step.get("name") or step.get("uses") or step["run"].splitlines()[0], ctx))
        sid = step.get("id") or f"__{i}"

        def status(fn: str) -> bool:
            return {"success": not failed, "failure": failed, "cancelled": False, "always": True}[fn]

        started = time.monotonic()
        if not condition(step.get("if"), ctx, status):
            ctx["steps"][sid] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
            return StepResult(name, "skipped")
        step_env = self._env(step.get("env"), {**ctx, "env": {**ctx["env"], **state.env}})
        files = {k: Path(runner_env["RUNNER_TEMP"]) / f"_{k.lower()}_{i}"
                 for k in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
        for f in files.values():
            f.write_text("")
        env = {**runner_env, **ctx["env"], **state.env, **step_env,
               **{k: str(v) for k, v in files.items()}}
        env["PATH"] = ":".join([*state.path, env["PATH"]])
        outcome, log = "success", ""
        try:
            if "uses" in step:
                with_ = {k: interpolate(v, ctx) for k, v in (step.get("with") or {}).items()}
                log = emulated.run_action(step["uses"], state, with_)
            else:
                script = to_string(interpolate(step["run"], ctx))
                if self.dry_run:
                    check = subprocess.run(["bash", "-n"], input=script, text=True,
                                           capture_output=True, check=False)
                    outcome, log = ("success" if check.returncode == 0 else "failure"), check.stderr
                else:
                    outcome, log = self._shell(script, env, state.workspace, i)
        except emulated.StepFailed as e:
            outcome, log = "failure", str(e)
        # GitHub would mask them; a secret in a log is a leak all the same
        job.leaked += [k for k, v in ctx["secrets"].items() if len(v) >= 4 and v in log
                       and k not in job.leaked]
        outputs = _key_values(files["GITHUB_OUTPUT"].read_text())
        state.env.update(_key_values(files["GITHUB_ENV"].read_text()))
        state.path[:0] = [p for p in reversed(files["GITHUB_PATH"].read_text().splitlines()) if p]
        job.summary += files["GITHUB_STEP_SUMMARY"].read_text()
        for line in log.splitlines():
            m = _COMMAND.match(line)
            if m:
                props = dict(p.split("=", 1) for p in (m.group(2) or "").split(",") if "=" in p)
                job.annotations.append((m.group(1), _unescape(props.get("title", "")),
                                        _unescape(m.group(3))))
        ctx["steps"][sid] = {"outputs": outputs, "outcome": outcome, "conclusion": outcome}
        return StepResult(name, outcome, log, time.monotonic() - started)

    @staticmethod
    def _shell(script: str, env: dict[str, str], cwd: Path, i: int) -> tuple[str, str]:
        path = Path(env["RUNNER_TEMP"]) / f"step_{i}.sh"
        path.write_text(script)
        try:
            out = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
                                 cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, timeout=STEP_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as e:
            return "failure", f"{e.output or ''}\n(timed out after {STEP_TIMEOUT} s)"
        return ("success" if out.returncode == 0 else "failure"), out.stdout + (
            f"\nProcess completed with exit code {out.returncode}." if out.returncode else "")


def _unescape(text: str) -> str:
    for code, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, char)
    return text


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _combined(legs: list[JobResult]) -> str:
    results = {j.result for j in legs}
    return ("failure" if results & {"failure", "waiting"} else
            "success" if "success" in results else "skipped")


def _outputs(legs: list[JobResult]) -> dict[str, str]:
    out: dict[str, str] = {}
    for leg in legs:  # as on GitHub, the last leg to set an output wins
        out.update({k: v for k, v in leg.outputs.items() if v})
    return out


def _matrix(decl: Any, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
    if decl is None:
        return [{}]
    decl = interpolate(decl, ctx) if isinstance(decl, str) else decl
    if set(decl) & {"include", "exclude"}:
        raise emulated.NotEmulated("matrix include/exclude are not emulated")
    axes = {k: interpolate(v, ctx) if isinstance(v, str) else v for k, v in decl.items()}
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def _key_values(text: str) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` blocks (GITHUB_OUTPUT, GITHUB_ENV)."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            body = list(itertools.takewhile(lambda x, d=delim: x != d, lines))
            out[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out
