"""cd4ml's traffic front: a small HTTP reverse proxy in front of an environment's model servers.

It holds the environment's published port for good, so that a deploy, a failed deploy and a
rollback change where requests go without a client ever seeing a refused or broken connection:

* It forwards whole requests, not TCP streams: a client's keep-alive connection is not pinned
  to the server that answered its first request, so a switch takes effect at the next request.
* It routes only to upstreams that answer ``GET /ready`` with 200 (it probes them itself), and
  an upstream that stops answering is dropped without waiting for DNS or the deployer.
* A request whose upstream fails before answering (refused, reset, closed) is sent again to
  another ready upstream; predictions are pure functions of their input, so this is safe.
  When no upstream is ready the request waits (``--hold`` seconds) instead of failing.
* Upstreams that leave the list but still answer keep serving while the list has none ready
  (a Swarm task stopped before its replacement is ready).

Upstreams come from a JSON file the deployer rewrites (``--upstream-file``, the local target's
blue/green switch: ``{"generation": N, "upstreams": ["host:port", ...]}``), or from DNS
(``--dns name:port``: every address of a Swarm service with ``endpoint_mode: dnsrr``).
``GET /.cd4ml/front`` answers the front's own state (generation applied, ready and active
upstreams, requests in flight per upstream), which is how the deployer knows that a switch took
effect and that the old colour has drained.

Standard library only, one file: it runs as ``python proxy.py`` in any image with Python 3.8+.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time

STATE_PATH = "/.cd4ml/front"
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
       "upgrade", "content-length"}
MAX_HEAD = 65536


class UpstreamError(Exception):
    """The upstream failed before a complete response: the request may be sent elsewhere."""


class Front:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.candidates: list[str] = []
        self.generation = 0  # generation of the upstream list read last
        self.applied = 0  # generation the active set comes from
        self.ready: set[str] = set()
        self.active: list[str] = []
        self.inflight: dict[str, int] = {}
        self.served: dict[str, int] = {}
        self.rr = 0
        self.mtime: int | None = None

    # ------------------------------------------------------------------ upstream discovery

    def read_file(self) -> bool:
        try:
            st = os.stat(self.args.upstream_file)
        except OSError:
            return False
        if st.st_mtime_ns == self.mtime:
            return False
        try:
            with open(self.args.upstream_file) as f:
                doc = json.load(f)
            ups = [str(u) for u in doc["upstreams"]]
            gen = int(doc.get("generation", 0))
        except (OSError, ValueError, KeyError, TypeError):
            return False  # half-written: the next look sees the whole file
        self.mtime = st.st_mtime_ns
        self.candidates, self.generation = ups, gen
        return True

    async def resolve(self) -> None:
        host, _, port = self.args.dns.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                           family=socket.AF_INET)
        except (OSError, UnicodeError):
            infos = []  # no task yet, or DNS restarting: keep serving from what is known
        # AF_INET: each address is (host text, port number)
        self.candidates = sorted({f"{i[4][0]!s}:{int(i[4][1])}" for i in infos})

    async def probe(self, upstream: str) -> bool:
        host, _, port = upstream.rpartition(":")
        try:
            status, _, _ = await asyncio.wait_for(
                self.exchange(host, int(port), b"GET /ready HTTP/1.1\r\nHost: %s\r\n"
                              b"Connection: close\r\n\r\n" % upstream.encode(), head_only=False),
                timeout=self.args.probe_timeout)
            return status == 200
        except (UpstreamError, asyncio.TimeoutError, OSError, ValueError):  # noqa: UP041 (3.8+)
            return False

    async def refresh(self) -> None:
        if self.args.upstream_file:
            self.read_file()
        else:
            await self.resolve()
        results = await asyncio.gather(*(self.probe(u) for u in self.candidates))
        self.ready = {u for u, ok in zip(self.candidates, results) if ok} | {
            u for u in self.ready if u not in self.candidates and u in self.active}
        chosen = [u for u in self.candidates if u in self.ready]
        if chosen:
            self.active, self.applied = chosen, self.generation
        else:
            # nothing listed is ready yet: keep the previous upstreams while they still answer
            self.active = [u for u in self.active if u in self.ready]
        for gone in [u for u in list(self.ready) if u not in self.candidates]:
            if not await self.probe(gone):
                self.ready.discard(gone)
                if gone in self.active:
                    self.active.remove(gone)

    async def watch(self) -> None:
        last = 0.0
        while True:
            if self.args.upstream_file and self.read_file():
                last = 0.0  # a switch: act on it now, not at the next interval
            if time.monotonic() - last >= self.args.interval:
                last = time.monotonic()
                await self.refresh()
            await asyncio.sleep(0.05)

    def pick(self) -> str | None:
        if not self.active:
            return None
        self.rr = (self.rr + 1) % len(self.active)
        return self.active[self.rr]

    def drop(self, upstream: str) -> None:
        self.ready.discard(upstream)
        if upstream in self.active:
            self.active.remove(upstream)

    def state(self) -> dict:
        return {"generation": self.applied, "listed_generation": self.generation,
                "candidates": self.candidates, "ready": sorted(self.ready), "active": self.active,
                "inflight": {k: v for k, v in self.inflight.items() if v},
                "served": self.served, "pid": os.getpid()}

    # ------------------------------------------------------------------ HTTP

    async def exchange(self, host: str, port: int, request: bytes,
                       head_only: bool) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request on a fresh connection; return status, headers and the whole body."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout=self.args.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:  # noqa: UP041 (runs on 3.8+)
            raise UpstreamError(f"connect: {e}") from None
        try:
            writer.write(request)
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                raise UpstreamError(f"no response: {e}") from None
            status, headers = parse_head(head, response=True)
            body = await read_body(reader, headers, status, head_only, until_eof=True)
            return status, headers, body
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            raise UpstreamError(str(e)) from None
        finally:
            writer.close()

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                try:
                    line, headers = parse_head(head, response=False)
                    method, target, version = line
                    body = await read_body(reader, headers, 0, method == "HEAD", until_eof=False)
                except (ValueError, asyncio.IncompleteReadError):
                    await respond(writer, 400, b'{"error": "malformed request"}', close=True)
                    return
                conn = header(headers, "connection").lower()
                keep = (version == "HTTP/1.1" and conn != "close") or conn == "keep-alive"
                if target == STATE_PATH:
                    await respond(writer, 200, json.dumps(self.state()).encode(), close=not keep)
                else:
                    await self.forward(writer, method, target, headers, body, keep)
                if not keep:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()

    async def forward(self, writer: asyncio.StreamWriter, method: str, target: str,
                      headers: list[tuple[str, str]], body: bytes, keep: bool) -> None:
        fwd = [(k, v) for k, v in headers if k.lower() not in HOP]
        request = (f"{method} {target} HTTP/1.1\r\n".encode()
                   + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in fwd)
                   + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        deadline = time.monotonic() + self.args.hold
        while True:
            upstream = self.pick()
            if upstream is None:
                if time.monotonic() > deadline:
                    await respond(writer, 503, b'{"error": "no model server is ready"}', close=not keep)
                    return
                await asyncio.sleep(0.05)
                continue
            host, _, port = upstream.rpartition(":")
            self.inflight[upstream] = self.inflight.get(upstream, 0) + 1
            try:
                status, rheaders, rbody = await asyncio.wait_for(
                    self.exchange(host, int(port), request, head_only=method == "HEAD"),
                    timeout=self.args.timeout)
            except UpstreamError:
                self.drop(upstream)  # the watcher re-admits it once /ready answers again
                if time.monotonic() > deadline:
                    await respond(writer, 502, b'{"error": "model server failed"}', close=not keep)
                    return
                continue
            except asyncio.TimeoutError:  # noqa: UP041 (runs on 3.8+)
                await respond(writer, 504, b'{"error": "model server timed out"}', close=not keep)
                return
            finally:
                self.inflight[upstream] -= 1
            self.served[upstream] = self.served.get(upstream, 0) + 1
            out = [(k, v) for k, v in rheaders if k.lower() not in HOP]
            out.append(("X-Cd4ml-Upstream", upstream))
            await respond(writer, status, rbody, close=not keep, headers=out,
                          length=method != "HEAD" or bool(rbody))
            return


def header(headers: list[tuple[str, str]], name: str) -> str:
    for k, v in headers:
        if k.lower() == name:
            return v.strip()
    return ""


def parse_head(head: bytes, response: bool) -> tuple:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 2:
        raise ValueError(f"bad start line {lines[0]!r}")
    headers = []
    for ln in lines[1:]:
        if not ln:
            continue
        k, sep, v = ln.partition(":")
        if not sep:
            raise ValueError(f"bad header {ln!r}")
        headers.append((k.strip(), v.strip()))
    if response:
        return int(first[1]), headers
    if len(first) != 3:
        raise ValueError(f"bad request line {lines[0]!r}")
    return tuple(first), headers


async def read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]], status: int,
                    head_only: bool, until_eof: bool) -> bytes:
    if head_only or 100 <= status < 200 or status in (204, 304):
        return b""
    if "chunked" in header(headers, "transfer-encoding").lower():
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length = header(headers, "content-length")
    if length:
        return await reader.readexactly(int(length))
    return await reader.read() if until_eof else b""


REASONS = {200: "OK", 400: "Bad Request", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


async def respond(writer: asyncio.StreamWriter, status: int, body: bytes, close: bool,
                  headers: list[tuple[str, str]] | None = None, length: bool = True) -> None:
    if headers is None:
        headers = [("Content-Type", "application/json")]
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    head += [f"{k}: {v}" for k, v in headers]
    if length:
        head.append(f"Content-Length: {len(body)}")
    head.append("Connection: close" if close else "Connection: keep-alive")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="cd4ml's traffic front")
    p.add_argument("--listen", default="0.0.0.0:8080")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--upstream-file")
    src.add_argument("--dns", help="NAME:PORT; every address NAME resolves to is an upstream")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between probes")
    p.add_argument("--hold", type=float, default=30.0,
                   help="how long a request waits for a ready upstream before a 503")
    p.add_argument("--timeout", type=float, default=60.0, help="upstream response timeout")
    p.add_argument("--connect-timeout", type=float, default=2.0)
    p.add_argument("--probe-timeout", type=float, default=2.0)
    args = p.parse_args(argv)
    front = Front(args)
    await front.refresh()
    host, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(front.client, host or "0.0.0.0", int(port),
                                        limit=MAX_HEAD, reuse_address=True)
    print(f"cd4ml front listening on {args.listen}", file=sys.stderr, flush=True)
    watcher = asyncio.ensure_future(front.watch())
    try:
        async with server:
            await server.serve_forever()
    finally:
        watcher.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
