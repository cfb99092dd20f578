"""``cd4ml ui`` in a real browser: Debian's chromium driven by Playwright against the command
itself, over a store filled by real pipeline runs (wine twice, the second overridden past its
gate; diabetes; a tracked run whose parameter is a script tag), deployments and an approval
recorded through the store's own deploy-recording API (a live Docker deploy would add minutes
and nothing this view reads), and a real prediction answered by ``cd4ml serve``.

Screenshots of every page go to the test's tmp folder and, when ``CD4ML_SCREENSHOTS`` is set,
there too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from playwright.sync_api import expect

from cd4ml.store import Store

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
UI_PORT, SERVE_PORT = 19021, 19022
XSS = "<script>window.__xss = 1; alert(1)</script>"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium "
                                "(scripts/setup.sh installs it)")


@dataclass
class Filled:
    url: str  # the web view
    store_url: str
    env: dict
    work: Path
    shots: list[Path]
    run_v2: str
    staging_v2: int  # the deployment of wine:2 to staging
    request_id: str  # a prediction wine:2 answered in staging
    xss_run: str


def _cli(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "cd4ml", *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), f"cd4ml {' '.join(args)}: {done.stderr}"
    return done


def _wait_line(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if re.search(pattern, line or ""):
            return line
        if proc.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r}")


def _predict(env: dict, work: Path, log: Path) -> str:
    """One real prediction of wine:2, logged where a deployed staging environment logs."""
    import pandas as pd

    row = pd.read_csv(ROOT / "pipelines" / "data" / "wine.csv").drop(columns=["target", "alcohol_level"]).iloc[0]
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "cd4ml", "serve", "wine:2", "--port",
                             str(SERVE_PORT)], cwd=work, env={**env, "CD4ML_PREDICTION_LOG": str(log)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{SERVE_PORT}/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        answer = requests.post(f"http://127.0.0.1:{SERVE_PORT}/predict",
                               json={"inputs": {k: (v.item() if hasattr(v, "item") else v)
                                                for k, v in row.items()}}, timeout=10)
        assert answer.ok, answer.text
        return answer.json()["request_id"]
    finally:
        proc.send_signal(signal.SIGTERM)  # the log is written out on the way down
        proc.wait(30)


@pytest.fixture(scope="module")
def filled(tmp_path_factory) -> Filled:
    base = tmp_path_factory.mktemp("ui")
    work = base / "repo"
    shutil.copytree(ROOT / "pipelines", work / "pipelines")
    home = base / ".cd4ml"
    store_url = f"sqlite:///{base / 'store.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CD4ML_"))}
    env.update(PYTHONPATH=str(ROOT), CD4ML_HOME=str(home), CD4ML_STORE_URL=store_url,
               NO_COLOR="1", GITHUB_ACTOR="ana")

    _cli(env, work, "run", "-p", "pipelines/wine.yaml")
    spec = yaml.safe_load((work / "pipelines" / "wine.yaml").read_text())
    spec["model"]["params"] = {"n_estimators": 3, "max_depth": 2}
    # nothing serves in production yet, so relative gates pass: an absolute one must fail
    spec["gates"][0]["min"] = 0.995
    (work / "pipelines" / "wine.yaml").write_text(yaml.safe_dump(spec))
    _cli(env, work, "run", "-p", "pipelines/wine.yaml")  # worse: its accuracy gate fails
    _cli(env, work, "run", "-p", "pipelines/diabetes.yaml")
    subprocess.run([sys.executable, "-c", (
        "import cd4ml\n"
        f"with cd4ml.start_run(pipeline='wine', params={{'note': {XSS!r}}}, tags={{'who': {XSS!r}}}) as r:\n"
        "    r.log_metrics({'accuracy': 0.5})\n")], cwd=work, env=env, check=True, timeout=120)

    with Store(store_url) as store:
        v1, v2 = store.model("wine", 1), store.model("wine", 2)
        run_v2 = v2.run_id
        _cli(env, work, "gate", "-p", "pipelines/wine.yaml", "--run", run_v2, "--override",
             "--reason", "fewer trees on purpose: latency budget", "--by", "alice")
        xss_run = next(r.id for r in store.runs("wine") if r.kind == "tracked")
        store.record_image(v2.id, "sha256:" + "c" * 64, "cd4ml/wine:2", 312_000_000, "passed")
        first = store.start_deployment("wine", "staging", v1.id, "cd4ml/wine:1", "local",
                                       "deploy", "ana", reason="first model")
        store.finish_deployment(first.id, "healthy", url="http://127.0.0.1:8701")
        store.record_approval(v1.id, "production", "rita", "cli")
        prod = store.start_deployment("wine", "production", v1.id, "cd4ml/wine:1", "local",
                                      "promote", "rita", reason="approved by rita")
        store.finish_deployment(prod.id, "healthy", url="http://127.0.0.1:8702")
        second = store.start_deployment("wine", "staging", v2.id, "cd4ml/wine:2", "local",
                                        "deploy", "ben", reason=f"retrained {XSS}")
        store.finish_deployment(second.id, "healthy", url="http://127.0.0.1:8701")
    request_id = _predict(env, work, home / "logs" / "work" / "wine" / "staging" / "serve.jsonl")

    ui = subprocess.Popen([sys.executable, "-m", "cd4ml", "ui", "--port", str(UI_PORT)], cwd=work,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = re.search(r"(http://\S+)", _wait_line(ui, r"serving http://")).group(1)
    yield Filled(url, store_url, env, work, [], run_v2, second.id, request_id, xss_run)
    ui.send_signal(signal.SIGINT)
    assert ui.wait(10) == 0


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def page(browser, filled, tmp_path):
    """A fresh page that fails the test on any console error, page error or dialog."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
          if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.problems = problems
    yield pg
    context.close()
    assert not problems, problems


