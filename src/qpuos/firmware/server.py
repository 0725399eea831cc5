"""The update server: asyncio, TLS 1.3 only, ALPN ``quantum-firmware/1.0`` required.

Transport. TLS 1.3 is both the minimum and the maximum; key exchange is X25519
(``set_ecdh_curve``); a connection that did not negotiate the ALPN protocol is closed
without a byte. With ``client_ca`` set, devices must present a certificate from that CA
(mutual TLS) and may only speak for the device id in its common name.

Frames (both ways: a 4-byte big-endian length, then that many bytes)::

    request   := LEN JSON            JSON: canonical, at most 64 KiB, with "op"
    response  := LEN JSON [BODY]     JSON: {"status": S, "length": N, ...}; then N raw bytes

    {"op": "meta", "name": "timestamp.json", "max": M}
        -> status "ok" and at most M+1 bytes of the file (the client refuses > M),
           or "not-found" (how a client learns the root rotation chain has ended)
    {"op": "chunk", "sha256": H, "offset": O, "length": L}
        -> "ok" and bytes O..O+L of image H (L <= 16 MiB; shorter only at its end)
    {"op": "hello", "device_id": D, "version": V}
        -> "ok" with "target": the registry's target version for D (or null)
    {"op": "report", "device_id": D, "version": V, "result": R}
        -> "ok"
    anything else -> "error" with "message"; "busy" when over the connection limit

One connection carries many requests, one at a time. Lifecycle limits: the TLS
handshake must finish in ``handshake_timeout``; a connection idle for ``idle_timeout``
between requests is closed; at most ``max_connections`` are served at once (the rest get
"busy" and are closed); every response waits for ``drain()`` (backpressure: a slow reader
holds its own connection, not the server's memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qpuos.errors import ClosedResourceError, QpuosError, UsageError
from qpuos.firmware._wire import ALPN, HEADER, MAX_BODY, MAX_REQUEST, decode, encode, tls13
from qpuos.firmware.fleet import Registry

__all__ = ["FirmwareServer", "ServerStats", "serve_in_thread", "server_context"]


def server_context(certfile: str | os.PathLike[str], keyfile: str | os.PathLike[str], *,
                   client_ca: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """The server's TLS context: TLS 1.3 only, X25519, the update ALPN, optional mTLS.

    Raises:
        UsageError: a certificate or key file cannot be loaded.
    """
    ctx = tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.set_ecdh_curve("X25519")
    try:
        ctx.load_cert_chain(certfile, keyfile)
        if client_ca is not None:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS files {os.fspath(certfile)}, "
                         f"{os.fspath(keyfile)} ({exc}); make them with "
                         "`qpuos fw certs DIR`") from exc
    return ctx


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A snapshot of a server's counters (see :attr:`FirmwareServer.stats`)."""

    connections: int
    active: int
    refused_alpn: int
    refused_busy: int
    idle_closed: int
    requests: int
    bytes_sent: int
    errors: Mapping[str, int]


@dataclass(slots=True)
class _Counters:
    """The live counters, touched by the event loop only."""

    connections: int = 0
    active: int = 0
    refused_alpn: int = 0
    refused_busy: int = 0
    idle_closed: int = 0
    requests: int = 0
    bytes_sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class _Reject(Exception):
    """A request the server answers with status "error"."""


