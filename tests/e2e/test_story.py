"""A team's week with cd4ml, end to end, against real parts (see tests/e2e/story.py): a git
repository, the Docker engine, a local registry, the local GitHub API server and a one-node
Swarm, driven through ``python -m cd4ml`` with GitHub Actions' variables, as the workflows run it.

The store is the git store, as the scaffolded workflows default to it (a bare repository on
this machine, ``git+file://``); chapter 2's pull request runs on a fresh clone with an empty
``.cd4ml/`` and finds production v1, and its model, on the store's branch.

Set-up: the first model is trained, built, pushed, deployed to staging and promoted to
production, so that production exists to compare with. Then one test per chapter, in order,
sharing the world; a chapter whose predecessor failed stops at once and says so.

    1  data that breaks an expectation: nothing trained, the PR says which and why
    2  a worse model: the gate fails against production, the delta shows red, nothing ships
    3  a good change: blessed, built, pushed, deployed to staging; GitHub agrees everywhere
    4  promotion: refused for the author (approving the workflow's environment review, or
       named with --approved-by) and for a reader; accepted for a reviewer with write permission
    5  a complaint about one prediction: its request id leads to version, run, data, commit, image
    6  rollback of production under load: the old version back within 10 s, no request failed
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.e2e.story import (
    AUTHOR,
    IMAGE_REPOSITORY,
    LEAD,
    PIPELINE,
    PORTS,
    REVIEWER,
    SPEC,
    Story,
    base_env,
    make_repository,
)
from tests.fixtures.deploy import Load, served_version

pytestmark = pytest.mark.docker

SRE = "sam"  # approved the first release; runs the rollback


@pytest.fixture(scope="module")
def story(tmp_path_factory, github_openapi, registry, docker_client, swarm):
    from tests.ghserver import GitHubServer

    tmp = tmp_path_factory.mktemp("story")
    repo = tmp / "repo"
    repo.mkdir()
    # the store the scaffolded workflows default to: a branch of a git repository
    subprocess.run(["git", "init", "-q", "--bare", str(tmp / "state.git")], check=True)
    store_url = f"git+file://{tmp / 'state.git'}"
    gh = GitHubServer().start()
    world = Story(tmp=tmp, repo=repo, store_url=store_url, gh=gh, registry=registry,
                  base_env=base_env(tmp, store_url))
    # the test's own reads of the store keep their cache apart from every job's
    reader = pytest.MonkeyPatch()
    reader.setenv("CD4ML_HOME", str(tmp / "test-reader"))
    try:
        world.git("init", "-q", "-b", "main")
        make_repository(repo, registry.host)
        _teardown(world, docker_client)  # what an interrupted earlier story may have left
        try:
            _first_release(world)
            yield world
        finally:
            _teardown(world, docker_client)
            for tag in ("1", "3"):
                # untag only: the layers stay as the build cache of the next run
                _untag(docker_client, f"{registry.host}/{IMAGE_REPOSITORY}:{tag}")
    finally:
        gh.stop()
        reader.undo()
    if gh.errors:
        pytest.fail("the local GitHub server broke GitHub's description:\n" + "\n".join(gh.errors))


def _first_release(story: Story) -> None:
    """Monday: the lead adds the pipeline on main; it is trained, built, pushed, deployed to
    staging and, approved by the SRE, promoted to production."""
    story.gh.set_permission(AUTHOR, "write")
    story.gh.set_permission(REVIEWER, "read")  # new on the team; write comes in chapter 4
    story.gh.set_permission(SRE, "maintain")
    sha = story.commit(f"{PIPELINE}: the wine classifier, staging and production", author=LEAD)
    story.notes["v1 sha"] = sha
    main = story.job(sha, "main", LEAD)
    for args in (("run", "--report"), ("build", "--push"), ("deploy", "--env", "staging")):
        _ok(story.cli(main, *args, "-p", SPEC))
    _ok(story.cli(story.job(sha, "main", SRE), "promote", "1", "--to", "production",
                  "--approved-by", SRE, "-p", SPEC))
    assert served_version(PORTS["staging"]) == 1
    assert served_version(PORTS["production"]) == 1


def _teardown(story: Story, client) -> None:
    from cd4ml.release.targets.local import LocalTarget
    from cd4ml.release.targets.swarm import SwarmTarget
    from cd4ml.spec import load_spec

    spec = load_spec(story.spec_path)
    LocalTarget(client).teardown(spec, spec.environment("staging"))
    SwarmTarget(client).teardown(spec, spec.environment("production"))
    # Swarm removes a removed stack's containers a moment later: wait, so nothing outlives us
    stack = f"com.docker.stack.namespace=cd4ml-{PIPELINE}-production"
    deadline = time.monotonic() + 30
    while client.containers.list(all=True, filters={"label": stack}) and time.monotonic() < deadline:
        time.sleep(0.5)


def _untag(client, reference: str) -> None:
    from docker.errors import ImageNotFound

    try:
        client.images.remove(reference, force=True, noprune=True)
    except ImageNotFound:
        pass


def _ok(out) -> None:
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def _counts(story: Story) -> dict[str, int]:
    """How many model versions, images and deployments exist, in the store and on GitHub."""
    with story.store() as store:
        models = store.models(PIPELINE, limit=1000)
        return {"models": len(models),
                "images": sum(len(store.images_for(m.id)) for m in models),
                "deployments": len(store.deployments(PIPELINE, limit=1000)),
                "github deployments": len(story.gh.deployments)}


def _row(story: Story) -> dict:
    """One input row for /predict: the model's inputs from the first line of the data."""
    kinds = {"float": float, "int": int, "bool": lambda v: v.lower() == "true", "str": str}
    with story.store() as store:
        inputs = store.model(PIPELINE, 1).signature["inputs"]
    with story.data_path.open() as f:
        first = next(csv.DictReader(f))
    return {i["name"]: kinds[i["dtype"]](first[i["name"]]) for i in inputs}


