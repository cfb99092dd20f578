"""cd4ml's traffic front: nginx in front of an environment's model servers (local and swarm).

Why nginx: it is in Debian and has an official image, and its open-source build has both
weighted upstreams and request mirroring (``mirror``), which canary and shadow releases need
(HAProxy's open-source build mirrors only through an external agent).

What the front promises, and how nginx keeps it:

* The environment's port is held by the front for good; a switch is a new configuration and a
  graceful reload (``nginx -s reload`` through ``docker exec``): new workers route by the new
  configuration at once, old workers finish the requests they hold and exit. When they have
  exited the old servers have drained (:func:`drained`), and only then are they stopped.
  nginx starts the new workers before it tells the old ones to stop taking connections, so for
  that moment (~100 ms) both versions answer and a client may see them alternate; a request
  sent after :func:`install` returned goes by the new routes only.
  Clients get no keep-alive: an old worker closes its idle client connections at a reload,
  and a request sent on one at that instant would be lost.
* A request goes to another server only when the first refused or reset it before it was sent
  (``proxy_next_upstream error``: nginx never re-sends a POST it has sent), never a second
  full copy. Upstream keep-alive connections idle for less than the model server's idle
  timeout, so the server never closes one nginx is about to reuse.
* Request ids: the client's ``X-Request-ID`` is passed on, or nginx makes one
  (``$request_id``); a mirrored copy carries the same id.
* Bodies over the model server's limit are answered 413 by the front (before ``100
  Continue``); smaller ones are held in memory up to 64 KiB and in a temporary file beyond,
  so memory does not grow with the body.
* No admin interface: the routing state is the first line of the configuration file, read
  through the Docker API (:func:`routes_of`); the public port serves model requests only.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cd4ml.errors import DeployError

if TYPE_CHECKING:
    import docker

FRONT_PORT = 8080
FRONT_UID = 65534
#: everything the front writes (configuration, pid, temporary bodies), owned by FRONT_UID
FRONT_DIR = "/tmp/cd4ml-front"
FRONT_CONF = f"{FRONT_DIR}/nginx.conf"
#: the model server's request body limit (cd4ml.serve: max_body)
MAX_BODY = 16 << 20
#: seconds an upstream keep-alive connection may idle: under the model server's idle timeout
UPSTREAM_KEEPALIVE = 4
#: seconds old workers get to finish their requests after a reload
DRAIN_SECONDS = 30
#: the front container's memory limit
FRONT_MEMORY = 256 << 20
#: the image users who can pull may name instead of cd4ml's own (e.g. ``nginx:1.27``)
IMAGE_ENV = "CD4ML_FRONT_IMAGE"
REPOSITORY = "cd4ml-front"
#: Docker's embedded DNS server, inside every container on a user-defined or overlay network
SWARM_RESOLVER = "127.0.0.11"
OWN_LABEL = "org.cd4ml.front"
_HEADER = "# cd4ml-front "
_WORKERS = ("for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); "
            'case "$c" in "nginx: worker process"*) echo "${p#/proc/} $c";; esac; done')


@dataclass(frozen=True)
class Routes:
    """Where the front sends requests: ``weight`` % of them to ``candidate``, the rest to
    ``stable``; with ``shadow`` all to stable and a copy of each to candidate."""

    stable: str  # host:port
    candidate: str | None = None
    weight: int = 0
    shadow: bool = False
    generation: int = 0

    @property
    def live(self) -> list[tuple[str, int]]:
        if self.candidate is None or self.shadow or self.weight <= 0:
            return [(self.stable, 1)]
        if self.weight >= 100:
            return [(self.candidate, 1)]
        return [(self.stable, 100 - self.weight), (self.candidate, self.weight)]


def check_split(weight: int, shadow: bool) -> None:
    if not 0 <= weight <= 100:
        raise DeployError(f"split weight {weight} is not a percentage; give 0 to 100")
    if shadow and weight:
        raise DeployError(f"a shadow gets a copy of the traffic, not {weight}% of it; give weight 0")


def nginx_conf(routes: Routes, *, resolver: str | None = None, port: int = FRONT_PORT) -> str:
    """The front's whole configuration. With ``resolver`` (Swarm's DNS), ``routes`` name
    services (``host:port``) that nginx resolves every second; else containers by name."""
    import jinja2

    from cd4ml.release.render import templates_root

    def host(hostport: str | None) -> str | None:
        return hostport.rsplit(":", 1)[0] if hostport else None

    path = templates_root() / "infra" / "front" / "nginx.conf.j2"
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    return env.from_string(path.read_text(encoding="utf-8")).render(
        state=json.dumps(asdict(routes), sort_keys=True), dir=FRONT_DIR, drain=DRAIN_SECONDS,
        max_body=MAX_BODY, upstream_keepalive=UPSTREAM_KEEPALIVE, port=port, resolver=resolver,
        live=routes.live, candidate=routes.candidate, weight=routes.weight, shadow=routes.shadow,
        stable_host=host(routes.stable), candidate_host=host(routes.candidate),
        live_host=host(routes.live[0][0]), upstream_port=routes.stable.rsplit(":", 1)[1])


def parse_routes(text: str) -> Routes | None:
    first = text.split("\n", 1)[0]
    if not first.startswith(_HEADER):
        return None
    try:
        return Routes(**json.loads(first[len(_HEADER):]))
    except (ValueError, TypeError):
        return None


# ----------------------------------------------------------------------------- the image

DOCKERFILE = """\
FROM {base}
# Debian's nginx, with the distribution's security updates (a base made by debootstrap lists
# only the main archive): the front faces every client
RUN . /etc/os-release \\
 && (grep -rqs security /etc/apt/sources.list /etc/apt/sources.list.d/ || echo \\
     "deb http://deb.debian.org/debian-security $VERSION_CODENAME-security main" \\
     >> /etc/apt/sources.list) \\
 && apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx \\
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \\
 && mkdir -p {dir} && chown {uid}:{uid} {dir}
