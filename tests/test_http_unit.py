"""The engine's HTTP/1.1 transport (metal3_pivot/http.py) against a small server on loopback that answers
the ways an API server (or a proxy in front of one) can: by Content-Length, chunked, gzip, closing the
connection, closing it while idle, not answering. The real API servers are in every other test."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable

import httpx2 as httpx
import pytest

from metal3_pivot.http import ApiTransport

pytestmark = pytest.mark.unit

Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]
TIMEOUTS = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


class Server:
    """Answers each request with `handler` (which returns whether to keep the connection open); counts
    the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                if not await self.handler(head + body, reader, writer):
                    return
        finally:
            writer.close()


async def serving(handler: Handler) -> tuple[Server, asyncio.base_events.Server]:
    server = Server(handler)
    srv = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    server.port = srv.sockets[0].getsockname()[1]
    return server, srv


def answer(body: bytes, extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


async def call(t: ApiTransport, port: int, method: str = "GET", body: bytes = b"") -> tuple[int, bytes]:
    headers = [(b"Host", f"127.0.0.1:{port}".encode())]
    if body:
        headers.append((b"Content-Length", str(len(body)).encode()))
    status, _, content = await t.exchange("http", "127.0.0.1", port, method, b"/x", headers, body, TIMEOUTS)
    return status, content


def test_content_length_and_keep_alive_reuse_one_connection() -> None:
    async def echo(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(request.split(b"\r\n\r\n", 1)[1] or b"empty"))
        await w.drain()
        return True

    async def go() -> None:
        server, srv = await serving(echo)
        t = ApiTransport(None, max_connections=4)
        for i in range(5):
            assert await call(t, server.port, "POST", f"body {i}".encode()) == (200, f"body {i}".encode())
        assert server.connections == 1
        await t.aclose()
        srv.close()
    asyncio.run(go())


def test_chunked_bodies_with_extensions_and_trailers() -> None:
    async def chunked(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
        await w.drain()
        return True

    async def go() -> None:
        server, srv = await serving(chunked)
        t = ApiTransport(None, max_connections=2)
        assert await call(t, server.port) == (200, b"hello world")
        assert await call(t, server.port) == (200, b"hello world")     # the connection is reusable after it
        assert server.connections == 1
        await t.aclose()
        srv.close()
    asyncio.run(go())


def test_connection_close_and_a_body_that_ends_with_the_connection() -> None:
    async def closing(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await w.drain()
        return False

    async def go() -> None:
        server, srv = await serving(closing)
        t = ApiTransport(None, max_connections=2)
        assert await call(t, server.port) == (200, b"until the end")
        assert await call(t, server.port) == (200, b"until the end")
        assert server.connections == 2
        await t.aclose()
        srv.close()
    asyncio.run(go())


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def once(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(answer(b"ok"))        # keep-alive promised, then closed: what an idle timeout does
        await w.drain()
        return False

    async def go() -> None:
        server, srv = await serving(once)
        t = ApiTransport(None, max_connections=2)
        assert await call(t, server.port) == (200, b"ok")
        await asyncio.sleep(0.1)      # the FIN arrives while the connection sits idle
        assert await call(t, server.port) == (200, b"ok")
        assert server.connections == 2
        await t.aclose()
        srv.close()
    asyncio.run(go())


def kubeconfig(port: int, user: str) -> str:
    return (f"apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            f"users: [{{name: u, user: {user}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\n")


@pytest.mark.parametrize("user", ["{}", "{token: abc}"], ids=["certificate-or-none: straight", "token: via httpx"])
def test_gzip_bodies_reach_the_engine_decoded_both_ways(user: str) -> None:
    """Without a token (a client certificate lives in the SSL context) Kube writes to the transport itself
    and inflates the body; with one, httpx authenticates and inflates it. Both send the same headers."""
    from metal3_pivot.kube import METADATA_ONLY, Kube, load_kubeconfig

    seen: list[bytes] = []

    async def zipped(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        seen.append(request)
        w.write(answer(gzip.compress(b'{"kind": "List", "items": []}'),
                       b"Content-Encoding: gzip\r\nContent-Type: application/json\r\n"))
        await w.drain()
        return True

    async def go() -> None:
        server, srv = await serving(zipped)
        async with Kube(load_kubeconfig(kubeconfig(server.port, user)), name="t") as kube:
            assert await kube.request("GET", "/api/v1/x", params={"limit": "5"}) == {"kind": "List", "items": []}
            assert await kube.request("POST", "/api/v1/x", body={"a": "é"}) == {"kind": "List", "items": []}
            await kube.request("POST", "/api/v1/x", body={}, metadata_only=True)
        srv.close()
    asyncio.run(go())
    get, post, slim = (r.decode() for r in seen)
    assert get.startswith("GET /api/v1/x?limit=5 HTTP/1.1\r\n") and post.startswith("POST /api/v1/x HTTP/1.1\r\n")
    assert "user-agent: python-httpx2/" in get.lower() and '{"a":"é"}' in post
    assert ("authorization: bearer abc" in get.lower()) == (user != "{}")
    # an answer with the metadata alone is asked for only where the caller said so, the whole JSON still taken
    assert "accept: */*" in post.lower() and "partialobjectmetadata" not in post.lower()
    accept = next(line for line in slim.split("\r\n") if line.lower().startswith("accept:"))
    assert accept.split(":", 1)[1].strip() == METADATA_ONLY.decode()
    assert METADATA_ONLY.decode().endswith(",application/json")


def test_silence_is_a_read_timeout_and_a_dropped_connection_a_protocol_error() -> None:
    async def silent(_: bytes, r: asyncio.StreamReader, __: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async def hang_up(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await w.drain()
        return False

    async def go() -> None:
        quiet, srv1 = await serving(silent)
        rude, srv2 = await serving(hang_up)
        t = ApiTransport(None, max_connections=2)
        with pytest.raises(httpx.ReadTimeout):
            await t.exchange("http", "127.0.0.1", quiet.port, "GET", b"/", [], b"", {**TIMEOUTS, "read": 0.3})
        with pytest.raises(httpx.RemoteProtocolError):
            await call(t, rude.port)
        await t.aclose()
        srv1.close()
        srv2.close()
    asyncio.run(go())


def test_what_is_not_an_http_answer_is_a_protocol_error() -> None:
    async def garbage(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await w.drain()
        return False

    async def bad_length(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n")
        await w.drain()
        return False

    async def go() -> None:
        t = ApiTransport(None, max_connections=2)
        for handler in (garbage, bad_length):
            server, srv = await serving(handler)
            with pytest.raises(httpx.RemoteProtocolError):
                await call(t, server.port)
            srv.close()
        await t.aclose()
    asyncio.run(go())


def test_nobody_listening_is_a_connect_error() -> None:
    async def go() -> None:
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        await srv.wait_closed()
        t = ApiTransport(None, max_connections=1)
        with pytest.raises(httpx.ConnectError):
            await call(t, port)
    asyncio.run(go())


def test_at_most_max_connections_at_once() -> None:
    inflight = peak = 0

    async def slow(_: bytes, __: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        await asyncio.sleep(0.02)
        inflight -= 1
        w.write(answer(b"ok"))
        await w.drain()
        return True

    async def go() -> None:
        server, srv = await serving(slow)
        t = ApiTransport(None, max_connections=3)
        results = await asyncio.gather(*(call(t, server.port) for _ in range(12)))
        assert results == [(200, b"ok")] * 12
        assert peak == 3 and server.connections == 3
        await t.aclose()
        srv.close()
    asyncio.run(go())


def test_a_write_guard_that_refuses_stops_the_write_before_it_is_sent() -> None:
    """The move lock's guard (lock.py) sits on the client: a refused write never reaches the server, reads
    still do, and the write hooks learn when an accepted write was sent."""
    from metal3_pivot import Write, add_write_hook
    from metal3_pivot.errors import LockLostError
    from metal3_pivot.kube import Kube, load_kubeconfig

    seen: list[bytes] = []
    hooked: list[Write] = []
    lost = False

    async def ok(request: bytes, _: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        seen.append(request)
        w.write(answer(b"{}", b"Content-Type: application/json\r\n"))
        await w.drain()
        return True

    def guard(method: str, path: str) -> None:
        if lost:
            raise LockLostError(f"refused {method} {path}")

    async def record(w: Write) -> None:
        hooked.append(w)

    async def go() -> None:
        nonlocal lost
        server, srv = await serving(ok)
        async with Kube(load_kubeconfig(kubeconfig(server.port, "{}")), name="t") as kube:
            kube.write_guard = guard
            before = time.time()
            await kube.request("POST", "/api/v1/a", body={})
            lost = True
            with pytest.raises(LockLostError, match="refused PATCH /api/v1/b"):
                await kube.request("PATCH", "/api/v1/b", body={}, content_type="application/merge-patch+json")
            await kube.request("GET", "/api/v1/c")
        srv.close()
        assert len(hooked) == 1 and before <= hooked[0].started <= time.time()
    remove = add_write_hook(record)
    try:
        asyncio.run(go())
    finally:
        remove()
    assert [r.split(b" ", 2)[:2] for r in seen] == [[b"POST", b"/api/v1/a"], [b"GET", b"/api/v1/c"]]