def _table_row(markdown: str, first_cell: str) -> str:
    """The markdown table line whose first cell is ``first_cell``."""
    found = [ln for ln in markdown.splitlines() if ln.startswith(f"| {first_cell} |")]
    assert found, f"no table row '| {first_cell} |' in:\n{markdown}"
    return found[0]


# ---------------------------------------------------------------------------------- chapter 1


def test_chapter1_data_that_breaks_an_expectation_trains_nothing(story):
    before = _counts(story)
    story.branch("new-batch")
    rows = list(csv.reader(story.data_path.open()))
    col = rows[0].index("magnesium")
    for r in rows[1:4]:  # a new batch recorded magnesium in a unit ten times smaller
        r[col] = str(float(r[col]) * 10)
    bad_values = [r[col] for r in rows[1:4]]
    with story.data_path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    sha = story.commit("data: add the new batch of wine measurements")
    job = story.pull_request(1, "new-batch", sha)

    out = story.cli(job, "run", "--report", "-p", SPEC)

    assert out.returncode == 1, out.stderr[-3000:]
    status = story.status(sha)
    assert status["state"] == "failure"
    assert status["description"].startswith("data validation failed (1 expectation(s)")
    check = story.check_run(sha)
    assert check["conclusion"] == "failure"
    assert "data validation failed" in check["output"]["title"]
    comment = story.comment(1)
    for text in (comment, check["output"]["summary"], story.step_summary(job)):
        line = _table_row(text, "expect_column_values_to_be_between")
        # which expectation, on which column, what was observed, and examples of the bad values
        assert "| magnesium |" in line and "| 3/178 unexpected" in line and "| 3 |" in line, line
        assert all(v in line for v in bad_values), line
        assert "#### Metrics" not in text and "#### Gates" not in text  # nothing was trained
    assert "14 of 15 expectations met" in comment
    with story.store() as store:
        assert store.runs(PIPELINE, limit=1)[0].status == "validation_failed"
    assert _counts(story) == before  # no model version, image or deployment, here or on GitHub
    assert served_version(PORTS["staging"]) == 1 and served_version(PORTS["production"]) == 1
    story.abandon()
    story.done.append("chapter 1")


# ---------------------------------------------------------------------------------- chapter 2