LABEL {label}="{key}" org.opencontainers.image.title="cd4ml-front" \\
      org.opencontainers.image.description="cd4ml's traffic front (nginx) built from {base}"
USER {uid}
"""


def own_image(base: str) -> tuple[str, str]:
    """cd4ml's front image for ``base``: its reference ``cd4ml-front:<hash of the Dockerfile>``
    and its Dockerfile."""
    text = DOCKERFILE.format(base=base, dir=FRONT_DIR, uid=FRONT_UID, label=OWN_LABEL, key="{key}")
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{REPOSITORY}:{key}", text.replace("{key}", key)


def default_image(base: str) -> str:
    """The front image a deploy uses unless a front already runs (no engine asked)."""
    import os

    return os.environ.get(IMAGE_ENV) or own_image(base)[0]


def front_image(client: docker.DockerClient, base: str) -> str:
    """The image the front runs in: ``$CD4ML_FRONT_IMAGE`` when set (the official ``nginx``
    image, for those who can pull it), else ``cd4ml-front:<hash>`` built here from the base
    image with Debian's nginx (once; the hash names the Dockerfile and the base), labelled as
    cd4ml's so that an image of that name cd4ml did not build is never taken for it."""
    import os

    from docker.errors import ImageNotFound

    from cd4ml.integrations.docker import translating

    if os.environ.get(IMAGE_ENV):
        return os.environ[IMAGE_ENV]
    ref, text = own_image(base)
    key = ref.rsplit(":", 1)[1]
    try:
        found = client.images.get(ref)
    except ImageNotFound:
        found = None
    if found is not None:
        if (found.labels or {}).get(OWN_LABEL) != key:
            raise DeployError(f"image {ref} exists but was not built by cd4ml (no {OWN_LABEL}="
                              f"{key} label); nothing was changed: remove or rename it, or set "
                              f"{IMAGE_ENV} to the nginx image to use")
        return ref
    try:
        client.images.get(base)
    except ImageNotFound:
        raise DeployError(f"base image {base!r} is not present, so cd4ml cannot build its front "
                          f"image; run scripts/docker-up.sh, or set {IMAGE_ENV} (e.g. nginx:1.27)"
                          ) from None
    with translating(DeployError, f"build {ref}", f"check that Debian's archive is reachable "
                     f"from a host-network build, or set {IMAGE_ENV} (e.g. nginx:1.27)"):
        # host network: apt reaches the archive the way this machine does (proxies included)
        client.images.build(fileobj=io.BytesIO(text.encode()), tag=ref, rm=True, forcerm=True,
                            pull=False, network_mode="host")
    return ref


