"""A fault-injecting HTTPS proxy on loopback in front of a local kube-apiserver.

For the reliability tests: it terminates TLS with the cluster's own serving certificate (so the
kubeconfig's CA still verifies it), forwards each request with the admin client certificate, and on a
chosen fraction of requests answers 429 or 500 instead, stalls until the client's timeout, or drops
the connection. Faults are drawn from a seeded RNG so a run is repeatable. Loopback only; bounded by
the test that starts it.
"""

from __future__ import annotations

import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2 as httpx
import yaml

from lab.cluster import LocalCluster, free_port

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class FaultRates:
    throttle: float = 0.0       # 429 with Retry-After
    error: float = 0.0          # 500
    stall: float = 0.0          # no answer until the client gives up
    drop: float = 0.0           # connection closed without an answer (request never reached the server)
    lost: float = 0.0           # request executed by the server, then the answer lost (connection closed)
    writes_only: bool = False   # leave GETs alone


@dataclass
class FaultStats:
    requests: int = 0
    injected: dict[str, int] = field(default_factory=dict)


class FaultProxy:
    def __init__(self, cluster: LocalCluster, rates: FaultRates, seed: int = 7, stall_seconds: float = 35.0) -> None:
        self.cluster = cluster
        self.rates = rates
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.stats = FaultStats()
        self.stall_seconds = stall_seconds
        self.port = free_port()
        self.enabled = True
        pki = cluster.pki
        client_ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        client_ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.upstream = httpx.Client(base_url=cluster.server, verify=client_ctx, timeout=60)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki / "serving.crt"), str(pki / "serving.key"))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.upstream.close()

    def kubeconfig(self, path: Path) -> Path:
        """A copy of the cluster's kubeconfig that goes through the proxy."""
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.write_text(yaml.safe_dump(config))
        return path

    def _draw(self, method: str) -> str | None:
        if not self.enabled or (self.rates.writes_only and method == "GET"):
            return None
        with self.lock:
            self.stats.requests += 1
            x = self.rng.random()
        r = self.rates
        for name, rate in (("throttle", r.throttle), ("error", r.error), ("stall", r.stall), ("drop", r.drop),
                           ("lost", r.lost)):
            if x < rate:
                with self.lock:
                    self.stats.injected[name] = self.stats.injected.get(name, 0) + 1
                return name
            x -= rate
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                fault = proxy._draw(self.command)
                if fault == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault == "stall":
                    time.sleep(proxy.stall_seconds)
                    self.close_connection = True
                    return
                if fault in ("throttle", "error"):
                    code = 429 if fault == "throttle" else 500
                    payload = (b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"%s","code":%d}'
                               % (b"TooManyRequests" if code == 429 else b"InternalError", code))
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                resp = proxy.upstream.request(self.command, self.path, content=body, headers=headers)
                if fault == "lost":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                data = resp.content
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in HOP_HEADERS and k.lower() != "content-encoding":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        return Handler