def test_chapter2_a_worse_model_fails_the_gate_against_production(story):
    before = _counts(story)
    story.branch("smaller-forest")
    story.edit_spec(r"n_estimators: 10$", "n_estimators: 2")  # "it trains faster"
    story.edit_spec(r"max_depth: 8$", "max_depth: 2")
    sha = story.commit("model: a smaller forest, to train faster")
    job = story.pull_request(2, "smaller-forest", sha)
    # on a runner that kept nothing: production v1 and its model come from the store's branch
    runner = story.fresh_runner("chapter2-runner")
    # nor can it reach the first runner's model files: they are on another machine
    artifacts = Path(story.base_env["CD4ML_ARTIFACTS"])
    artifacts.rename(artifacts.with_name("elsewhere"))
    try:
        out = story.cli(job, "run", "--report", "-p", SPEC, where=runner)
    finally:
        artifacts.with_name("elsewhere").rename(artifacts)

    assert out.returncode == 1, out.stderr[-3000:]
    with story.store() as store:
        v2 = store.model(PIPELINE, 2)
        gate = store.gate(v2.run_id)
        assert not v2.blessed and not gate.passed and gate.baseline_version == 1
        failed = [r for r in gate.rules if not r.passed]
        assert "f1_macro drop <= 0.03 vs production" in [r.rule for r in failed], failed
    # the like-for-like comparison loaded v1's model, fetched from the branch (sha256-checked)
    assert (runner / ".cd4ml" / "artifacts" / PIPELINE / "v1" / "model.pkl").exists()
    status = story.status(sha)
    assert status["state"] == "failure" and "model v2 not blessed" in status["description"]
    comment = story.comment(2)
    assert "candidate vs production v1" in comment
    f1 = _table_row(comment, "f1_macro")  # the first f1_macro row: the whole held-out set
    delta = f1.split("|")[5].strip()
    assert delta.startswith("-") and delta.endswith("🔴"), f1
    assert "❌" in f1 and "fell by" in f1, f1
    drop = next(ln for ln in comment.splitlines() if "f1_macro drop <= 0.03 vs production" in ln
                and ln.startswith("| ❌"))
    assert "vs production" in drop and "more than the 0.03 allowed" in drop, drop
    check = story.check_run(sha)
    assert check["conclusion"] == "failure"
    notes = story.gh.annotations[check["id"]]
    spec_lines = story.spec_path.read_text().splitlines()
    for n in notes:  # each on the line of the spec's failed rule
        assert n["path"] == SPEC and n["annotation_level"] == "failure"
        assert n["start_line"] >= 1 and "metric:" in spec_lines[n["start_line"] - 1]
    assert any("f1_macro drop" in n["title"] for n in notes), notes

    # the deploy job does not run after a red pipeline; run by hand, it is refused as well
    refused_build = story.cli(job, "build", "2", "-p", SPEC, where=runner)
    refused_deploy = story.cli(job, "deploy", "--env", "staging", "2", "-p", SPEC, where=runner)
    assert refused_build.returncode != 0 and "not blessed" in refused_build.stderr
    assert refused_deploy.returncode == 1 and "not blessed" in refused_deploy.stderr
    after = _counts(story)
    assert after == {**before, "models": before["models"] + 1}  # trained; not built, not deployed
    assert served_version(PORTS["staging"]) == 1 and served_version(PORTS["production"]) == 1
    story.abandon()
    story.done.append("chapter 2")


# ---------------------------------------------------------------------------------- chapter 3


def test_chapter3_a_good_change_is_built_and_deployed_to_staging(story):
    story.branch("more-trees")
    story.edit_spec(r"n_estimators: 10$", "n_estimators: 30")
    sha = story.commit("model: 30 trees instead of 10")
    job = story.pull_request(3, "more-trees", sha)

    _ok(story.cli(job, "run", "--report", "-p", SPEC))

    with story.store() as store:
        v3 = store.model(PIPELINE, 3)
        assert v3.blessed and store.run(v3.run_id).git_commit == sha
    status = story.status(sha)
    assert status["state"] == "success" and "model v3 blessed" in status["description"]
    check = story.check_run(sha)
    assert check["conclusion"] == "success" and "model v3 blessed" in check["output"]["title"]
    comment = story.comment(3)
    assert "model v3 blessed" in comment and "candidate vs production v1" in comment
    assert f"commit `{sha[:7]}`" in comment
    assert "🔴" not in _table_row(comment, "f1_macro") and "❌" not in comment

    # merged: main's workflow builds, infra-validates, pushes and deploys to staging
    assert story.merge("more-trees") == sha
    main = story.job(sha, "main", AUTHOR)
    _ok(story.cli(main, "build", "--push", "-p", SPEC))
    with story.store() as store:
        image = store.images_for(store.model(PIPELINE, 3).id)[0]
    assert image.infra_status == "passed" and image.infra_report["passed"] is True
    assert image.reference == f"{story.registry.host}/{IMAGE_REPOSITORY}:3"
    assert image.digest and image.digest == _registry_digest(story, "3")
    _ok(story.cli(main, "deploy", "--env", "staging", "-p", SPEC))

    assert served_version(PORTS["staging"]) == 3
    first, latest = story.deployments("staging")[0], story.deployments("staging")[-1]
    assert latest["sha"] == sha and latest["ref"] == sha
    # the commit status, the PR comment and the staging deployment agree: version 3, this commit
    assert latest["payload"]["model_version"] == 3 and latest["payload"]["pipeline"] == PIPELINE
    assert latest["payload"]["image"] == image.reference
    assert latest["payload"]["image_digest"] == image.digest
    assert story.deployment_states(latest) == ["in_progress", "success"]
    assert story.gh.deployment_statuses[latest["id"]][0]["environment_url"] == \
        f"http://127.0.0.1:{PORTS['staging']}"
    assert first["payload"]["model_version"] == 1 and story.deployment_states(first)[-1] == "inactive"
    story.notes["v3 sha"] = sha
    story.notes["v3 image"] = image
    story.done.append("chapter 3")


