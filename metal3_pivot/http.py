"""HTTP/1.1 to an API server for little CPU per request: the transport under the engine's httpx client.

Why our own: a move is tens of thousands of small requests, and on the 2-core machines it runs on, every
millisecond of the client's CPU is taken from the API servers it waits for. Profiled at 300 hosts
(3,948 creates, docs/performance.md "The client's share of the cores"), httpcore's pool spent most of
the client's ~1.8 ms of CPU per request placing it: for each request it walks every connection of the
pool and polls each idle socket, and anyio wraps every read. This transport keeps idle connections on
a stack and reuses the last one freed, and speaks only what an API server answers: a status line,
headers, a body by Content-Length or chunked, keep-alive. httpx stays in front of it, so
authentication (tokens, exec plugins, client certificates in the SSL context), request building and
the errors the engine maps (httpx.ConnectError, ReadTimeout, ...) are what they were.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx2 as httpx

#: answers with no body whatever their headers say
_NO_BODY = frozenset({204, 304})
_HEAD_END = b"\r\n\r\n"


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        """Not closed by the server while it sat idle (the event loop has seen its FIN by then)."""
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class ApiTransport(httpx.AsyncBaseTransport):
    """One origin's connections: at most `max_connections` open, the most recently freed reused first."""

    def __init__(self, ssl_context: ssl.SSLContext | None, max_connections: int) -> None:
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """For httpx: requests whose authentication httpx does (tokens, exec plugins) come this way."""
        url = request.url
        status, headers, content = await self.exchange(
            url.scheme, url.host, url.port, request.method, url.raw_path, request.headers.raw,
            await request.aread(), request.extensions.get("timeout") or {})
        return httpx.Response(status, headers=headers, content=content, request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    async def exchange(self, scheme: str, host: str, port: int | None, method: str, target: bytes,
                       headers: list[tuple[bytes, bytes]], body: bytes, timeouts: dict[str, Any]
                       ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One request, one answer: (status, headers, body as sent: a gzip body stays compressed).
        Errors are httpx's (ConnectError, ConnectTimeout, ReadTimeout, RemoteProtocolError, ReadError,
        PoolTimeout), which the engine maps to its own."""
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection to the API server came free in time") from None
        try:
            https = scheme == "https"
            origin = (scheme, host, port or (443 if https else 80))
            conn = await self._connect(origin, https, timeouts.get("connect"))
            head = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
            for name, value in headers:
                head += (name, b": ", value, b"\r\n")
            head.append(b"\r\n")
            reusable = False      # only once the whole answer is read: never after an error or a cancellation
            try:
                conn.writer.write(b"".join(head) + body)
                async with asyncio.timeout(timeouts.get("read")) as deadline:
                    await conn.writer.drain()
                    status, answer_headers, keep = await _read_head(conn.reader)
                    content = await _read_body(conn.reader, method, status, answer_headers, deadline,
                                               timeouts.get("read"))
                reusable = keep
            except TimeoutError:
                raise httpx.ReadTimeout(f"{method} {target.decode(errors='replace')}: no answer in "
                                        f"{timeouts.get('read')} s") from None
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                raise httpx.RemoteProtocolError(f"the API server closed the connection: {err!r}") from None
            except (asyncio.LimitOverrunError, ValueError) as err:       # not an answer HTTP/1.1 allows
                raise httpx.RemoteProtocolError(f"a malformed answer: {err!r}") from None
            except OSError as err:
                raise httpx.ReadError(repr(err)) from None
            finally:
                if reusable and not self._closed:
                    self._idle.setdefault(origin, []).append(conn)
                else:
                    conn.close()
            return status, answer_headers, content
        finally:
            self._slots.release()

    async def _connect(self, origin: tuple[str, str, int], https: bool, timeout: float | None) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        _, host, port = origin
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self._ssl if https else None, server_hostname=host if https else None,
                    limit=1 << 20)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in {timeout} s") from None
        except OSError as err:      # refused, unreachable, and TLS failures (ssl.SSLError is an OSError)
            raise httpx.ConnectError(str(err) or repr(err)) from None
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]], bool]:
    """Status, headers, and whether the connection stays open after the body (HTTP/1.1's default)."""
    raw = await reader.readuntil(_HEAD_END)
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ConnectionError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
    headers = []
    keep = parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        value = value.strip()
        headers.append((name, value))
        if name.lower() == b"connection":
            keep = value.lower() != b"close" if keep else value.lower() == b"keep-alive"
    return int(parts[1]), headers, keep


async def _read_body(reader: asyncio.StreamReader, method: str, status: int, headers: list[tuple[bytes, bytes]],
                     deadline: asyncio.Timeout, read_timeout: float | None) -> bytes:
    if method == "HEAD" or status in _NO_BODY or 100 <= status < 200:
        return b""
    length = chunked = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            length = int(value)
        elif lower == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if chunked:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):     # trailers, then the blank line
                    pass
                return b"".join(parts)
            parts.append((await reader.readexactly(size + 2))[:-2])
            if read_timeout is not None:   # the read timeout bounds a silence, not a long list
                deadline.reschedule(asyncio.get_running_loop().time() + read_timeout)
    if length is not None:
        return await reader.readexactly(length)
    return await reader.read()     # neither: the body ends when the server closes
