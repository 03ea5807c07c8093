"""A lean HTTP/1.1 + SSE client on raw trio sockets, for load generation.

Why not httpx or h11 per connection: the load client shares two cores with the server under test,
so each of ~19,000 idle streams must cost little (one trio task, one socket, a few small objects).
This module speaks exactly what the harness needs: short request/response exchanges over a small
keep-alive pool, and long ``text/event-stream`` responses (chunked, content-length or until EOF)
parsed line by line as bytes arrive.
"""

from __future__ import annotations

import contextlib
import select
import socket as _stdsocket

import trio

from loadtests._sse import SseEvent, SseParser

# Linux: let bind() to a source address leave the port choice to connect(), so that several
# destinations can share the ephemeral range of one source address.
_IP_BIND_ADDRESS_NO_PORT = getattr(_stdsocket, "IP_BIND_ADDRESS_NO_PORT", 24)
_RECV = 65536


class HttpError(Exception):
    """The peer broke HTTP/1.1 framing, or closed before a complete response."""


async def open_socket(host: str, port: int, source: str | None = None) -> trio.socket.SocketType:
    """Open a TCP connection (blocks until connected); the caller owns and closes the socket."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        if source:
            with contextlib.suppress(OSError):
                sock.setsockopt(trio.socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            await sock.bind((source, 0))
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    """Write every byte (blocks while the kernel buffer is full)."""
    view = memoryview(data)
    while view:
        sent = await sock.send(view)
        view = view[sent:]


def build_request(
    method: str,
    target: str,
    host: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None or method in ("POST", "PUT", "PATCH", "DELETE"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Conn:
    """One socket plus its unread bytes."""

    __slots__ = ("buf", "sock")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buf = b""

    async def _more(self) -> None:
        data = await self.sock.recv(_RECV)
        if not data:
            raise HttpError("connection closed by peer")
        self.buf += data

    async def read_head(self) -> tuple[int, dict[bytes, bytes]]:
        """Read a response head; returns (status, lower-cased headers)."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > 65536:
                raise HttpError("response head too large")
            await self._more()
        head, self.buf = self.buf[:end], self.buf[end + 4 :]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def read_body(self, headers: dict[bytes, bytes], status: int) -> bytes:
        """Read a whole (short) body per the framing headers."""
        if status in (204, 304) or 100 <= status < 200:
            return b""
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            out = []
            reader = BodyReader(self, headers)
            while (part := await reader.next_bytes()) is not None:
                out.append(part)
            return b"".join(out)
        if b"content-length" in headers:
            length = int(headers[b"content-length"])
            while len(self.buf) < length:
                await self._more()
            body, self.buf = self.buf[:length], self.buf[length:]
            return body
        # Until EOF.
        chunks = [self.buf]
        self.buf = b""
        while data := await self.sock.recv(_RECV):
            chunks.append(data)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


class BodyReader:
    """Yields body bytes as they arrive (chunked, content-length or until EOF)."""

    __slots__ = ("chunk_left", "chunked", "clean", "conn", "done", "length_left", "need_crlf")

    def __init__(self, conn: Conn, headers: dict[bytes, bytes]) -> None:
        self.conn = conn
        self.chunked = headers.get(b"transfer-encoding", b"").lower() == b"chunked"
        cl = headers.get(b"content-length")
        self.length_left: int | None = int(cl) if (cl is not None and not self.chunked) else None
        self.chunk_left = 0
        self.need_crlf = False
        self.done = False
        #: The body ended by its own framing (not EOF or an error): the connection can carry
        #: the next request.
        self.clean = False

    async def next_bytes(self) -> bytes | None:
        """Next piece of body (blocks until bytes arrive); None at the end of the body or on EOF."""
        conn = self.conn
        if self.done:
            return None
        try:
            if not self.chunked:
                if self.length_left is not None and self.length_left <= 0:
                    self.done = self.clean = True
                    return None
                if not conn.buf:
                    await conn._more()
                data, conn.buf = conn.buf, b""
                if self.length_left is not None:
                    data, conn.buf = data[: self.length_left], data[self.length_left :]
                    self.length_left -= len(data)
                return data
            while True:
                if self.chunk_left > 0:
                    if not conn.buf:
                        await conn._more()
                    data = conn.buf[: self.chunk_left]
                    conn.buf = conn.buf[len(data) :]
                    self.chunk_left -= len(data)
                    if self.chunk_left == 0:
                        self.need_crlf = True
                    return data
                if self.need_crlf:
                    while len(conn.buf) < 2:
                        await conn._more()
                    if conn.buf[:2] != b"\r\n":
                        raise HttpError("bad chunk terminator")
                    conn.buf = conn.buf[2:]
                    self.need_crlf = False
                while (idx := conn.buf.find(b"\r\n")) < 0:
                    await conn._more()
                size = int(conn.buf[:idx].split(b";", 1)[0], 16)
                conn.buf = conn.buf[idx + 2 :]
                if size == 0:
                    # Trailer section: zero or more header lines, then CRLF.
                    while (idx := conn.buf.find(b"\r\n")) < 0:
                        await conn._more()
                    conn.buf = conn.buf[idx + 2 :]
                    self.done = self.clean = True
                    return None
                self.chunk_left = size
        except HttpError:
            self.done = True
            return None