def _registry_digest(story: Story, tag: str) -> str | None:
    """The digest the registry itself holds for ``tag``."""
    request = urllib.request.Request(
        f"{story.registry.url}/v2/{IMAGE_REPOSITORY}/manifests/{tag}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.headers.get("Docker-Content-Digest")


# ---------------------------------------------------------------------------------- chapter 4


def test_chapter4_promotion_needs_a_reviewer_who_is_not_the_author(story):
    story.require("chapter 3")
    sha = story.notes["v3 sha"]
    production_before = story.deployments("production")
    # the week goes on: main moves past the model's commit before anyone promotes it
    (story.repo / "README.md").write_text(f"# {PIPELINE}\n\nThe wine classifier.\n")
    head = story.notes["main"] = story.commit("docs: say what this repository is")
    assert story.git("branch", "--show-current") == "main" and head != sha

    def promote(approver: str):
        return story.cli(story.job(head, "main", approver), "promote", "3", "--to", "production",
                         "--approved-by", approver, "-p", SPEC)

    # as promote.yml runs it: the job waits for the 'production' environment's review, which
    # the author approved herself
    reviewed = story.job(head, "main", AUTHOR)
    story.gh.add_approval(reviewed.run_id, AUTHOR, ("production",))
    by_review = story.cli(reviewed, "promote", "3", "--to", "production", "-p", SPEC)
    by_author = promote(AUTHOR)
    for refused in (by_review, by_author):
        assert refused.returncode == 1, refused.stderr
        assert f"{AUTHOR} wrote {sha[:12]}" in refused.stderr, refused.stderr
        assert "approver who is not the author" in refused.stderr, refused.stderr
    assert "review of this workflow run was approved only by" in by_review.stderr
    by_reader = promote(REVIEWER)
    assert by_reader.returncode == 1 and f"{REVIEWER} has read permission" in by_reader.stderr
    assert story.deployments("production") == production_before
    assert served_version(PORTS["production"]) == 1

    story.gh.set_permission(REVIEWER, "write")
    _ok(promote(REVIEWER))

    assert served_version(PORTS["production"]) == 3
    previous, latest = production_before[-1], story.deployments("production")[-1]
    assert latest["payload"]["model_version"] == 3
    assert latest["sha"] == sha  # the commit v3 came from, not the one main is at now
    assert latest["payload"]["image_digest"] == story.notes["v3 image"].digest
    assert latest["production_environment"] is True
    assert story.deployment_states(latest) == ["in_progress", "success"]
    success = story.gh.deployment_statuses[latest["id"]][0]
    assert success["environment_url"] == f"http://127.0.0.1:{PORTS['production']}"
    assert success["description"].startswith(f"{PIPELINE}:3 serves in production")
    assert previous["payload"]["model_version"] == 1
    assert story.deployment_states(previous) == ["in_progress", "success", "inactive"]
    with story.store() as store:
        v3 = store.model(PIPELINE, 3)
        assert [a.approver for a in store.approvals(v3.id, "production")] == [REVIEWER]
        assert store.current_deployment(PIPELINE, "production").model_version_id == v3.id
    story.done.append("chapter 4")


# ---------------------------------------------------------------------------------- chapter 5


def test_chapter5_a_prediction_leads_back_to_its_model_run_data_commit_and_image(story):
    story.require("chapter 4")
    from cd4ml.stages.data import file_hash

    request_id = f"complaint-{uuid.uuid4().hex[:12]}"
    body = json.dumps({"instances": [_row(story)]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORTS['production']}/predict", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Request-ID": request_id})
    with urllib.request.urlopen(request, timeout=10) as r:
        answer = json.loads(r.read())
        assert r.headers["X-Request-ID"] == request_id
    assert answer["model_version"] == 3 and answer["request_id"] == request_id

    # the environment keeps its prediction logs on the host: nothing to fetch or pipe, even
    # once the container that answered is gone
    job = story.job(story.notes["main"], "main", REVIEWER)
    deadline = time.monotonic() + 15
    while (found := story.cli(job, "lineage", "--request-id", request_id, "--json")).returncode:
        assert time.monotonic() < deadline, f"the prediction never reached the log: {found.stderr}"
        time.sleep(0.2)
    text = story.cli(job, "lineage", "--request-id", request_id)
    _ok(text)
    _ok(found)

    with story.store() as store:
        v3 = store.model(PIPELINE, 3)
        run = store.run(v3.run_id)
    image = story.notes["v3 image"]
    data_hash = file_hash(story.data_path)
    assert run.data_hash == data_hash and run.git_commit == story.notes["v3 sha"]
    doc = json.loads(found.stdout)
    assert doc["prediction"]["request_id"] == request_id
    assert doc["prediction"]["predictions"] == answer["predictions"]
    assert doc["sha256_matches"] is True
    lineage = doc["lineage"]
    assert lineage["ref"] == f"{PIPELINE}:3" and lineage["model"]["version"] == 3
    assert lineage["run"]["id"] == run.id
    assert lineage["run"]["data_hash"] == data_hash
    assert lineage["run"]["git_commit"] == story.notes["v3 sha"]
    assert [(i["reference"], i["digest"]) for i in lineage["images"]] == \
        [(image.reference, image.digest)]
    assert "production" in lineage["environments"]
    # and a person reading it sees the same
    for fact in (f"prediction {request_id}", f"{PIPELINE}:3", f"run {run.id}",
                 f"data {data_hash[:12]}", f"commit {story.notes['v3 sha'][:8]}",
                 f"{image.reference} {image.digest}"):
        assert fact in text.stdout, f"{fact!r} not in:\n{text.stdout}"
    story.done.append("chapter 5")


