"""The HTTP side of the local GitHub API server: authentication, routing, validation of every
request and response against GitHub's OpenAPI description, failure injection and recording.

A request the description refuses gets GitHub's 422; a response the description refuses is a bug
in this server, recorded in ``errors`` (the fixture fails the test on it) and answered with 500.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.ghserver import openapi

DOCS = "https://docs.github.com/rest"


@dataclass
class Recorded:
    """One request as the server saw it (path without the API prefix)."""

    method: str
    path: str
    template: str | None
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    status: int = 0


class Reply(Exception):
    """Raised by a handler to answer with an error status and GitHub's error body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 errors: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "documentation_url": DOCS,
                                     "status": str(status)}
        if errors:
            self.body["errors"] = errors
        self.headers = headers or {}


@dataclass
class Failure:
    """An injected failure, answered before the request reaches its handler."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "Server Error"


Handler = Callable[..., tuple[int, Any] | tuple[int, Any, dict[str, str]]]


class HttpSide:
    """WSGI application plumbing; :class:`tests.ghserver.GitHubServer` adds the resources."""

    prefix = ""
    token = ""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.errors: list[str] = []
        self.rejected: list[str] = []
        self.failures: list[Failure] = []
        self.after: list[tuple[str, str, int]] = []  # (method, template, status): see fail_after
        self.routes: list[tuple[str, str, re.Pattern[str], Handler]] = []
        self._api: Any = None
        self.base = ""

    # ---- set-up

    def route(self, method: str, template: str, handler: Handler) -> None:
        openapi.operation(method, template)  # a route the description lacks is a typo here
        pattern = re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")
        self.routes.append((method.upper(), template, pattern, handler))

    def bind(self, base: str) -> None:
        """Validate against the description with our own address as its server."""
        from openapi_core import Config, OpenAPI

        self.base = base
        spec = {**openapi.load(), "servers": [{"url": base + self.prefix}]}
        self._api = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))

    # ---- failure injection

    def fail_after(self, method: str, template: str, status: int = 502) -> None:
        """The next ``method`` request to ``template`` is handled (its object is created) and
        then answered with ``status``: the ambiguous failure a gateway gives when the service
        behind it did the work but the answer was lost."""
        with self.lock:
            self.after.append((method, template, status))

    def fail_next(self, count: int = 1, status: int = 502) -> None:
        """The next ``count`` requests are answered with ``status`` (a 5xx, say)."""
        with self.lock:
            self.failures += [Failure(status, message="Server Error")] * count

    def rate_limit_next(self, count: int = 1, secondary: bool = False, retry_after: int = 0) -> None:
        """The next ``count`` requests hit a rate limit: the primary one (403 with
        ``x-ratelimit-remaining: 0`` and a reset time) or a secondary one (429, ``retry-after``)."""
        if secondary:
            f = Failure(429, {"retry-after": str(retry_after)},
                        "You have exceeded a secondary rate limit. Please wait a few minutes.")
        else:
            f = Failure(403, {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                              "x-ratelimit-used": "5000", "x-ratelimit-resource": "core",
                              "x-ratelimit-reset": str(int(time.time()) + retry_after)},
                        "API rate limit exceeded for installation ID 1.")
        with self.lock:
            self.failures += [f] * count

    # ---- assertions

    def calls(self, method: str | None = None, template: str | None = None) -> list[Recorded]:
        """Recorded requests, filtered by method and by the description's path template."""
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method.upper())
                    and (template is None or r.template == template)]

    # ---- WSGI

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        from werkzeug.wrappers import Request, Response

        request = Request(environ)
        with self.lock:
            status, body, headers, template = self._dispatch(request)
            payload = b"" if body is None else json.dumps(body).encode()
            response = Response(payload, status=status, content_type="application/json; charset=utf-8")
            for k, v in {**self._standard_headers(), **headers}.items():
                response.headers[k] = v
            if template is not None and body is not None:
                problem = self._check_response(request, response, template, status)
                if problem:
                    self.errors.append(problem)
                    response = Response(json.dumps({"message": problem}), status=500,
                                        content_type="application/json")
            self.requests[-1].status = response.status_code
        return response(environ, start_response)

    def _standard_headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999",
                "x-ratelimit-reset": str(int(time.time()) + 3600), "x-ratelimit-resource": "core",
                "x-github-api-version-selected": "2022-11-28",
                "x-github-request-id": f"CD4ML:{len(self.requests):08X}"}

    def _dispatch(self, request: Any) -> tuple[int, Any, dict[str, str], str | None]:
        path = request.path
        body: Any = None
        if request.get_data():
            try:
                body = json.loads(request.get_data())
            except ValueError:
                body = request.get_data(as_text=True)
        template = None
        rec = Recorded(request.method, path.removeprefix(self.prefix), None, dict(request.args),
                       body, dict(request.headers))
        self.requests.append(rec)
        try:
            if not path.startswith(self.prefix + "/") and path != self.prefix + "/":
                raise Reply(404, "Not Found")
            self._authenticate(request.headers.get("Authorization", ""))
            if self.failures:
                f = self.failures.pop(0)
                raise Reply(f.status, f.message, f.headers)
            handler, template, params = self._find(request.method, rec.path)
            rec.template = template
            self._check_request(request)
            out = handler(request=request, body=body, query=dict(request.args), **params)
            with self.lock:
                lost = next((a for a in self.after if a[:2] == (request.method, template)), None)
                if lost is not None:
                    self.after.remove(lost)
            if lost is not None:
                raise Reply(lost[2], "Server Error")
            status, result = out[0], out[1]
            headers = out[2] if len(out) > 2 else {}  # type: ignore[misc]
            return status, result, headers, template
        except Reply as e:
            if e.status == 422:
                self.rejected.append(f"{request.method} {rec.path}: {e.body['message']}")
            problem = self._check_error_body(e.status, e.body, template)
            if problem:
                self.errors.append(problem)
            return e.status, e.body, e.headers, None
        except Exception as e:  # noqa: BLE001 - a crash in a handler is this server's bug: report it
            self.errors.append(f"{request.method} {rec.path}: handler crashed: {e!r}")
            return 500, {"message": "Server Error", "documentation_url": DOCS, "status": "500"}, {}, None

    def _authenticate(self, header: str) -> None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or value.strip() != self.token:
            raise Reply(401, "Bad credentials" if header else "Requires authentication")

    def _find(self, method: str, path: str) -> tuple[Handler, str, dict[str, str]]:
        allowed = False
        for m, template, pattern, handler in self.routes:
            match = pattern.match(path)
            if match:
                if m == method.upper():
                    return handler, template, match.groupdict()
                allowed = True
        if allowed:
            raise Reply(404, "Not Found")  # GitHub answers 404, not 405, for a wrong method
        if self._described(method, path):
            self.errors.append(f"{method} {path}: described by GitHub but not implemented here")
        raise Reply(404, "Not Found")

    def _described(self, method: str, path: str) -> bool:
        for template, item in openapi.load()["paths"].items():
            pattern = "^" + re.sub(r"\\{(\w+)\\}", r"[^/]+", re.escape(template)) + "$"
            if method.lower() in item and re.match(pattern, path):
                return True
        return False

    def _check_request(self, request: Any) -> None:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
        from openapi_core.exceptions import OpenAPIError

        try:
            self._api.validate_request(WerkzeugOpenAPIRequest(request))
        except OpenAPIError as e:
            cause = e.__cause__ or e
            details = [str(x).split("\n")[0] for x in getattr(cause, "schema_errors", ())]
            raise Reply(422, "Invalid request.\n\n" + ("\n".join(details) or str(e))) from None

    def _check_response(self, request: Any, response: Any, template: str, status: int) -> str | None:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
        from openapi_core.exceptions import OpenAPIError

        method = request.method.lower()
        if status not in openapi.declared_statuses(method, template):
            return f"{method.upper()} {template}: status {status} is not in GitHub's description"
        try:
            self._api.validate_response(WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))
        except OpenAPIError as e:
            cause = e.__cause__ or e
            details = [str(x).split("\n")[0] for x in getattr(cause, "schema_errors", ())][:8]
            return f"{method.upper()} {template} -> {status}: response does not match: {details or e}"
        return None

    def _check_error_body(self, status: int, body: dict, template: str | None) -> str | None:
        """Error answers outside an operation's declared ones still have GitHub's error shape."""
        import jsonschema

        name = "validation-error" if status == 422 else "basic-error"
        try:
            jsonschema.validate(body, openapi.schema(name))
        except jsonschema.ValidationError as e:
            return f"{template or '?'} -> {status}: error body does not match {name}: {e.message}"
        return None