# ----------------------------------------------------------------------------- a running front

def tar(files: dict[str, tuple[str, int]]) -> bytes:
    """A tar of ``files`` (path -> (text, mode)) and their folders, owned by the front's user."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in sorted({p.rsplit("/", 1)[0] for p in files if "/" in p}):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, FRONT_UID, FRONT_UID
            t.addfile(info)
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            info.uid = info.gid = FRONT_UID
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def routes_of(ctr: Any) -> Routes | None:
    """What a running front routes to, from its configuration file (None: not a cd4ml front,
    or not running)."""
    from docker.errors import APIError, NotFound

    try:
        stream, _ = ctr.get_archive(FRONT_CONF)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as t:
            member = t.extractfile(t.getmembers()[0])
            return parse_routes(member.read().decode()) if member else None
    except (APIError, NotFound, tarfile.TarError, IndexError):
        return None


def workers(ctr: Any) -> dict[int, bool]:
    """The front's nginx worker processes: pid -> shutting down (an old worker draining)."""
    res = ctr.exec_run(["sh", "-c", _WORKERS])
    out: dict[int, bool] = {}
    for line in res.output.decode(errors="replace").splitlines():
        pid, _, cmd = line.partition(" ")
        if pid.isdigit():
            out[int(pid)] = "shutting down" in cmd
    return out


def install(ctr: Any, routes: Routes, *, resolver: str | None = None, timeout: float = 15) -> None:
    """Give a running front ``routes``: write the configuration, have nginx test it, reload, and
    return once only new workers take requests (old ones may still be finishing theirs)."""
    from cd4ml.release.targets import wait_for

    before = set(workers(ctr))
    text = nginx_conf(routes, resolver=resolver)
    ctr.put_archive("/", tar({f"{FRONT_CONF.lstrip('/')}.new": (text, 0o644)}))
    script = 'nginx -t -q -c "$1.new" && mv "$1.new" "$1" && nginx -s reload -c "$1"'
    res = ctr.exec_run(["sh", "-c", script, "sh", FRONT_CONF])
    if res.exit_code != 0:
        raise DeployError(f"{ctr.name}: nginx refused the new routes ({_last(res.output)}); "
                          "nothing was changed: check that the servers' names resolve on its network")
    def applied() -> bool:
        # new workers run, and every old one has stopped taking connections (it says so in
        # its process title once it handled the master's SIGQUIT)
        now = workers(ctr)
        return any(pid not in before for pid in now) and all(
            closing for pid, closing in now.items() if pid in before)

    if not wait_for(applied, timeout=timeout, interval=0.05):
        raise DeployError(f"{ctr.name}: nginx did not start workers with the new routes within "
                          f"{timeout:g} s; see 'docker logs {ctr.name}'")


def drained(ctr: Any, timeout: float = DRAIN_SECONDS + 5) -> bool:
    """Wait until no old worker is left: every request the previous routes took has finished."""
    from cd4ml.release.targets import wait_for

    return bool(wait_for(lambda: not any(workers(ctr).values()), timeout=timeout, interval=0.1))


def _last(output: bytes) -> str:
    lines = [ln.strip() for ln in output.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
