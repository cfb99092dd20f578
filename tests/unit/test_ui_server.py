"""The web view's server: pages and assets from the package (nothing from elsewhere), read-only,
loopback by Host header, any other address only with the token printed at start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from cd4ml.ui.access import Access, is_loopback
from cd4ml.ui.server import UiConfig, serve_in_thread, static_files

STATIC = Path(__file__).resolve().parents[2] / "cd4ml" / "ui" / "static"


@pytest.fixture
def store(file_store):
    return file_store


@pytest.fixture
def ui(store):
    server, started = serve_in_thread(UiConfig(port=0), store)
    yield started.url
    server.shutdown()
    server.server_close()


def test_pages_and_assets_come_from_the_package_only(ui):
    r = requests.get(ui, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    referenced = re.findall(r'(?:src|href)="([^"#]+)"', r.text)
    assert referenced and all(u.startswith(("/static/", "data:")) for u in referenced), referenced
    for path in referenced:
        if path.startswith("/static/"):
            assert requests.get(ui.rstrip("/") + path, timeout=5).status_code == 200, path
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, script.name
        assert not re.search(r"""(?:fetch|import)\s*\(?\s*["'`]https?:""", text), script.name
        for module in re.findall(r'from "\./([^"]+)"', text):
            assert (STATIC / module).is_file(), module
    assert (STATIC / "uplot.LICENSE.txt").read_text().startswith("The MIT License")
    assert set(static_files()) == {p.name for p in STATIC.iterdir()}


def test_read_only_and_json_errors(ui):
    assert requests.post(ui + "api/runs", timeout=5).status_code == 405
    r = requests.get(ui + "api/nothing", timeout=5)
    assert r.status_code == 404 and "no API route" in r.json()["error"]
    r = requests.get(ui + "api/show/fedcba987", timeout=5)
    assert r.status_code == 404 and "no run 'fedcba987'" in r.json()["error"]
    # neither a run id nor a model version: the one grammar's message (cd4ml.refs)
    r = requests.get(ui + "api/show/nosuchrun", timeout=5)
    assert r.status_code == 404 and "'nosuchrun': expected a run id" in r.json()["error"]
    r = requests.get(ui + "api/compare?ref=a", timeout=5)
    assert r.status_code == 400
    assert requests.get(ui + "static/../server.py", timeout=5).status_code == 404
    assert requests.get(ui + "api/runs", timeout=5).json()["total"] == 0


def test_loopback_answers_only_to_a_loopback_host_name(ui):
    assert requests.get(ui + "api/runs", headers={"Host": "localhost:1"}, timeout=5).ok
    r = requests.get(ui + "api/runs", headers={"Host": "attacker.example:8765"}, timeout=5)
    assert r.status_code == 403


def test_another_address_needs_the_token(store):
    server, started = serve_in_thread(UiConfig(host="0.0.0.0", port=0), store)
    try:
        assert started.token and f"?token={started.token}" in started.url
        port = server.server_address[1]
        base = f"http://127.0.0.1:{port}/"
        assert requests.get(base + "api/runs", timeout=5).status_code == 403
        assert requests.get(base + "api/runs?token=wrong", timeout=5).status_code == 403
        r = requests.get(base + f"?token={started.token}", timeout=5)
        assert r.status_code == 200 and "HttpOnly" in r.headers["Set-Cookie"]
        assert requests.get(base + "api/runs", cookies=r.cookies, timeout=5).status_code == 200
        bearer = {"Authorization": f"Bearer {started.token}"}
        assert requests.get(base + "api/runs", headers=bearer, timeout=5).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


def test_access_rules():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    local = Access(None)
    assert local.check({"Host": "[::1]:8765"}, {}).allowed
    assert not local.check({"Host": "evil.test"}, {}).allowed
    assert not Access("t0k").check({"Cookie": 'bad"cookie; ='}, {}).allowed
