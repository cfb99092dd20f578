"""cd4ml's keeper: starts again the model containers of one environment that stopped.

Docker's restart policies restart a container whose process dies, but never one stopped through
the engine (``docker kill``, ``docker stop``): those count as an operator's stop. The local
target has no orchestrator to notice, so this loop, in a small container of its own
(cd4ml/release/targets/keeper.py), asks the engine every ``--every`` seconds for the
environment's exited model containers (found by cd4ml's labels, never anyone else's) and starts
them. Standard library only: it runs in whatever Python image the front runs in.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import time
import urllib.parse


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.socket_path)
        self.sock = s


def _call(path: str, method: str, url: str) -> tuple[int, bytes]:
    conn = _Unix(path)
    try:
        conn.request(method, url)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def keep(path: str, labels: list[str]) -> None:
    """Start every exited model container with ``labels`` once."""
    query = urllib.parse.quote(json.dumps({"label": ["cd4ml.role=model", *labels],
                                           "status": ["exited", "dead"]}))
    status, body = _call(path, "GET", f"/containers/json?all=1&filters={query}")
    for c in json.loads(body) if status == 200 else []:
        started, _ = _call(path, "POST", f"/containers/{c['Id']}/start")
        name = (c.get("Names") or ["?"])[0].lstrip("/")
        print(f"keeper: started {name} again ({c.get('Status')}): HTTP {started}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--socket", default="/var/run/docker.sock")
    p.add_argument("--label", action="append", default=[], help="key=value, repeated")
    p.add_argument("--every", type=float, default=1.0)
    a = p.parse_args(argv)
    while True:
        try:
            keep(a.socket, a.label)
        except (OSError, ValueError, http.client.HTTPException) as e:
            print(f"keeper: {e}", file=sys.stderr, flush=True)
        time.sleep(a.every)


if __name__ == "__main__":
    main()
