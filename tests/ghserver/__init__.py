"""A local GitHub REST API server of our own, for tests: exactly the endpoints cd4ml calls.

Every answer is built from the example in GitHub's OpenAPI description (``@octokit/openapi``), so
it has GitHub's full shape, with each ``url`` field pointing back here (github3.py follows them),
and is checked against the description before it leaves (see :mod:`tests.ghserver.server`).

    with GitHubServer() as gh:
        gh.set_permission("alice", "write")
        ... GITHUB_API_URL=gh.api_url, GITHUB_TOKEN=gh.token ...
        assert [s.json["state"] for s in gh.calls("POST", STATUSES)] == ["pending", "success"]

The state is plain dictionaries, open to assertions: ``statuses[sha]``, ``check_runs[id]``,
``annotations[id]``, ``comments[issue]``, ``deployments[id]``, ``deployment_statuses[id]``,
``issues[number]`` (plain issues, not pull requests), ``dispatches`` (workflow runs asked for).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from datetime import UTC, datetime
from typing import Any, Self

from tests.ghserver import openapi
from tests.ghserver.server import HttpSide, Recorded, Reply

__all__ = [
    "CHECK_RUN",
    "CHECK_RUNS",
    "CHECK_RUNS_FOR_REF",
    "COMMENT",
    "COMMENTS",
    "DEPLOYMENTS",
    "DEPLOYMENT_STATUSES",
    "DISPATCHES",
    "ISSUE",
    "ISSUES",
    "STATUSES",
    "GitHubServer",
    "Recorded",
    "Reply",
]

REPO = "/repos/{owner}/{repo}"
STATUSES = REPO + "/statuses/{sha}"
LIST_STATUSES = REPO + "/commits/{ref}/statuses"
CHECK_RUNS = REPO + "/check-runs"
CHECK_RUN = REPO + "/check-runs/{check_run_id}"
ISSUES = REPO + "/issues"
CHECK_RUNS_FOR_REF = REPO + "/commits/{ref}/check-runs"
ISSUE = REPO + "/issues/{issue_number}"
DISPATCHES = REPO + "/actions/workflows/{workflow_id}/dispatches"
COMMENTS = REPO + "/issues/{issue_number}/comments"
COMMENT = REPO + "/issues/comments/{comment_id}"
DEPLOYMENTS = REPO + "/deployments"
DEPLOYMENT = REPO + "/deployments/{deployment_id}"
DEPLOYMENT_STATUSES = REPO + "/deployments/{deployment_id}/statuses"
PERMISSION = REPO + "/collaborators/{username}/permission"
COMMIT = REPO + "/commits/{ref}"
APPROVALS = REPO + "/actions/runs/{run_id}/approvals"

#: what GitHub reports as ``permission`` for each role (``role_name``)
_PERMISSION_OF_ROLE = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
                       "read": "read"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class GitHubServer(HttpSide):
    """One repository (``owner/repo``) on a local server; ``prefix="/api/v3"`` mimics the address
    layout of GitHub Enterprise Server."""

    def __init__(self, owner: str = "octo-org", repo: str = "ml-models",
                 token: str = "ghs_cd4mlTestToken0123456789abcdefXYZ", prefix: str = "",
                 bot: str = "github-actions[bot]"):
        super().__init__()
        self.owner, self.repo, self.token, self.prefix, self.bot = owner, repo, token, prefix, bot
        self.ids = itertools.count(1001)
        self.roles: dict[str, str] = {owner: "admin"}
        self.users: set[str] = {owner, bot}
        self.commits: dict[str, str | None] = {}
        self.pulls: dict[int, str] = {}
        self.approvals: dict[int, list[dict]] = {}
        self.statuses: dict[str, list[dict]] = {}
        self.check_runs: dict[int, dict] = {}
        self.annotations: dict[int, list[dict]] = {}
        self.comments: dict[int, list[dict]] = {}
        self.deployments: dict[int, dict] = {}
        self.deployment_statuses: dict[int, list[dict]] = {}
        self.issues: dict[int, dict] = {}
        self.dispatches: list[dict] = []
        for method, template, handler in [
            ("GET", REPO, self.get_repo),
            ("POST", STATUSES, self.create_status), ("GET", LIST_STATUSES, self.list_statuses),
            ("POST", CHECK_RUNS, self.create_check_run), ("PATCH", CHECK_RUN, self.update_check_run),
            ("GET", CHECK_RUNS_FOR_REF, self.list_check_runs),
            ("GET", ISSUE, self.get_issue), ("PATCH", ISSUE, self.update_issue),
            ("GET", ISSUES, self.list_issues), ("POST", ISSUES, self.create_issue),
            ("POST", DISPATCHES, self.dispatch),
            ("GET", COMMENTS, self.list_comments), ("POST", COMMENTS, self.create_comment),
            ("PATCH", COMMENT, self.update_comment),
            ("POST", DEPLOYMENTS, self.create_deployment), ("GET", DEPLOYMENTS, self.list_deployments),
            ("GET", DEPLOYMENT, self.get_deployment),
            ("POST", DEPLOYMENT_STATUSES, self.create_deployment_status),
            ("GET", DEPLOYMENT_STATUSES, self.list_deployment_statuses),
            ("GET", PERMISSION, self.get_permission), ("GET", COMMIT, self.get_commit),
            ("GET", APPROVALS, self.list_approvals),
        ]:
            self.route(method, template, handler)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ---- life cycle

    def start(self) -> GitHubServer:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log(self, *args: Any) -> None:  # the test output stays the tests' own
                pass

        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=Quiet)
        self.bind(f"http://127.0.0.1:{self._server.server_port}")
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The web address (GITHUB_SERVER_URL)."""
        return self.base

    @property
    def api_url(self) -> str:
        """The API address (GITHUB_API_URL)."""
        return self.base + self.prefix

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    # ---- test set-up

    def set_permission(self, user: str, role: str | None) -> None:
        """``role``: admin, maintain, write, triage, read, or None for an account without access."""
        self.users.add(user)
        if role is None:
            self.roles.pop(user, None)
        else:
            self.roles[user] = role

    def add_commit(self, sha: str | None = None, author: str | None = "octocat") -> str:
        """A commit written by ``author`` (None: an author GitHub cannot link to an account)."""
        sha = sha or _sha(f"commit {len(self.commits)}")
        self.commits[sha] = author
        if author:
            self.users.add(author)
        return sha

    def add_pull(self, number: int, head_sha: str | None = None) -> int:
        self.pulls[number] = head_sha or self.add_commit()
        self.comments.setdefault(number, [])
        return number

    def add_run(self, run_id: int) -> None:
        """A workflow run with no review approved yet (its approvals list is empty, not 404)."""
        self.approvals.setdefault(int(run_id), [])

    def add_approval(self, run_id: int, user: str, environments: tuple[str, ...] = ("production",),
                     state: str = "approved", comment: str = "") -> None:
        self.users.add(user)
        self.approvals.setdefault(int(run_id), []).append(
            {"user": user, "environments": environments, "state": state, "comment": comment})

    # ---- shapes

    def _rewrite(self, obj: Any) -> Any:
        """Point an example's addresses and names at this server and repository."""
        if isinstance(obj, dict):
            return {k: self._rewrite(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._rewrite(v) for v in obj]
        if isinstance(obj, str):
            return (obj.replace("https://api.github.com", self.api_url)
                    .replace("https://uploads.github.com", self.url)
                    .replace("https://github.com", self.url)
                    .replace("octocat/Hello-World", self.full_name))
        return obj

    def _example(self, method: str, template: str, status: int, name: str | None = None) -> Any:
        return self._rewrite(openapi.example(method, template, status, name))

    def user(self, login: str) -> dict:
        """A simple-user object for ``login``."""
        u = self._example("POST", STATUSES, 201)["creator"]
        u = {k: v.replace("octocat", login) if isinstance(v, str) else v for k, v in u.items()}
        u["id"] = int(_sha(login)[:7], 16)
        u["node_id"] = f"U_{u['id']}"
        u["type"] = "Bot" if login.endswith("[bot]") else "User"
        u["site_admin"] = False
        return u

    @staticmethod
    def _media(request: Any, obj: dict) -> dict:
        """Bodies as the Accept header's media type asks: ``full`` adds body_html and body_text."""
        import html

        accept = request.headers.get("Accept", "")
        out = {k: v for k, v in obj.items() if k not in ("body_html", "body_text")}
        body = obj.get("body") or ""
        if ".full+json" in accept or ".html+json" in accept:
            out["body_html"] = f"<p>{html.escape(body)}</p>"
        if ".full+json" in accept or ".text+json" in accept:
            out["body_text"] = body
        if ".html+json" in accept or ".text+json" in accept:
            out.pop("body", None)
        return out

    def _page(self, items: list, query: dict[str, str], path: str) -> tuple[int, list, dict[str, str]]:
        per_page = min(int(query.get("per_page", 30)), 100)
        page = max(int(query.get("page", 1)), 1)
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(items):
            last = (len(items) + per_page - 1) // per_page
            url = f"{self.api_url}{path}?per_page={per_page}"
            headers["Link"] = f'<{url}&page={page + 1}>; rel="next", <{url}&page={last}>; rel="last"'
        return 200, chunk, headers

    def _own(self, owner: str, repo: str) -> str:
        if (owner, repo) != (self.owner, self.repo):
            raise Reply(404, "Not Found")
        return f"{self.api_url}/repos/{owner}/{repo}"

    # ---- endpoints

    def get_repo(self, owner: str, repo: str, **_: Any) -> tuple[int, Any]:
        self._own(owner, repo)
        r = self._example("GET", REPO, 200)
        r["language"] = "Python"
        for key in ("template_repository", "parent", "source"):  # not a fork, not from a template
            r.pop(key, None)
        r["fork"] = False
        r.update(name=repo, full_name=self.full_name, private=True, default_branch="main")
        r["owner"] = {**self.user(owner), "type": "Organization"}
        return 200, r

    def create_status(self, owner: str, repo: str, sha: str, body: dict, **_: Any) -> tuple[int, Any]:
        api = self._own(owner, repo)
        s = self._example("POST", STATUSES, 201)
        sid = next(self.ids)
        if len(body.get("description") or "") > 140:
            raise Reply(422, "Validation Failed",
                        errors=[{"resource": "Status", "field": "description", "code": "custom",
                                 "message": "description is too long (maximum is 140 characters)"}])
        s.update(id=sid, node_id=f"SC_{sid}", url=f"{api}/statuses/{sha}", state=body["state"],
                 description=body.get("description"), target_url=body.get("target_url"),
                 context=body.get("context") or "default", created_at=_now(), updated_at=_now(),
                 creator=self.user(self.bot))
        self.statuses.setdefault(sha, []).insert(0, s)
        return 201, s

    def list_statuses(self, owner: str, repo: str, ref: str, query: dict, **_: Any) -> Any:
        self._own(owner, repo)
        return self._page(self.statuses.get(ref, []), query, f"/repos/{owner}/{repo}/commits/{ref}/statuses")

    def _check_run(self, run: dict, body: dict) -> dict:
        annotations = body.get("output", {}).get("annotations") or []
        if len(annotations) > 50:
            raise Reply(422, "Validation Failed", errors=[{
                "resource": "CheckRun", "field": "annotations", "code": "custom",
                "message": "only 50 annotations are accepted per request"}])
        for key in ("name", "details_url", "external_id", "status", "conclusion",
                    "started_at", "completed_at"):
            if key in body:
                run[key] = body[key]
        if "conclusion" in body:
            run["status"] = "completed"
            run["completed_at"] = body.get("completed_at") or _now()
        if run["status"] == "completed" and not run.get("conclusion"):
            raise Reply(422, "Validation Failed", errors=[{
                "resource": "CheckRun", "field": "conclusion", "code": "missing_field",
                "message": "conclusion is required when status is completed"}])
        if run["status"] != "completed":
            run["conclusion"], run["completed_at"] = None, None
        if "output" in body:
            out = body["output"]
            run["output"].update(title=out.get("title"), summary=out.get("summary"),
                                 text=out.get("text"))
            self.annotations[run["id"]].extend(annotations)
            run["output"]["annotations_count"] = len(self.annotations[run["id"]])
        return run

    def create_check_run(self, owner: str, repo: str, body: dict, **_: Any) -> tuple[int, Any]:
        api = self._own(owner, repo)
        run = self._example("POST", CHECK_RUNS, 201, "example-of-completed-conclusion")
        rid = next(self.ids)
        run.update(id=rid, node_id=f"CR_{rid}", head_sha=body["head_sha"], name=body["name"],
                   url=f"{api}/check-runs/{rid}", html_url=f"{self.url}/{self.full_name}/runs/{rid}",
                   details_url=None, external_id="", status="queued", conclusion=None,
                   started_at=_now(), completed_at=None, pull_requests=[])
        run["output"] = {"title": None, "summary": None, "text": None, "annotations_count": 0,
                         "annotations_url": f"{api}/check-runs/{rid}/annotations"}
        self.annotations[rid] = []
        self.check_runs[rid] = self._check_run(run, body)
        return 201, run

    def list_check_runs(self, owner: str, repo: str, ref: str, query: dict, **_: Any) -> Any:
        self._own(owner, repo)
        found = [r for r in sorted(self.check_runs.values(), key=lambda r: -r["id"])
                 if r["head_sha"] == ref and query.get("check_name") in (None, r["name"])]
        return 200, {"total_count": len(found), "check_runs": found[:int(query.get("per_page", 30))]}

    def update_check_run(self, owner: str, repo: str, check_run_id: str, body: dict,
                         **_: Any) -> tuple[int, Any]:
        self._own(owner, repo)
        run = self.check_runs.get(int(check_run_id))
        if run is None:
            raise Reply(404, "Not Found")
        return 200, self._check_run(run, body)

    def get_issue(self, owner: str, repo: str, issue_number: str, request: Any, **_: Any) -> tuple[int, Any]:
        api = self._own(owner, repo)
        n = int(issue_number)
        if n not in self.pulls:
            raise Reply(404, "Not Found")
        issue = self._example("GET", ISSUE, 200)
        html = f"{self.url}/{self.full_name}/pull/{n}"
        issue.update(id=n * 7919, number=n, url=f"{api}/issues/{n}", html_url=html,
                     comments_url=f"{api}/issues/{n}/comments", comments=len(self.comments[n]),
                     state="open", locked=False, closed_at=None, user=self.user(self.owner))
        issue["pull_request"] = {"url": f"{api}/pulls/{n}", "html_url": html,
                                 "diff_url": html + ".diff", "patch_url": html + ".patch"}
        return 200, self._media(request, issue)

    def list_issues(self, owner: str, repo: str, query: dict, request: Any, **_: Any) -> Any:
        self._own(owner, repo)
        wanted = {x for x in query.get("labels", "").split(",") if x}
        state = query.get("state", "open")
        found = [self._media(request, i) for i in self.issues.values()
                 if (state == "all" or i["state"] == state)
                 and wanted <= {label["name"] for label in i["labels"]}]
        return self._page(found, query, f"/repos/{owner}/{repo}/issues")

    def create_issue(self, owner: str, repo: str, body: dict, request: Any,
                     **_: Any) -> tuple[int, Any]:
        api = self._own(owner, repo)
        n = next(self.ids)
        issue = self._example("POST", ISSUES, 201)
        label = issue["labels"][0]
        issue.update(id=n * 7919, number=n, url=f"{api}/issues/{n}",
                     html_url=f"{self.url}/{self.full_name}/issues/{n}",
                     comments_url=f"{api}/issues/{n}/comments", comments=0, state="open",
                     title=body["title"], body=body.get("body"), locked=False, closed_at=None,
                     user=self.user(self.bot), created_at=_now(), updated_at=_now(),
                     labels=[{**label, "name": name} for name in body.get("labels") or []])
        issue.pop("pull_request", None)
        issue.pop("closed_by", None)
        issue.update(assignee=None, assignees=[], milestone=None)
        self.issues[n] = issue
        return 201, self._media(request, issue)

    def update_issue(self, owner: str, repo: str, issue_number: str, body: dict, request: Any,
                     **_: Any) -> tuple[int, Any]:
        self._own(owner, repo)
        issue = self.issues.get(int(issue_number))
        if issue is None:
            raise Reply(404, "Not Found")
        issue.update({k: body[k] for k in ("title", "body", "state") if k in body},
                     updated_at=_now())
        return 200, self._media(request, issue)

    def dispatch(self, owner: str, repo: str, workflow_id: str, body: dict,
                 **_: Any) -> tuple[int, Any]:
        self._own(owner, repo)
        if not body.get("ref"):
            raise Reply(422, "Invalid request.\n\n\"ref\" wasn't supplied.")
        self.dispatches.append({"workflow": workflow_id, **body})
        return 204, None

    def _comments_of(self, owner: str, repo: str, issue_number: str) -> tuple[str, int]:
        api = self._own(owner, repo)
        n = int(issue_number)
        if n not in self.pulls:
            raise Reply(404, "Not Found")
        return api, n

    def list_comments(self, owner: str, repo: str, issue_number: str, query: dict, request: Any,
                      **_: Any) -> Any:
        _, n = self._comments_of(owner, repo, issue_number)
        comments = [self._media(request, c) for c in self.comments[n]]
        return self._page(comments, query, f"/repos/{owner}/{repo}/issues/{n}/comments")

    def create_comment(self, owner: str, repo: str, issue_number: str, body: dict, request: Any,
                       **_: Any) -> tuple[int, Any]:
        api, n = self._comments_of(owner, repo, issue_number)
        c = self._example("POST", COMMENTS, 201)
        cid = next(self.ids)
        c.update(id=cid, node_id=f"IC_{cid}", url=f"{api}/issues/comments/{cid}",
                 html_url=f"{self.url}/{self.full_name}/pull/{n}#issuecomment-{cid}",
                 issue_url=f"{api}/issues/{n}", body=body["body"], user=self.user(self.bot),
                 created_at=_now(), updated_at=_now(), author_association="NONE")
        self.comments[n].append(c)
        return 201, self._media(request, c)

    def update_comment(self, owner: str, repo: str, comment_id: str, body: dict, request: Any,
                       **_: Any) -> tuple[int, Any]:
        self._own(owner, repo)
        for comments in self.comments.values():
            for c in comments:
                if c["id"] == int(comment_id):
                    c.update(body=body["body"], updated_at=_now())
                    return 200, self._media(request, c)
        raise Reply(404, "Not Found")

    def create_deployment(self, owner: str, repo: str, body: dict, **_: Any) -> tuple[int, Any]:
        api = self._own(owner, repo)
        ref = body["ref"]
        required = body.get("required_contexts")
        sha = ref if re.fullmatch(r"[0-9a-f]{40}", ref) else _sha(ref)
        latest: dict[str, str] = {}
        for s in reversed(self.statuses.get(sha, [])):
            latest[s["context"]] = s["state"]
        contexts = latest if required is None else {c: latest.get(c, "missing") for c in required}
        failing = [c for c, state in contexts.items() if state != "success"]
        if failing:
            raise Reply(409, f"Conflict: Commit status checks failed for {ref}.", errors=[
                {"contexts": [{"context": c, "state": contexts[c]} for c in failing],
                 "resource": "Deployment", "field": "required_contexts", "code": "invalid"}])
        d = self._example("POST", DEPLOYMENTS, 201)
        did = next(self.ids)
        payload = body.get("payload", {})
        env = body.get("environment", "production")
        d.update(id=did, node_id=f"DE_{did}", url=f"{api}/deployments/{did}", sha=sha, ref=ref,
                 task=body.get("task", "deploy"), payload=payload, environment=env,
                 original_environment=env, description=body.get("description", ""),
                 creator=self.user(self.bot), created_at=_now(), updated_at=_now(),
                 statuses_url=f"{api}/deployments/{did}/statuses", repository_url=api,
                 transient_environment=bool(body.get("transient_environment", False)),
                 production_environment=bool(body.get("production_environment", env == "production")))
        self.deployments[did] = d
        self.deployment_statuses[did] = []
        return 201, d

    def list_deployments(self, owner: str, repo: str, query: dict, **_: Any) -> Any:
        self._own(owner, repo)
        found = [d for d in sorted(self.deployments.values(), key=lambda d: -d["id"])
                 if all(query.get(k) in (None, d[k]) for k in ("sha", "ref", "task", "environment"))]
        return self._page(found, query, f"/repos/{owner}/{repo}/deployments")

    def _deployment(self, owner: str, repo: str, deployment_id: str) -> dict:
        self._own(owner, repo)
        d = self.deployments.get(int(deployment_id))
        if d is None:
            raise Reply(404, "Not Found")
        return d

    def get_deployment(self, owner: str, repo: str, deployment_id: str, **_: Any) -> tuple[int, Any]:
        return 200, self._deployment(owner, repo, deployment_id)

    def _add_deployment_status(self, d: dict, state: str, body: dict) -> dict:
        s = self._example("POST", DEPLOYMENT_STATUSES, 201)
        sid = next(self.ids)
        log = body.get("log_url") or body.get("target_url") or ""
        s.update(id=sid, node_id=f"DES_{sid}", state=state, creator=self.user(self.bot),
                 description=body.get("description", ""),
                 environment=body.get("environment", d["environment"]),
                 target_url=log, log_url=log, environment_url=body.get("environment_url", ""),
                 created_at=_now(), updated_at=_now(), deployment_url=d["url"],
                 repository_url=d["repository_url"], url=f"{d['url']}/statuses/{sid}")
        self.deployment_statuses[d["id"]].insert(0, s)
        return s

    def create_deployment_status(self, owner: str, repo: str, deployment_id: str, body: dict,
                                 **_: Any) -> tuple[int, Any]:
        d = self._deployment(owner, repo, deployment_id)
        s = self._add_deployment_status(d, body["state"], body)
        # GitHub's auto_inactive: a success retires the earlier deployments of the environment,
        # except transient and production ones
        if body["state"] == "success" and body.get("auto_inactive", True) and not (
                d["transient_environment"] or d["production_environment"]):
            for other in self.deployments.values():
                if (other["id"] != d["id"] and other["environment"] == d["environment"]
                        and not other["transient_environment"] and not other["production_environment"]
                        and self.deployment_statuses[other["id"]][:1]
                        and self.deployment_statuses[other["id"]][0]["state"] != "inactive"):
                    self._add_deployment_status(other, "inactive", {})
        return 201, s

    def list_deployment_statuses(self, owner: str, repo: str, deployment_id: str, query: dict,
                                 **_: Any) -> Any:
        d = self._deployment(owner, repo, deployment_id)
        return self._page(self.deployment_statuses[d["id"]], query,
                          f"/repos/{owner}/{repo}/deployments/{d['id']}/statuses")

    def get_permission(self, owner: str, repo: str, username: str, **_: Any) -> tuple[int, Any]:
        self._own(owner, repo)
        if username not in self.users:
            raise Reply(404, "Not Found")
        role = self.roles.get(username)
        p = self._example("GET", PERMISSION, 200)
        permission = _PERMISSION_OF_ROLE.get(role or "", "none")
        user = {**self.user(username), "role_name": role or "none"}
        user["permissions"] = {k: permission in v for k, v in {
            "admin": ("admin",), "maintain": ("admin",), "push": ("admin", "write"),
            "triage": ("admin", "write", "read"), "pull": ("admin", "write", "read")}.items()}
        if role == "maintain":
            user["permissions"]["maintain"] = True
        p.update(permission=permission, role_name=role or "none", user=user)
        return 200, p

    def get_commit(self, owner: str, repo: str, ref: str, **_: Any) -> tuple[int, Any]:
        api = self._own(owner, repo)
        if ref not in self.commits:
            raise Reply(422, f"No commit found for SHA: {ref}")
        author = self.commits[ref]
        c = self._example("GET", COMMIT, 200)
        c.update(sha=ref, node_id=f"C_{ref[:16]}", url=f"{api}/commits/{ref}",
                 html_url=f"{self.url}/{self.full_name}/commit/{ref}",
                 comments_url=f"{api}/commits/{ref}/comments", files=[],
                 author=self.user(author) if author else None, committer=self.user("web-flow"))
        c["commit"]["author"]["name"] = author or "Someone Unlinked"
        return 200, c

    def list_approvals(self, owner: str, repo: str, run_id: str, **_: Any) -> tuple[int, Any]:
        self._own(owner, repo)
        if int(run_id) not in self.approvals:
            raise Reply(404, "Not Found")
        template = self._example("GET", APPROVALS, 200)[0]
        env_template = template["environments"][0]
        out = []
        for a in self.approvals[int(run_id)]:
            envs = [{**env_template, "name": e, "id": int(_sha(e)[:6], 16),
                     "node_id": f"EN_{e}", "url": f"{self.api_url}/repos/{self.full_name}/environments/{e}",
                     "html_url": f"{self.url}/{self.full_name}/deployments/activity_log?environments_filter={e}"}
                    for e in a["environments"]]
            out.append({**template, "environments": envs, "state": a["state"],
                        "user": self.user(a["user"]), "comment": a["comment"]})
        return 200, out
