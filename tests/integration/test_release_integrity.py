"""Release integrity on the real Docker engine (issue 11): two repositories with a pipeline of
the same name on one engine never touch each other; images are used by identity, not by tag;
what serves is checked against the store; one policy decides every path into an environment.

Two projects, ``repo-a`` and ``repo-b``, both with pipeline ``wine``, each with its own store
(a copy of the deploy world's, with its real images) and its own ports (18601-18612).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from cd4ml.errors import DeployError
from cd4ml.release.deploy import DeployFailed, deploy, down, promote, rollback
from cd4ml.release.policy import Override
from cd4ml.release.render import resource_name
from cd4ml.release.state import history, status
from cd4ml.release.targets.local import LocalTarget
from tests.fixtures.deploy import ROOT, served_version

pytestmark = pytest.mark.docker

PORTS = {"repo-a": (18601, 18602), "repo-b": (18611, 18612)}


class Project:
    """One repository's spec (project name given) and store."""

    def __init__(self, world, tmp, name: str, **production):
        raw = yaml.safe_load(world.spec_path.read_text())
        staging, prod = PORTS[name]
        raw["project"] = name
        raw["environments"] = {
            "staging": {"target": "local", "port": staging, "health_timeout": 30},
            "production": {"target": "local", "port": prod, "requires_approval": True,
                           "health_timeout": 30, **production},
        }
        folder = tmp / name
        folder.mkdir(exist_ok=True)
        self.spec_path = folder / "wine.yaml"
        self.spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        db = folder / "store.db"
        shutil.copy(world.url.removeprefix("sqlite:///"), db)
        self.url = f"sqlite:///{db}"
        self.world = world
        self.name = name

    def spec(self):
        from cd4ml.spec import load_spec

        return load_spec(self.spec_path)

    def store(self):
        from cd4ml.store import Store

        return Store(self.url)

    def cli(self, *args: str, spec: bool = True) -> subprocess.CompletedProcess:
        import sys

        where = ["-p", str(self.spec_path)] if spec else []
        return subprocess.run([sys.executable, "-m", "cd4ml", *args, *where, "--store", self.url], capture_output=True, text=True,
                              env=self.world.env, timeout=300, check=False, cwd=ROOT)

    def teardown(self) -> None:
        spec = self.spec()
        for env in spec.environments:
            LocalTarget().teardown(spec, env)


@pytest.fixture
def projects(deploy_world, tmp_path):
    a, b = Project(deploy_world, tmp_path, "repo-a"), Project(deploy_world, tmp_path, "repo-b")
    for p in (a, b):
        p.teardown()
    yield a, b
    for p in (a, b):
        p.teardown()


def _containers(project: str) -> set[str]:
    return {c.name for c in LocalTarget().client.containers.list(
        all=True, filters={"label": [f"cd4ml.project={project}", "cd4ml.pipeline=wine"]})}


def test_two_projects_with_one_pipeline_name_never_touch_each_other(projects, deploy_world):
    a, b = projects
    sa, sb = a.spec(), b.spec()
    assert resource_name(sa, sa.environment("staging")) == "cd4ml-repo-a-wine-staging"
    with a.store() as store_a, b.store() as store_b:
        assert deploy(sa, store_a, "staging", 1).status == "healthy"
        assert deploy(sb, store_b, "staging", 2).status == "healthy"
        a_staging, b_staging = PORTS["repo-a"][0], PORTS["repo-b"][0]
        assert (served_version(a_staging), served_version(b_staging)) == (1, 2)
        before_b = _containers("repo-b")
        assert before_b and not before_b & _containers("repo-a")

        # someone re-points A's tag of v1 at v2's image: A runs what it recorded, by ID
        v2_image = store_a.images_for(deploy_world.versions[2].id)[0].image_id
        v1_ref = store_a.images_for(deploy_world.versions[1].id)[0].reference
        v1_id = store_a.images_for(deploy_world.versions[1].id)[0].image_id
        client = LocalTarget().client
        client.images.get(v2_image).tag(*v1_ref.rsplit(":", 1))
        try:
            assert deploy(sa, store_a, "staging", 2).status == "healthy"
            back = rollback(sa, store_a, "staging", reason="v2 misbehaves")
            assert back.version == 1 and served_version(a_staging) == 1
            assert status(sa, store_a, "staging")[0].identity is None
        finally:
            client.images.get(v1_id).tag(*v1_ref.rsplit(":", 1))
        # B never noticed: same containers, same model
        assert _containers("repo-b") == before_b and served_version(b_staging) == 2

        # B takes its staging down: A's keeps serving; B's status shows nothing deployed
        assert down(sb, store_b, "staging", reason="retired").status == "down"
        assert _containers("repo-b") == set() and served_version(a_staging) == 1
        assert served_version(b_staging) is None
        (row,) = [r for r in status(sb, store_b) if r.environment == "staging"]
        assert row.version is None and row.ok
        assert [(h.action, h.status) for h in history(sb, store_b, "staging")][:2] == [
            ("down", "down"), ("deploy", "replaced")]
    out = b.cli("status")
    assert out.returncode == 0 and "nothing deployed" in out.stdout, out.stdout + out.stderr

    # a port another project holds is a clear error before anything is stopped
    raw = yaml.safe_load(b.spec_path.read_text())
    raw["environments"]["staging"]["port"] = a_staging
    b.spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with b.store() as store_b, pytest.raises(DeployError) as taken:
        deploy(b.spec(), store_b, "staging", 2)
    assert f"127.0.0.1:{a_staging} is in use by container cd4ml-repo-a-wine-staging-front " \
           "(project repo-a)" in str(taken.value)
    assert served_version(a_staging) == 1 and _containers("repo-b") == set()


