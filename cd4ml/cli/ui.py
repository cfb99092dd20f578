"""``cd4ml ui [--port 8765] [--host 127.0.0.1] [--store URL]``: the read-only web view."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cd4ml.cli.common import add_store, open_store, port


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_store(p)
    p.add_argument("--port", type=port, default=8765, help="port (default: %(default)s; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only); any other "
                        "address needs the token printed once at start")
    p.add_argument("--log", action="append", type=Path, metavar="FILE",
                   help="prediction log (JSON lines) to look predictions up in; repeatable "
                        "(default: as 'cd4ml lineage --request-id')")


def run(args: argparse.Namespace) -> int:
    from cd4ml.ui.server import UiConfig, start

    config = UiConfig(host=args.host, port=args.port, log_paths=tuple(args.log or ()))
    with open_store(args) as store:
        server, started = start(config, store)
        print(f"cd4ml ui: serving {started.url}", flush=True)
        if started.token:
            print(f"cd4ml ui: bound to {args.host}: open the URL above once (it sets a cookie), "
                  "or send 'Authorization: Bearer <token>'; the token is not shown again",
                  file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("cd4ml ui: stopped", file=sys.stderr)
        finally:
            server.server_close()
    return 0
