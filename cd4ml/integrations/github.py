"""The one seam to GitHub, on github3.py: commit statuses, check runs, the pull-request comment,
deployments and their statuses, and the approver checks of a promotion.

Everything comes from GitHub Actions' own variables (``GITHUB_TOKEN``, ``GITHUB_API_URL``,
``GITHUB_SERVER_URL``, ``GITHUB_REPOSITORY``, ``GITHUB_SHA``, ``GITHUB_EVENT_PATH``,
``GITHUB_RUN_ID``, ``GITHUB_ACTOR``), so GitHub Enterprise Server works with no extra option;
:meth:`GitHubConfig.from_env` takes command-line overrides. ``CD4ML_GITHUB_RETRIES`` and
``CD4ML_GITHUB_BACKOFF`` (seconds) tune the retries.

Failures: 5xx answers and rate limits are retried with bounded backoff inside the session (so
github3's own helpers are retried too); what still fails becomes a :class:`TrackerError` whose
message never holds the token. Notifications (deployments) only warn through events unless
``strict``; decisions (approvers) always raise.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from cd4ml.errors import TrackerError
from cd4ml.events import StageProgress, StageWarning, emit
from cd4ml.states import DeploymentStatus, GitHubDeploymentState

log = logging.getLogger(__name__)
T = TypeVar("T")

#: answers worth another try; 500 only for methods that are safe to repeat
_GATEWAY = {502, 503, 504}
_IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"}
_WRITE_ROLES = {"admin", "maintain", "write"}
#: cd4ml's words for how a deployment ended, in GitHub's
_FINAL_STATES: dict[str, GitHubDeploymentState] = {
    DeploymentStatus.HEALTHY: GitHubDeploymentState.SUCCESS,
    DeploymentStatus.FAILED: GitHubDeploymentState.FAILURE}
#: a deployment in one of these states still counts as serving on GitHub's page
_ACTIVE = {GitHubDeploymentState.SUCCESS, GitHubDeploymentState.IN_PROGRESS,
           GitHubDeploymentState.QUEUED, GitHubDeploymentState.PENDING}


@dataclass(frozen=True)
class GitHubConfig:
    """Where to report and as whom. The token is kept out of ``repr``."""

    token: str | None = field(default=None, repr=False)
    api_url: str = "https://api.github.com"
    server_url: str = "https://github.com"
    repository: str | None = None  # owner/name
    sha: str | None = None  # the commit the statuses and checks go on
    pr: int | None = None
    run_id: str | None = None  # the GitHub Actions run, for links
    actor: str | None = None
    strict: bool = False
    retries: int = 4
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    max_wait: float = 60.0  # a rate limit that resets later than this is not waited for
    timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> GitHubConfig:
        """Read GitHub Actions' variables; ``overrides`` that are not None win (the CLI's flags).

        On a pull request ``GITHUB_SHA`` is a merge commit GitHub made, which the pull request does
        not show statuses for: the head commit from the event is used instead."""
        env = os.environ if env is None else env
        event = _event(env.get("GITHUB_EVENT_PATH"))
        pull = event.get("pull_request") or {}
        issue = event.get("issue") or {}
        if not pull and issue.get("pull_request"):  # a comment on a pull request
            pull = {"number": issue.get("number")}
        values: dict[str, Any] = {
            "token": env.get("GITHUB_TOKEN") or None,
            "api_url": env.get("GITHUB_API_URL") or cls.api_url,
            "server_url": env.get("GITHUB_SERVER_URL") or cls.server_url,
            "repository": env.get("GITHUB_REPOSITORY") or None,
            "sha": (pull.get("head") or {}).get("sha") or env.get("GITHUB_SHA") or None,
            "pr": pull.get("number") or (event.get("number") if pull else None),
            "run_id": env.get("GITHUB_RUN_ID") or None,
            "actor": env.get("GITHUB_ACTOR") or None,
        }
        for name, key, kind in (("retries", "CD4ML_GITHUB_RETRIES", int),
                                ("backoff", "CD4ML_GITHUB_BACKOFF", float)):
            if env.get(key):
                try:
                    values[name] = kind(env[key])
                except ValueError:
                    raise TrackerError(f"{key}={env[key]!r} is not a number; fix or unset it") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        if config.repository is not None and config.repository.count("/") != 1:
            raise TrackerError(f"repository {config.repository!r} is not OWNER/NAME; "
                               "fix --repo or GITHUB_REPOSITORY")
        return replace(config, api_url=config.api_url.rstrip("/"),
                       server_url=config.server_url.rstrip("/"))

    @property
    def enabled(self) -> bool:
        """A token and a repository: enough to talk to GitHub."""
        return bool(self.token and self.repository)

    @property
    def run_url(self) -> str | None:
        """The workflow run's page, where statuses and deployments link to."""
        if self.repository and self.run_id:
            return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"
        return None