def test_identity_mismatch_fails_the_release_and_shows_in_status(projects, deploy_world):
    a, _ = projects
    spec = a.spec()
    port = PORTS["repo-a"][0]
    with a.store() as store:
        v1, v2 = deploy_world.versions[1], deploy_world.versions[2]
        assert deploy(spec, store, "staging", 1).status == "healthy"
        # a record that claims v2's image is v1's: the servers say otherwise
        real = store.images_for(v2.id)[0]
        store.record_image(v1.id, real.image_id, "cd4ml-test/deploy-wine:1-forged",
                           real.size_bytes, "passed")
        with pytest.raises(DeployFailed, match="do not serve the recorded model") as wrong:
            deploy(spec, store, "staging", 1)
        assert wrong.value.result.status == "rolled_back"
        assert "answers wine:2" in str(wrong.value) and "records wine:1" in str(wrong.value)
        assert served_version(port) == 1

        # the store says v2 serves, the server says v1: status shows it and exits 1
        current = store.current_deployment(spec.name, "staging")
        from cd4ml.store import deployments

        with store.tx() as conn:
            conn.execute(deployments.update().where(deployments.c.id == current.id)
                         .values(model_version_id=v2.id))
        (row,) = [r for r in status(spec, store) if r.environment == "staging"]
        assert row.healthy and row.identity and not row.ok
    out = a.cli("status")
    assert out.returncode == 1 and "WRONG MODEL" in out.stdout, out.stdout + out.stderr
    as_json = json.loads(a.cli("status", "--json").stdout)
    assert [r["ok"] for r in as_json] == [False, True]

    # an environment that should serve and does not: exit 1
    with a.store() as store, store.tx() as conn:
        conn.execute(deployments.update().where(deployments.c.id == current.id)
                     .values(model_version_id=v1.id))
    assert a.cli("status").returncode == 0
    LocalTarget().teardown(spec, spec.environment("staging"))
    out = a.cli("status")
    assert out.returncode == 1 and "DOWN" in out.stdout


def test_one_policy_on_every_path_with_an_audited_override(projects, deploy_world):
    a, _ = projects
    spec = a.spec()
    author = subprocess.run(["git", "log", "-1", "--format=%an"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    with a.store() as store:
        # straight to production: refused, whatever the path
        with pytest.raises(DeployError, match=r"wine:2 is not running in staging \(nothing is\)"):
            deploy(spec, store, "production", 2, approved_by="alice")
        assert deploy(spec, store, "staging", 1).status == "healthy"
        with pytest.raises(DeployError, match="production requires an approval of wine:1"):
            deploy(spec, store, "production", 1)
        # the commit's author approving their own version: refused locally, without a token
        with pytest.raises(DeployError, match=re.escape(f"{author} wrote")):
            promote(spec, store, 1, "production", approved_by=author)
        assert store.approvals(deploy_world.versions[1].id) == []
        # a version marked bad: refused on the way in too
        store.set_model_flags(deploy_world.versions[2].id, bad=True)

    # break glass: recorded with who and why, shown by deploy, status and history
    out = a.cli("deploy", "--env", "production", "2", "--override", "--reason", "hotfix for "
                "incident 42", "--by", "rita")
    assert out.returncode == 0, out.stderr
    assert "OVERRIDDEN by rita: hotfix for incident 42" in out.stdout
    assert "not running in staging" in out.stdout and "marked bad" in out.stdout
    assert served_version(PORTS["repo-a"][1]) == 2
    assert "OVERRIDDEN by rita" in a.cli("status").stdout
    table = a.cli("history", "--env", "production").stdout
    assert "OVERRIDDEN by rita: hotfix for incident 42" in table
    lineage = a.cli("lineage", "wine:2").stdout
    assert "OVERRIDDEN by rita" in lineage
    with a.store() as store:
        dep = store.current_deployment(spec.name, "production")
        assert dep.details["override"]["by"] == "rita"
        assert {c["rule"] for c in dep.details["policy"] if not c["passed"]} == {
            "order", "not_bad", "approval"}

        # a proper promotion: approved by someone who is not the author, shown as such
        assert promote(spec, store, 1, "production", approved_by="alice").status == "healthy"
        (h, *_) = history(spec, store, "production")
        assert h.approvers == ("alice (cli)",) and h.override is None
    assert "alice (cli)" in a.cli("history", "--env", "production").stdout
    assert "approved for production by alice (cli)" in a.cli("show", "wine:1", spec=False).stdout

    # an environment that forbids overrides refuses them before anything
    strict = Project(deploy_world, a.spec_path.parent.parent, "repo-a", allow_override=False)
    with strict.store() as store, pytest.raises(DeployError, match="allow_override is false"):
        deploy(strict.spec(), store, "production", 2, override=Override("rita", "again"))