class FirmwareServer:
    """Serve a repository folder (:mod:`qpuos.firmware.repo`) over the update protocol.

    Args:
        repo: the repository folder.
        context: from :func:`server_context`.
        registry: the fleet registry (hello and report requests go there).
        host, port: where to listen (port 0: any free port; see :attr:`port`).
        handshake_timeout, idle_timeout: seconds (see the module docstring).
        max_connections: connections served at once.
        reuse_port: set SO_REUSEPORT so several worker processes share the port.
    """

    def __init__(self, repo: str | os.PathLike[str], context: ssl.SSLContext, *,
                 registry: Registry | None = None, host: str = "127.0.0.1", port: int = 0,
                 handshake_timeout: float = 10.0, idle_timeout: float = 30.0,
                 max_connections: int = 1024, reuse_port: bool = False) -> None:
        self.repo = Path(repo)
        self._ctx = context
        self.registry = registry
        self.host, self.port = host, port
        self.handshake_timeout, self.idle_timeout = handshake_timeout, idle_timeout
        self.max_connections = max_connections
        self._reuse_port = reuse_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._mtls = context.verify_mode == ssl.CERT_REQUIRED
        self._st = _Counters()
        self._closed = False

    @property
    def stats(self) -> ServerStats:
        """The counters now (a copy)."""
        c = self._st
        return ServerStats(c.connections, c.active, c.refused_alpn, c.refused_busy,
                           c.idle_closed, c.requests, c.bytes_sent, dict(c.errors))

    async def start(self) -> None:
        """Bind and start accepting; :attr:`port` is then the bound port.

        Raises:
            ClosedResourceError: after close().
        """
        if self._closed:
            raise ClosedResourceError("this server was closed; make a new one")
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, ssl=self._ctx,
            ssl_handshake_timeout=self.handshake_timeout, reuse_port=self._reuse_port,
            backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve_forever(self) -> None:
        """Start if needed and serve until cancelled."""
        if self._server is None:
            await self.start()
        if self._server is not None:
            await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting and drop every connection (idempotent)."""
        self._closed = True
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # Python 3.11 leaves them open
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FirmwareServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        st = self._st
        st.connections += 1
        tls = writer.get_extra_info("ssl_object")
        self._writers.add(writer)
        try:
            if tls is None or tls.selected_alpn_protocol() != ALPN:
                st.refused_alpn += 1
                return
            if st.active >= self.max_connections:
                st.refused_busy += 1
                writer.write(encode({"status": "busy", "length": 0,
                                     "message": "connection limit reached; retry later"}))
                await writer.drain()
                return
            st.active += 1
            try:
                await self._serve(reader, writer, tls)
            finally:
                st.active -= 1
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the peer vanished, stalled mid-request or broke TLS: just close
        finally:
            self._writers.discard(writer)
            writer.close()  # the transport finishes the TLS shutdown on its own

    def _peer_device(self, tls: ssl.SSLObject) -> str | None:
        if not self._mtls:
            return None
        cert: Any = tls.getpeercert() or {}
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     tls: ssl.SSLObject) -> None:
        peer = self._peer_device(tls)
        while True:
            try:
                head = await asyncio.wait_for(reader.readexactly(4), self.idle_timeout)
            except TimeoutError:
                self._st.idle_closed += 1
                return
            except asyncio.IncompleteReadError:
                return  # the client hung up between requests: the normal end
            (n,) = HEADER.unpack(head)
            if n > MAX_REQUEST:
                return
            body = await asyncio.wait_for(reader.readexactly(n), self.idle_timeout)
            self._st.requests += 1
            try:
                header, payload = await self._answer(decode(body, "request"), peer)
            except (_Reject, QpuosError) as exc:  # a bad request or a registry failure
                header, payload = {"status": "error", "message": str(exc)}, b""
                self._st.errors[type(exc).__name__] = \
                    self._st.errors.get(type(exc).__name__, 0) + 1
            header["length"] = len(payload)
            writer.write(encode(header))
            if payload:
                writer.write(payload)
            self._st.bytes_sent += len(payload)
            await writer.drain()

    async def _answer(self, req: dict[str, Any],
                      peer: str | None) -> tuple[dict[str, Any], bytes]:
        op = req.get("op")
        if op == "chunk":
            sha, offset, length = req.get("sha256"), req.get("offset"), req.get("length")
            if not (isinstance(sha, str) and sha.isalnum() and isinstance(offset, int)
                    and isinstance(length, int) and offset >= 0 and 0 < length <= MAX_BODY):
                raise _Reject(f"bad chunk request {req!r}")
            try:
                with open(self.repo / "images" / sha, "rb") as fh:
                    return {"status": "ok"}, os.pread(fh.fileno(), length, offset)
            except FileNotFoundError:
                return {"status": "not-found"}, b""
        if op == "meta":
            name, limit = req.get("name"), req.get("max")
            if not (isinstance(name, str) and name.endswith(".json") and "/" not in name
                    and not name.startswith(".") and isinstance(limit, int)
                    and 0 < limit <= MAX_BODY):
                raise _Reject(f"bad metadata request {req!r}")
            try:
                with open(self.repo / "metadata" / name, "rb") as fh:
                    return {"status": "ok"}, fh.read(limit + 1)
            except FileNotFoundError:
                return {"status": "not-found"}, b""
        if op in ("hello", "report"):
            dev, version = req.get("device_id"), req.get("version")
            if not (isinstance(dev, str) and dev and isinstance(version, str)):
                raise _Reject(f"bad {op} request {req!r}")
            if peer is not None and dev != peer:
                raise _Reject(f"this connection's certificate is for {peer!r}, not {dev!r}")
            reg = self.registry
            if reg is None:
                return {"status": "ok", "target": None}, b""
            if op == "hello":
                rec = await asyncio.to_thread(reg.seen, dev, version=version)
                return {"status": "ok", "target": rec.target_version}, b""
            result = req.get("result")
            if not isinstance(result, str):
                raise _Reject(f"bad report request {req!r}")
            await asyncio.to_thread(reg.report, dev, version=version, result=result)
            return {"status": "ok"}, b""
        raise _Reject(f"unknown op {op!r}; this server speaks {ALPN}")


@contextlib.contextmanager
def serve_in_thread(server: FirmwareServer) -> Iterator[FirmwareServer]:
    """Run ``server`` on an event loop in a background thread for the ``with`` block.

    >>> import tempfile
    >>> from qpuos.firmware.certs import make_certs
    >>> with tempfile.TemporaryDirectory() as d:
    ...     c = make_certs(d)
    ...     srv = FirmwareServer(d, server_context(c.server_cert, c.server_key))
    ...     with serve_in_thread(srv) as s:
    ...         s.port > 0
    True
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        try:
            await server.start()
        except BaseException as exc:
            failure.append(exc)
            return
        finally:
            ready.set()
        await stop[0].wait()
        await server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),),
                              name="qpuos-fw-server", daemon=True)
    thread.start()
    ready.wait()
    try:
        if failure:
            raise failure[0]
        yield server
    finally:
        if not failure:
            loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=30)
        loop.close()