class SseStream:
    """An open event stream: ``await next_event()`` until it returns None (stream over)."""

    __slots__ = ("body", "conn", "keep_alive", "parser")

    def __init__(self, conn: Conn, headers: dict[bytes, bytes]) -> None:
        self.conn: Conn | None = conn
        self.body = BodyReader(conn, headers)
        self.parser = SseParser()
        self.keep_alive = headers.get(b"connection", b"").lower() != b"close"

    def detach(self) -> Conn | None:
        """After the stream ended cleanly on a keep-alive connection, hand the connection over
        for the next request (as a browser's connection pool does for the next EventSource);
        else None. The stream no longer owns it."""
        conn = self.conn
        if conn is None or not (self.body.clean and self.keep_alive) or conn.buf:
            return None
        self.conn = None
        return conn

    async def next_event(self) -> SseEvent | None:
        parser = self.parser
        while not parser.events:
            data = await self.body.next_bytes()
            if data is None:
                return None
            parser.feed(data)
        return parser.events.popleft()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


async def open_sse(
    host: str,
    port: int,
    target: str,
    headers: dict[str, str],
    source: str | None = None,
    last_event_id: str | None = None,
    reuse: Conn | None = None,
) -> tuple[int, SseStream | None, bytes]:
    """GET an event stream, on ``reuse`` (an idle keep-alive connection) if given, else on a
    new one; a reused connection the server already closed is replaced once, as browsers do
    for idempotent requests. Returns (status, stream or None, body when not 200)."""
    hdrs = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **headers}
    if last_event_id is not None:
        hdrs["Last-Event-ID"] = last_event_id
    request = build_request("GET", target, f"{host}:{port}", hdrs)
    if reuse is not None:
        try:
            await send_all(reuse.sock, request)
            status, head = await reuse.read_head()
        except (OSError, HttpError):
            reuse.close()
        except BaseException:
            reuse.close()
            raise
        else:
            return await _sse_reply(reuse, status, head)
    conn = Conn(await open_socket(host, port, source))
    try:
        await send_all(conn.sock, request)
        status, head = await conn.read_head()
    except BaseException:
        conn.close()
        raise
    return await _sse_reply(conn, status, head)


async def _sse_reply(conn: Conn, status: int,
                     head: dict[bytes, bytes]) -> tuple[int, SseStream | None, bytes]:
    try:
        if status != 200:
            body = await conn.read_body(head, status)
            conn.close()
            return status, None, body
        return status, SseStream(conn, head), b""
    except BaseException:
        conn.close()
        raise


class Pool:
    """A small keep-alive pool for short requests to one server from one source address."""

    def __init__(self, host: str, port: int, source: str | None = None, max_idle: int = 32) -> None:
        self.host = host
        self.port = port
        self.source = source
        self.max_idle = max_idle
        self.idle: list[Conn] = []
        self.hostport = f"{host}:{port}"

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, bytes]:
        """One request; blocks until the whole response is read. An idle connection the server
        has closed is dropped before use; a request that fails on a reused connection is sent
        again only when repeating it is harmless (not ``POST``: the server may have acted on
        it, and a second try would report a duplicate as 409 or 403)."""
        data = build_request(method, target, self.hostport, headers, body)
        idempotent = method != "POST"
        for attempt in (0, 1):
            conn = self._idle_conn() if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = Conn(await open_socket(self.host, self.port, self.source))
            try:
                await send_all(conn.sock, data)
                status, head = await conn.read_head()
                payload = await conn.read_body(head, status)
            except (HttpError, OSError, trio.BrokenResourceError):
                conn.close()
                if reused and idempotent:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            if head.get(b"connection", b"").lower() == b"close" or len(self.idle) >= self.max_idle:
                conn.close()
            else:
                self.idle.append(conn)
            return status, payload
        raise HttpError("unreachable")

    def _idle_conn(self) -> Conn | None:
        """The most recent idle connection still open: an idle one that is readable has been
        closed by the server (or sent what nobody asked for), so it is dropped."""
        while self.idle:
            conn = self.idle.pop()
            # poll, not select: a client process holds thousands of descriptors (select stops
            # at 1,024).
            poller = select.poll()
            poller.register(conn.sock.fileno(), select.POLLIN)
            if not poller.poll(0) and not conn.buf:
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