def _open(page, filled, route: str, ready: str) -> None:
    page.goto(filled.url + route)
    page.wait_for_selector(ready)
    page.wait_for_selector("body:not([data-loading])", state="attached")


def _shot(page, filled, name: str, tmp_path: Path) -> None:
    folders = [tmp_path / "screenshots"]
    if os.environ.get("CD4ML_SCREENSHOTS"):
        folders.append(Path(os.environ["CD4ML_SCREENSHOTS"]))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"ui-{name}.png"), full_page=True)
    filled.shots.append(folders[0] / f"ui-{name}.png")


def _column(page, key: str) -> list[str]:
    return page.eval_on_selector_all(f'#runs td[data-column="{key}"]', "els => els.map(e => e.textContent)")


# ------------------------------------------------------------------------------------ tests


def test_every_page_loads_without_console_errors(page, filled, tmp_path):
    pages = [
        ("runs", "#/runs", "#runs"),
        ("run", f"#/run/{filled.run_v2}", "#gate"),
        ("model", "#/model/wine:1", "#metrics"),
        ("models", "#/models", "#models"),
        ("compare", "#/compare/wine:1,wine:2", "figure.chart canvas"),
        ("lineage", "#/lineage/wine:2", ".lineage"),
        ("deployment", f"#/deployment/{filled.staging_v2}", "#predictions"),
        ("prediction", f"#/prediction/{filled.request_id}", "#inputs"),
        ("environments", "#/environments", "table.history"),
    ]
    for name, route, ready in pages:
        _open(page, filled, route, ready)
        assert page.locator(".error").count() == 0, (name, page.locator(".error").all_text_contents())
        _shot(page, filled, name, tmp_path)
    assert all(p.exists() and p.stat().st_size > 5000 for p in filled.shots)


def test_sorting_and_filtering_change_the_table(page, filled):
    _open(page, filled, "#/runs", "#runs")
    assert set(_column(page, "pipeline")) == {"wine", "diabetes"}
    assert len(_column(page, "id")) == 4

    page.select_option("select[name=pipeline]", "diabetes")
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    assert _column(page, "pipeline") == ["diabetes"]
    assert "pipeline=diabetes" in page.url

    page.select_option("select[name=pipeline]", "")
    expect(page.locator("#runs tbody tr")).to_have_count(4)
    page.click('th[data-sort="metric.accuracy"]')
    page.wait_for_selector('th.sorted[data-sort="metric.accuracy"]')
    first = [float(v) for v in _column(page, "metric.accuracy") if v != "–"]
    assert first == sorted(first, reverse=True) and len(first) == 3
    page.click('th[data-sort="metric.accuracy"]')
    page.wait_for_selector('th.sorted.asc[data-sort="metric.accuracy"]')
    again = [float(v) for v in _column(page, "metric.accuracy") if v != "–"]
    assert again == sorted(first)

    page.select_option("select[name=blessed]", "no")  # the tracked run: no model, not blessed
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    assert _column(page, "id") == [filled.xss_run]
    page.select_option("select[name=blessed]", "yes")  # wine:2 counts: blessed by an override
    expect(page.locator("#runs tbody tr")).to_have_count(3)
    page.fill("input[name=q]", filled.run_v2[:8])
    page.click("form.filters button")
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    assert _column(page, "id") == [filled.run_v2]


