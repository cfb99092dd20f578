"""Release integrity on the real Docker engine (issue 11): two repositories with a pipeline of
the same name on one engine never touch each other; images are used by identity, not by tag;
what serves is checked against the store; one policy decides every path into an environment.

Two projects, ``repo-a`` and ``repo-b``, both with pipeline ``wine``, each with its own store
(a copy of the deploy world's, with its real images) and its own ports (18601-18612 on the local
target, 19160 and 19170 on the single-node Swarm).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from cd4ml.errors import DeployError
from cd4ml.paths import prediction_log_dir
from cd4ml.release.deploy import DeployFailed, deploy, down, promote, rollback
from cd4ml.release.policy import Override
from cd4ml.release.render import resource_name
from cd4ml.release.state import history, status
from cd4ml.release.targets import get_target
from cd4ml.release.targets.local import LocalTarget
from tests.fixtures.deploy import ROOT, served_version

pytestmark = pytest.mark.docker

PORTS = {"repo-a": (18601, 18602), "repo-b": (18611, 18612)}
SWARM_PORTS = {"repo-a": 19160, "repo-b": 19170}


class Project:
    """One repository's spec (project name given) and store. On ``swarm``, staging is a Swarm
    stack (host-mode port; this engine's Swarm cannot health-check tasks) and the only
    environment."""

    def __init__(self, world, tmp, name: str, target: str = "local", **production):
        raw = yaml.safe_load(world.spec_path.read_text())
        staging, prod = PORTS[name]
        raw["project"] = name
        raw["environments"] = {
            "staging": {"target": "local", "port": staging, "health_timeout": 30},
            "production": {"target": "local", "port": prod, "requires_approval": True,
                           "health_timeout": 30, **production},
        }
        if target == "swarm":
            raw["environments"] = {"staging": {"target": "swarm", "port": SWARM_PORTS[name],
                                               "healthcheck": False, "replicas": 1,
                                               "health_timeout": 30}}
        folder = tmp / name
        folder.mkdir(exist_ok=True)
        self.spec_path = folder / "wine.yaml"
        self.spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        db = folder / "store.db"
        shutil.copy(world.url.removeprefix("sqlite:///"), db)
        self.url = f"sqlite:///{db}"
        self.world = world
        self.name = name
        self.target = target

    def spec(self):
        from cd4ml.spec import load_spec

        return load_spec(self.spec_path)

    def store(self):
        from cd4ml.store import Store

        return Store(self.url)

    @property
    def port(self) -> int:
        return self.spec().environment("staging").port

    def cli(self, *args: str, spec: bool = True) -> subprocess.CompletedProcess:
        import sys

        where = ["-p", str(self.spec_path)] if spec else []
        return subprocess.run([sys.executable, "-m", "cd4ml", *args, *where, "--store", self.url], capture_output=True, text=True,
                              env=self.world.env, timeout=300, check=False, cwd=ROOT)

    def teardown(self) -> None:
        spec = self.spec()
        for env in spec.environments:
            get_target(env).teardown(spec, env)


@pytest.fixture
def projects(request, deploy_world, tmp_path):
    target = getattr(request, "param", "local")
    if target == "swarm":
        request.getfixturevalue("swarm")
    a, b = (Project(deploy_world, tmp_path, name, target) for name in ("repo-a", "repo-b"))
    for p in (a, b):
        p.teardown()
    yield a, b
    for p in (a, b):
        p.teardown()


def _footprint(project: str) -> set[tuple]:
    """What the project runs on the engine, each thing with what would change if it were touched:
    its running containers (by the project's label); with Swarm, the stack's services with their
    spec, the tasks they mean to run, and the stack's networks and configs. (A Swarm
    task's container, and an exited one, is removed by Swarm in its own time: not compared.)"""
    client = LocalTarget().client
    found: set[tuple] = {(c.name, c.id) for c in client.containers.list(
        filters={"label": [f"cd4ml.project={project}", "cd4ml.pipeline=wine"]})
        if "com.docker.swarm.task.id" not in c.labels}
    found |= {(n.name, n.id) for n in client.networks.list(
        filters={"label": f"cd4ml.project={project}"})}
    if (client.info().get("Swarm") or {}).get("LocalNodeState") == "active":
        stack = {"label": f"com.docker.stack.namespace=cd4ml-{project}-wine-staging"}
        for s in client.services.list(filters=stack):
            # its spec, not its version: Swarm bumps that when an update's status changes
            found |= {(s.name, s.id, json.dumps(s.attrs["Spec"], sort_keys=True))}
            found |= {(s.name, t["ID"]) for t in s.tasks(filters={"desired-state": "running"})}
        found |= {(n.name, n.id) for n in client.networks.list(filters=stack)}
        found |= {(c.name, c.id) for c in client.configs.list(filters=stack)}
    return found


@pytest.mark.parametrize("projects", ["local", "swarm"], indirect=True)
def test_two_projects_with_one_pipeline_name_never_touch_each_other(projects, deploy_world):
    a, b = projects
    sa, sb = a.spec(), b.spec()
    assert resource_name(sa, sa.environment("staging")) == "cd4ml-repo-a-wine-staging"
    logs = {p.name: prediction_log_dir(p.name, "wine", "staging") for p in (a, b)}
    with a.store() as store_a, b.store() as store_b:
        assert deploy(sa, store_a, "staging", 1).status == "healthy"
        assert deploy(sb, store_b, "staging", 2).status == "healthy"
        assert (served_version(a.port), served_version(b.port)) == (1, 2)
        assert logs["repo-a"] != logs["repo-b"] and all(d.is_dir() for d in logs.values())

        if b.target == "swarm":
            # forced: B's record says v3 is v1's image; the servers answer v1, the store says v3
            # (the local target's case: test_identity_mismatch_fails_the_release_and_shows_in_status)
            v3, v1 = deploy_world.versions[3], store_b.images_for(deploy_world.versions[1].id)[0]
            store_b.record_image(v3.id, v1.image_id, "cd4ml-test/deploy-wine:3-forged",
                                 v1.size_bytes, "passed")
            store_b.set_model_flags(v3.id, bad=False)  # whatever an earlier test made of it
            with pytest.raises(DeployFailed, match="do not serve the recorded model") as wrong:
                deploy(sb, store_b, "staging", 3)
            assert wrong.value.result.status == "rolled_back"
            assert "answers wine:1" in str(wrong.value) and "records wine:3" in str(wrong.value)
            assert served_version(b.port) == 2 and status(sb, store_b)[0].ok

        before_b = _footprint("repo-b")
        assert before_b and not before_b & _footprint("repo-a")

        # someone re-points A's tag of v1 at v2's image: A runs what it recorded, by ID
        v2_image = store_a.images_for(deploy_world.versions[2].id)[0].image_id
        v1_ref = store_a.images_for(deploy_world.versions[1].id)[0].reference
        v1_id = store_a.images_for(deploy_world.versions[1].id)[0].image_id
        client = LocalTarget().client
        client.images.get(v2_image).tag(*v1_ref.rsplit(":", 1))
        try:
            assert deploy(sa, store_a, "staging", 2).status == "healthy"
            back = rollback(sa, store_a, "staging", reason="v2 misbehaves")
            assert back.version == 1 and served_version(a.port) == 1
            assert status(sa, store_a, "staging")[0].identity is None
        finally:
            client.images.get(v1_id).tag(*v1_ref.rsplit(":", 1))
        # B never noticed: the same containers, services and networks, the same model
        assert _footprint("repo-b") ^ before_b == set() and served_version(b.port) == 2

        # a port another project holds is a clear error before anything is stopped: B's own
        # servers and A's keep serving
        b_port, moved = b.port, yaml.safe_load(b.spec_path.read_text())
        moved["environments"]["staging"]["port"] = a.port
        with pytest.raises(DeployError) as taken:
            deploy(_spec_with(b, moved), store_b, "staging", 2)
        assert re.search(rf"{a.port} is in use by container cd4ml-repo-a-wine-staging[-_]front\S* "
                         r"\(project repo-a\); nothing was changed", str(taken.value)), taken.value
        assert _footprint("repo-b") ^ before_b == set()
        assert (served_version(a.port), served_version(b_port)) == (1, 2)

        # B takes its staging down: A's keeps serving; B's status shows nothing deployed
        before_a = _footprint("repo-a")
        assert down(sb, store_b, "staging", reason="retired").status == "down"
        assert _footprint("repo-b") == set() and served_version(b_port) is None
        assert _footprint("repo-a") ^ before_a == set() and served_version(a.port) == 1
        assert all(d.is_dir() for d in logs.values())  # the evidence outlives the servers
        # and every image either project recorded is still on the engine, under its own tag
        for store in (store_a, store_b):
            for n in (1, 2):
                image = store.images_for(deploy_world.versions[n].id)[0]
                assert client.images.get(image.reference).id == image.image_id
        (row,) = [r for r in status(sb, store_b) if r.environment == "staging"]
        assert row.version is None and row.ok
        # the refused move is on record, and changed nothing
        assert [(h.action, h.status) for h in history(sb, store_b, "staging")][:2] == [
            ("down", "down"), ("deploy", "failed")]
    out = b.cli("status")
    assert out.returncode == 0 and "nothing deployed" in out.stdout, out.stdout + out.stderr


def _spec_with(project: Project, raw: dict):
    """``project``'s spec as ``raw`` says (written beside its own, which stays as it was)."""
    from cd4ml.spec import load_spec

    path = project.spec_path.with_name("moved.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_spec(path)


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
