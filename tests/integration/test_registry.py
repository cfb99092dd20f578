"""Pushing to a real registry that wants credentials (docker-registry with htpasswd auth).

A tiny one-file image stands in for a model image: what is under test is the login path, which
is the same for any image, and a small image keeps it fast.
"""

from __future__ import annotations

import base64
import io
import secrets
import tarfile
import urllib.request

import pytest

from cd4ml.errors import BuildError
from cd4ml.release import registry as reg

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def tiny(docker_client, auth_registry):
    data = secrets.token_bytes(64)  # a new blob each run: the push really uploads
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("payload.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    ref = f"{auth_registry.host}/cd4ml-test/tiny:1"
    repo, tag = reg.split_reference(ref)
    docker_client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=tag)
    yield ref
    docker_client.images.remove(ref, force=True)


def test_push_with_the_right_login_records_the_registrys_digest(docker_client, auth_registry, tiny):
    creds = reg.Credentials(auth_registry.username, auth_registry.password)
    digest = reg.push(docker_client, tiny, creds)
    assert digest.startswith("sha256:")
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    req = urllib.request.Request(f"{auth_registry.url}/v2/cd4ml-test/tiny/manifests/1", headers={
        "Accept": reg.MANIFEST_TYPES[0], "Authorization": f"Basic {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest
    assert reg.manifest_digest(tiny, creds) == digest
    assert reg.manifest_digest(tiny.replace(":1", ":no-such-tag"), creds) is None


def test_a_wrong_or_missing_login_is_refused_naming_the_fix_not_the_password(docker_client,
                                                                             auth_registry, tiny):
    wrong = reg.Credentials(auth_registry.username, "not-the-password-" + secrets.token_hex(4))
    with pytest.raises(BuildError) as e:
        reg.push(docker_client, tiny, wrong)
    assert "CD4ML_REGISTRY_USER" in str(e.value) and wrong.password not in str(e.value)
    with pytest.raises(BuildError, match="CD4ML_REGISTRY_USER"):
        reg.push(docker_client, tiny, None)
    with pytest.raises(BuildError, match="HTTP 401"):
        reg.manifest_digest(tiny)