# ---------------------------------------------------------------------------------- chapter 6


def test_chapter6_rollback_of_production_under_load(story):
    story.require("chapter 4")
    port = PORTS["production"]
    v3_deployment = story.deployments("production")[-1]
    job = story.job(story.notes["main"], "main", SRE)

    with Load(port, _row(story), limit=120) as load:
        load.wait_for_requests(20)
        t0 = time.perf_counter()
        out = story.cli(job, "rollback", "--env", "production", "--reason",
                        "customer complaint about v3's answers", "-p", SPEC)
        load.wait_for_requests(20)
        back = load.serving_since(1, t0)
    print(f"rollback: {load.ok} predictions, {len(load.failed)} failed, p99 {load.p99_ms:.0f} ms,"
          f" version 1 serving {back - t0 if back else float('nan'):.2f} s after the command began")

    _ok(out)
    assert load.failed == [], load.failed[:5]
    # production is Swarm: v1 serves once its candidate service is ready (a task scheduled, its
    # model loaded), 14.7 s measured at load 3 with the nginx front; the bound is 20 s
    assert back is not None and back - t0 < 20, load.changes
    # a Swarm rolling update may answer from both versions while the old task drains; from the
    # last change on, only v1 answers, and that is within the 20 s too
    settled_at, settled_version = load.changes[-1]
    assert load.versions[0] == 3 and settled_version == 1, load.versions
    assert settled_at - t0 < 20, load.changes
    assert served_version(port) == 1
    latest = story.deployments("production")[-1]
    assert latest["id"] != v3_deployment["id"]
    assert latest["payload"]["model_version"] == 1 and "rollback" in latest["description"]
    assert latest["sha"] == story.notes["v1 sha"]  # GitHub shows production back at v1's commit
    assert story.deployment_states(latest) == ["in_progress", "success"]
    in_progress = story.gh.deployment_statuses[latest["id"]][-1]  # newest first
    assert in_progress["state"] == "in_progress" and in_progress["description"].startswith("rollback")
    assert story.deployment_states(v3_deployment)[-1] == "inactive"
    with story.store() as store:
        assert store.model(PIPELINE, 3).bad and not store.model(PIPELINE, 1).bad
        current = store.current_deployment(PIPELINE, "production")
        assert current.action == "rollback" and current.actor == SRE
    story.done.append("chapter 6")