def test_choose_columns_and_export_csv(page, filled):
    _open(page, filled, "#/runs?pipeline=wine", "#runs")
    assert _column(page, "param.model.n_estimators")
    page.click("details.columns summary")
    page.uncheck('input[data-column="param.model.n_estimators"]')
    expect(page.locator('#runs td[data-column="param.model.n_estimators"]')).to_have_count(0)
    href = page.get_attribute("#csv", "href")
    assert "param.model.n_estimators" not in href and "pipeline=wine" in href
    text = page.evaluate("async (u) => (await fetch(u)).text()", href)
    lines = text.strip().splitlines()
    assert len(lines) == 4 and "diabetes" not in text  # header and the three wine runs


def test_click_run_then_lineage_then_deployment_then_prediction(page, filled):
    _open(page, filled, "#/runs", "#runs")
    page.click(f'a[data-run="{filled.run_v2}"]')
    page.wait_for_selector("#gate")
    assert "wine:2" in page.inner_text("h1")
    assert "OVERRIDDEN by alice" in page.inner_text("main")
    page.click("#to-lineage")
    page.wait_for_selector(".lineage")
    assert page.url.endswith("#/lineage/wine%3A2")
    page.click(f'a[data-deployment="{filled.staging_v2}"]')
    page.wait_for_selector("#predictions")
    assert f"Deployment #{filled.staging_v2}" in page.inner_text("h1")
    page.click(f'a[data-request="{filled.request_id}"]')
    page.wait_for_selector("#inputs")
    assert filled.request_id in page.inner_text("h1")
    assert page.inner_text("#prediction-model") == "wine:2"
    # and back up the chain: the prediction's run node leads to the run that trained wine:2
    page.click('.lineage a[data-node="run"]')
    page.wait_for_selector("#gate")
    assert filled.run_v2 in page.inner_text("main")


def test_compare_shows_the_right_deltas(page, filled):
    from cd4ml.reporting.lineage import compare

    _open(page, filled, "#/runs?pipeline=wine", "#runs")
    page.evaluate("sessionStorage.clear()")
    page.check('tr[data-ref="wine:1"] input[type=checkbox]')
    page.check('tr[data-ref="wine:2"] input[type=checkbox]')
    page.click("#compare")
    page.wait_for_selector("#compare-metrics")
    with Store(filled.store_url) as store:
        expected = {(m.name, m.slice_value): m for m in compare(store, "wine:1", "wine:2").metrics}
    rows = page.eval_on_selector_all("#compare-metrics tbody tr",
                                     "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
    assert len(rows) == len(expected)
    for name, where, a, b, d in rows:
        m = expected[(name, "" if where == "all" else where.split("=", 1)[1])]
        if m.delta is None:
            assert d == "–"
        else:
            assert float(d) == pytest.approx(m.delta, abs=5e-4 * max(1, abs(m.delta)))
            assert float(a) == pytest.approx(m.a, rel=1e-3) and float(b) == pytest.approx(m.b, rel=1e-3)
    accuracy = next(r for r in rows if r[:2] == ["accuracy", "all"])
    assert accuracy[4].startswith("-")  # wine:2 has fewer, shallower trees
    assert page.locator('figure.chart[data-metric="accuracy"] canvas').count() == 1
    # the chart draws the gate the newest version was judged by (wine:2's stricter one)
    assert "gate min 0.995" in page.inner_text('figure.chart[data-metric="accuracy"]')


def test_a_script_in_the_store_renders_as_text(page, filled):
    _open(page, filled, f"#/runs?q={filled.xss_run}", "#runs")
    assert XSS in page.inner_text('#runs td[data-column="param.note"]')
    _open(page, filled, f"#/run/{filled.xss_run}", "#params")
    assert XSS in page.inner_text("#params")
    assert XSS in page.inner_text("main")  # the tag, as text
    _open(page, filled, "#/environments", "table.history")
    assert f"retrained {XSS}" in page.inner_text("table.history")
    assert page.evaluate("window.__xss") is None
    assert page.locator("main script").count() == 0


def test_api_gives_what_the_cli_json_gives(filled):
    for args, path in ((["show", "wine:2"], "show/wine:2"), (["lineage", "wine:2"], "lineage/wine:2"),
                       (["compare", "wine:1", "wine:2"], None),
                       (["lineage", "--request-id", filled.request_id], f"prediction/{filled.request_id}")):
        cli = json.loads(_cli(filled.env, filled.work, *args, "--json").stdout)
        if path is None:
            api = requests.get(filled.url + "api/compare?ref=wine:1&ref=wine:2", timeout=10).json()
            api = api["comparisons"][0]
        else:
            api = requests.get(filled.url + "api/" + path, timeout=10).json()
        assert api == cli, args
    runs = json.loads(_cli(filled.env, filled.work, "runs", "--json", "--limit", "100").stdout)
    page = requests.get(filled.url + "api/runs?per_page=100", timeout=10).json()["rows"]
    assert [{k: v for k, v in r.items() if k != "param_values"} for r in page] == runs