def _event(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.debug("GITHUB_EVENT_PATH %s unreadable: %s", path, e)
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class RunApproval:
    """One review of a workflow run's environment gate."""

    user: str
    state: str  # approved | rejected | pending
    environments: tuple[str, ...]
    comment: str


# ----------------------------------------------------------------------------- the session


@lru_cache(maxsize=1)
def _session_class() -> type:
    import requests
    from github3.session import GitHubSession

    class RetryingSession(GitHubSession):
        """github3's session, retrying 5xx and rate limits with bounded backoff."""

        policy: GitHubConfig

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            method = method.upper()
            for attempt in range(self.policy.retries + 1):
                last = attempt == self.policy.retries
                try:
                    response = super().request(method, url, *args, **kwargs)
                except (requests.ConnectionError, requests.Timeout) as e:
                    if last or method not in _IDEMPOTENT:
                        raise
                    wait, why = _backoff(self.policy, attempt), f"{type(e).__name__}"
                else:
                    found = _retry_wait(self.policy, method, response, attempt)
                    if found is None or last:
                        return response
                    wait, why = found
                    response.close()
                log.info("GitHub %s %s: %s; retry %d in %.2fs", method, _path(url), why,
                         attempt + 1, wait)
                emit(StageProgress("report", f"GitHub answered {why}; retrying in {wait:.1f}s"))
                time.sleep(wait)
            raise AssertionError("unreachable")  # pragma: no cover

    return RetryingSession


def _backoff(policy: GitHubConfig, attempt: int) -> float:
    return policy.backoff * (2 ** attempt) * random.uniform(0.75, 1.0)


def _retry_wait(policy: GitHubConfig, method: str, response: Any, attempt: int) -> tuple[float, str] | None:
    """How long to wait before retrying this answer, or None when it is final."""
    code = response.status_code
    headers = response.headers
    limited = code == 429 or (code == 403 and (headers.get("x-ratelimit-remaining") == "0"
                                               or "retry-after" in headers))
    if limited:
        if "retry-after" in headers:
            try:
                wait = float(headers["retry-after"])
            except ValueError:
                wait = _backoff(policy, attempt)
        elif "x-ratelimit-reset" in headers:
            wait = max(float(headers["x-ratelimit-reset"]) - time.time(), 0.0) + _backoff(policy, attempt)
        else:
            wait = _backoff(policy, attempt)
        return (wait, f"{code} (rate limited)") if wait <= policy.max_wait else None
    if method in _IDEMPOTENT and (code in _GATEWAY or code == 500):
        return _backoff(policy, attempt), str(code)
    # a POST that met a gateway error may have created its object: the caller looks for it
    # before creating again (GitHubReporter._create_once), never the session blindly
    return None


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


# ----------------------------------------------------------------------------- the reporter


class GitHubReporter:
    """Talks to one repository. With no token (``enabled`` false) the notifying methods do
    nothing and return None, so callers need no branch of their own."""

    def __init__(self, config: GitHubConfig | None = None):
        self.config = config or GitHubConfig.from_env()
        self._gh: Any = None
        self._repository: Any = None

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # ---- plumbing

    def _redact(self, text: str) -> str:
        token = self.config.token
        return text.replace(token, "***") if token and len(token) >= 4 else text

    def _client(self) -> Any:
        if self._gh is None:
            if not self.enabled:
                raise TrackerError("no GITHUB_TOKEN or GITHUB_REPOSITORY: cannot talk to GitHub; "
                                   "set both (a workflow has them) or pass --repo")
            import github3

            session = _session_class()(default_read_timeout=self.config.timeout)
            session.policy = self.config
            gh = github3.GitHub(token=self.config.token, session=session)
            # GITHUB_API_URL already ends in /api/v3 on GitHub Enterprise Server, which
            # github3.GitHubEnterprise would append a second time: use the address as given.
            gh.session.base_url = self.config.api_url
            self._gh = gh
        return self._gh

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` against GitHub, turning every failure into a one-line TrackerError."""
        import github3
        import requests

        try:
            return fn()
        except TrackerError:
            raise
        except github3.exceptions.GitHubError as e:
            code = getattr(e, "code", None)
            msg = getattr(e, "msg", None) or str(e)
            raise TrackerError(self._redact(f"GitHub: {what}: {code} {msg}{_hint(code, self.config)}"),
                               status=code if isinstance(code, int) else None,
                               ambiguous=what.startswith("POST") and code in _GATEWAY) from None
        except (github3.exceptions.ConnectionError, github3.exceptions.TransportError,
                requests.RequestException) as e:
            raise TrackerError(self._redact(
                f"GitHub: {what}: cannot reach {self.config.api_url}: {type(e).__name__}; "
                "check GITHUB_API_URL (--api-url) and the network"),
                ambiguous=what.startswith("POST")) from None

    def _api(self, method: str, path: str, expect: int, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        """A REST call through github3's session, for endpoints github3 has no helper for (or
        whose helper refuses a workflow's installation token)."""
        def go() -> Any:
            session = self._client().session
            url = f"{self.config.api_url}/repos/{self.config.repository}{path}"
            response = session.request(method, url, json=body, params=params)
            if response.status_code != expect:
                try:
                    msg = response.json().get("message", "")
                except ValueError:
                    msg = response.text[:200]
                raise TrackerError(self._redact(
                    f"GitHub: {method} {path}: {response.status_code} {msg}"
                    f"{_hint(response.status_code, self.config)}"), status=response.status_code,
                    ambiguous=method == "POST" and response.status_code in _GATEWAY)
            return response.json() if response.content else None

        return self._call(f"{method} {path}", go)

    def _create_once(self, what: str, create: Callable[[], T],
                     find: Callable[[], T | None] | None) -> T:
        """POST through ``create``; when it fails ambiguously (a gateway error, a timeout: it
        may have been created all the same), look with ``find`` for what it would have made
        before creating again, so that a write happens once. ``find`` None: repeating is
        harmless (a commit status: the newest one counts)."""
        for attempt in range(self.config.retries + 1):
            try:
                return create()
            except TrackerError as e:
                if not e.ambiguous or attempt == self.config.retries:
                    raise
                found = find() if find is not None else None
                if found is not None:
                    log.info("GitHub %s failed ambiguously (%s) but had taken effect", what, e.status)
                    return found
                wait = _backoff(self.config, attempt)
                emit(StageProgress("report", f"GitHub {what} failed ({e.status or 'no answer'}) "
                                   f"and made nothing; retrying in {wait:.1f}s"))
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def repository(self) -> Any:
        """github3's Repository object (fetched once)."""
        if self._repository is None:
            owner, name = (self.config.repository or "/").split("/", 1)
            repo = self._call(f"GET /repos/{owner}/{name}", lambda: self._client().repository(owner, name))
            if repo is None:
                raise TrackerError(f"GitHub: no repository {self.config.repository}; fix --repo")
            self._repository = repo
        return self._repository

    def _sha(self, sha: str | None) -> str:
        found = sha or self.config.sha
        if not found:
            raise TrackerError("no commit to report on: set GITHUB_SHA or pass --sha")
        return found

    def _guard(self, what: str, fn: Callable[[], T]) -> T | None:
        """Notifications never undo anything: warn and go on, unless strict."""
        if not self.enabled:
            return None
        try:
            return fn()
        except TrackerError as e:
            if self.config.strict:
                raise
            emit(StageWarning("report", f"{what}: {e}"))
            return None

    # ---- commit status, check run, comment (raise TrackerError; report.py decides)

    def set_status(self, context: str, state: str, description: str, target_url: str | None = None,
                   sha: str | None = None) -> None:
        """A commit status (pending, success, failure, error) under ``context``."""
        sha = self._sha(sha)
        repo = self.repository()
        self._create_once("POST statuses", lambda: self._call(
            f"POST statuses/{sha[:12]}", lambda: repo.create_status(
                sha, state, target_url=target_url or self.config.run_url,
                description=description[:140], context=context)), None)

    def create_check_run(self, name: str, *, sha: str | None = None, external_id: str | None = None,
                         details_url: str | None = None) -> int:
        """An in-progress check run; its id. github3's helper insists on a GitHub App login, which
        a workflow's GITHUB_TOKEN (an installation token) is not, so the endpoint is called
        through github3's session."""
        body = {"name": name, "head_sha": self._sha(sha), "status": "in_progress",
                "details_url": details_url or self.config.run_url, "external_id": external_id}
        body = {k: v for k, v in body.items() if v is not None}

        def find() -> dict | None:
            runs = self._api("GET", f"/commits/{body['head_sha']}/check-runs", 200,
                             params={"check_name": name, "per_page": 100}).get("check_runs", [])
            return next((r for r in runs if r.get("external_id") == external_id), None)

        run = self._create_once("POST /check-runs", lambda: self._api("POST", "/check-runs", 201, body),
                                find)
        return int(run["id"])

    def complete_check_run(self, check_run_id: int, conclusion: str | None, title: str, summary: str,
                           annotations: list[dict] | tuple[dict, ...] = ()) -> str:
        """Finish a check run (``conclusion`` None: only update it, still in progress) with its
        markdown summary and annotations; its page's address. GitHub takes at most 50
        annotations per request: the rest go in further updates before the last one."""
        batches = [list(annotations[i:i + 50]) for i in range(0, len(annotations), 50)] or [[]]
        output = {"title": title[:255], "summary": _clip(summary)}
        for batch in batches[1:]:
            self._api("PATCH", f"/check-runs/{check_run_id}", 200,
                      {"output": {**output, "annotations": batch}})
        final: dict[str, Any] = {"output": {**output, "annotations": batches[0]}}
        if conclusion is not None:
            final.update(status="completed", conclusion=conclusion)
        run = self._api("PATCH", f"/check-runs/{check_run_id}", 200, final)
        return str(run.get("html_url") or "")

    def upsert_comment(self, marker: str, body: str, pr: int | None = None) -> str | None:
        """The one comment carrying ``marker`` on the pull request, created or updated in place;
        its address. None when there is no pull request."""
        number = pr or self.config.pr
        if not number:
            return None
        repo = self.repository()
        issue = self._call(f"GET issues/{number}", lambda: repo.issue(number))
        if issue is None:
            raise TrackerError(f"GitHub: no pull request #{number} in {self.config.repository}; fix --pr")
        body = _clip(body)
        def find() -> Any:
            comments = self._call(f"GET issues/{number}/comments", lambda: list(issue.comments()))
            return next((c for c in comments if marker in (c.body or "")), None)

        mine = find()
        if mine is not None:
            self._call(f"PATCH issues/comments/{mine.id}", lambda: mine.edit(body))
            return str(mine.html_url)
        created = self._create_once(
            f"POST issues/{number}/comments",
            lambda: self._call(f"POST issues/{number}/comments", lambda: issue.create_comment(body)),
            find)
        return str(created.html_url)

    # ---- issues and workflow dispatches (monitoring: raise TrackerError; the caller decides)

    def upsert_issue(self, marker: str, title: str, body: str, label: str) -> tuple[int, str, bool]:
        """The one open issue carrying ``marker`` (labelled ``label``), updated in place, or a
        new one; (number, address, created)."""
        body = _clip(body)
        page = 1
        while True:
            found = self._api("GET", "/issues", 200, params={
                "state": "open", "labels": label, "per_page": 100, "page": page}) or []
            mine = next((i for i in found if marker in (i.get("body") or "")
                         and "pull_request" not in i), None)
            if mine is not None:
                n = int(mine["number"])
                done = self._api("PATCH", f"/issues/{n}", 200, {"title": title, "body": body})
                return n, str(done.get("html_url") or ""), False
            if len(found) < 100:
                break
            page += 1
        made = self._api("POST", "/issues", 201, {"title": title, "body": body, "labels": [label]})
        return int(made["number"]), str(made.get("html_url") or ""), True

    def dispatch_workflow(self, workflow: str, ref: str, inputs: dict[str, str] | None = None) -> None:
        """Start ``workflow`` (its file name or id) on ``ref`` (``workflow_dispatch``)."""
        body: dict[str, Any] = {"ref": ref}
        if inputs:
            body["inputs"] = inputs
        self._api("POST", f"/actions/workflows/{workflow}/dispatches", 204, body)

    # ---- deployments (notifications: warn unless strict)

    def deployment_started(self, environment: str, pipeline: str, model_version: int,
                           image: str | None = None, digest: str | None = None, *,
                           ref: str | None = None, production: bool | None = None,
                           description: str | None = None,
                           override: dict | None = None) -> int | None:
        """A GitHub Deployment of ``pipeline:model_version`` to ``environment`` with its payload
        (model version, image, digest), marked in_progress; its id (None without a token or on
        a tracker failure). ``ref``: the commit deployed (default: the configured sha); one
        GitHub does not know (a model trained from a commit never pushed) falls back to it."""
        def go() -> int:
            payload = {"pipeline": pipeline, "model_version": model_version, "image": image,
                       "image_digest": digest, "actor": self.config.actor}
            if override:
                payload["override"] = override  # the break-glass, on GitHub as in the store
            # what finds this very deployment again after an ambiguous failure of its POST
            payload["cd4ml_request"] = uuid.uuid4().hex[:16]
            body = {
                "ref": self._sha(ref), "environment": environment, "auto_merge": False,
                # cd4ml's gate already decided; other checks' pending statuses must not block
                "required_contexts": [], "payload": payload, "transient_environment": False,
                "production_environment": environment == "production" if production is None else production,
                "description": (description or f"{pipeline}:{model_version} to {environment}")[:140],
            }
            try:
                dep = self._create_deployment(body)
            except TrackerError as e:
                if e.status != 422 or not self.config.sha or body["ref"] == self.config.sha:
                    raise
                dep = self._create_deployment({**body, "ref": self.config.sha})
            # the caller's words say what is under way (a deploy, a promotion, a rollback)
            self._deployment_status(dep["id"], GitHubDeploymentState.IN_PROGRESS, None,
                                    str(body["description"]) if description else
                                    f"deploying {pipeline}:{model_version}")
            return int(dep["id"])

        return self._guard(f"GitHub deployment to {environment}", go)

    def _create_deployment(self, body: dict) -> dict:
        """POST a deployment once: after an ambiguous failure, the deployment of this ref,
        environment and payload that the failed POST made, if it did."""
        def find() -> dict | None:
            found = self._api("GET", "/deployments", 200, params={
                "sha": body["ref"], "environment": body["environment"], "per_page": 30})
            return next((d for d in found if isinstance(d.get("payload"), dict)
                         and d["payload"].get("cd4ml_request") == body["payload"]["cd4ml_request"]),
                        None)

        return self._create_once("POST /deployments",
                                 lambda: self._api("POST", "/deployments", 201, body), find)

    def deployment_finished(self, deployment_id: int | None, state: str, url: str | None = None,
                            description: str | None = None) -> None:
        """Close a deployment: ``state`` success, failure or error (cd4ml's healthy/failed are
        accepted too). On success the deployments it replaced (same pipeline and environment)
        are marked inactive."""
        if deployment_id is None:
            return
        final = _FINAL_STATES.get(state, state)

        def go() -> None:
            self._deployment_status(deployment_id, final, url, description or final)
            if final == GitHubDeploymentState.SUCCESS:
                dep = self._api("GET", f"/deployments/{deployment_id}", 200)
                self._retire(dep["environment"], (dep.get("payload") or {}).get("pipeline"),
                             keep=deployment_id, why=f"replaced by deployment {deployment_id}")

        self._guard(f"GitHub deployment {deployment_id}", go)

    def deployment_progress(self, deployment_id: int | None, description: str,
                            url: str | None = None) -> None:
        """A status of a deployment still under way (a step of a canary or shadow release)."""
        if deployment_id is None:
            return
        self._guard(f"GitHub deployment {deployment_id}", lambda: self._deployment_status(
            deployment_id, GitHubDeploymentState.IN_PROGRESS, url, description))

    def deployment_replaced(self, environment: str, pipeline: str, model_version: int | None = None) -> None:
        """Mark the active deployments of ``pipeline`` in ``environment`` inactive (only those of
        ``model_version`` when given), e.g. when a version is taken down without a successor."""
        self._guard(f"GitHub deployments in {environment}",
                    lambda: self._retire(environment, pipeline, version=model_version, why="replaced"))

    def _deployment_status(self, deployment_id: int, state: str, url: str | None, description: str) -> None:
        body = {"state": state, "description": description[:140], "auto_inactive": False,
                "log_url": self.config.run_url, "environment_url": url}
        self._api("POST", f"/deployments/{deployment_id}/statuses", 201,
                  {k: v for k, v in body.items() if v is not None})

    def _retire(self, environment: str, pipeline: str | None, *, keep: int | None = None,
                version: int | None = None, why: str) -> None:
        for dep in self._api("GET", "/deployments", 200, params={"environment": environment, "per_page": 30}):
            payload = dep.get("payload") if isinstance(dep.get("payload"), dict) else {}
            if dep["id"] == keep or payload.get("pipeline") != pipeline:
                continue
            if version is not None and payload.get("model_version") != version:
                continue
            latest = self._api("GET", f"/deployments/{dep['id']}/statuses", 200, params={"per_page": 1})
            if latest and latest[0]["state"] in _ACTIVE:
                self._deployment_status(dep["id"], GitHubDeploymentState.INACTIVE, None, why)

    # ---- approvals (decisions: always raise on failure)

    def approver_allowed(self, user: str, commit_sha: str, *, forbid_author: bool = True) -> tuple[bool, str]:
        """May ``user`` approve a promotion of ``commit_sha``? Write, maintain or admin on the
        repository and, with ``forbid_author`` (production by default), not the commit's author.
        Returns (allowed, reason); raises TrackerError when GitHub cannot say."""
        repo = self.config.repository
        try:
            data = self._api("GET", f"/collaborators/{user}/permission", 200)
        except TrackerError as e:
            if e.status == 404:
                return False, f"{user} is not a user with access to {repo}"
            raise
        role = data.get("role_name") or data.get("permission") or "none"
        if data.get("permission") not in ("admin", "write") and role not in _WRITE_ROLES:
            return False, f"{user} has {role} permission on {repo}; approving needs write, maintain or admin"
        if not forbid_author:
            return True, f"{user} has {role} permission on {repo}"
        commit = self._api("GET", f"/commits/{commit_sha}", 200)
        author = (commit.get("author") or {}).get("login")
        if author is None:
            name = ((commit.get("commit") or {}).get("author") or {}).get("name", "?")
            return False, (f"the author of {commit_sha[:12]} ({name}) has no GitHub account linked, so "
                           f"{user} cannot be shown not to be them; set approver_not_author: false "
                           "for this environment to allow it")
        if author.lower() == user.lower():
            return False, (f"{user} wrote {commit_sha[:12]}; this environment needs an approver who "
                           "is not the author (approver_not_author)")
        return True, f"{user} has {role} permission on {repo} and did not write {commit_sha[:12]}"

    def run_approvals(self, run_id: str | int | None = None) -> list[RunApproval]:
        """Who reviewed the environment gates of a workflow run (default: this run)."""
        rid = run_id or self.config.run_id
        if not rid:
            raise TrackerError("no workflow run to read approvals of: set GITHUB_RUN_ID")
        return [RunApproval(user=a["user"]["login"], state=a["state"],
                            environments=tuple(e["name"] for e in a.get("environments", [])),
                            comment=a.get("comment") or "")
                for a in self._api("GET", f"/actions/runs/{rid}/approvals", 200)]


def _hint(code: Any, config: GitHubConfig) -> str:
    return {
        401: "; check GITHUB_TOKEN (expired, or for another GitHub?)",
        403: "; the token lacks a permission: give the job statuses, checks, pull-requests and "
             "deployments: write (see .github/workflows/cd4ml.yml), or it is rate limited",
        404: f"; check the repository {config.repository} (--repo) and that the token can see it",
        409: "; GitHub refused the state change",
        422: "; GitHub refused the request's content",
    }.get(code, "; GitHub is failing, retried with backoff; try again later"
          if isinstance(code, int) and code >= 500 else "")


def _clip(text: str, limit: int = 65535) -> str:
    """GitHub refuses bodies over 65535 characters: cut, and say so."""
    if len(text) <= limit:
        return text
    note = "\n\n… (cut: the full report is in the step summary)"
    return text[: limit - len(note)] + note
