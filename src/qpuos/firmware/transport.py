"""The device's side of the update protocol: a blocking TLS 1.3 client that is a
:class:`~qpuos.firmware.client.Fetcher` (see :mod:`qpuos.firmware.server` for frames).

It connects lazily, keeps one connection for many requests, and turns every failure
into :class:`FirmwareTransportError` (``FirmwareTimeout`` for timeouts). A dropped
connection is not retried here: the agent's next run resumes at the first missing
chunk, which is the retry that survives a reboot too.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any

from qpuos.errors import (
    ClosedResourceError,
    FirmwareError,
    FirmwareTimeout,
    FirmwareTransportError,
    UsageError,
)
from qpuos.firmware._wire import ALPN, HEADER, MAX_BODY, MAX_RESPONSE_HEADER, decode, encode, tls13
from qpuos.firmware.client import UpdateAgent, UpdateResult

__all__ = ["TlsFetcher", "client_context", "parse_server_url", "update_device"]


def parse_server_url(url: str) -> tuple[str, int]:
    """``qfw://HOST:PORT`` or ``HOST:PORT`` as (host, port).

    Raises:
        UsageError: no port, or another scheme.

    >>> parse_server_url("qfw://127.0.0.1:8443")
    ('127.0.0.1', 8443)
    """
    rest = url.removeprefix("qfw://")
    if "://" in rest:
        raise UsageError(f"server URL {url!r} has an unknown scheme; use qfw://HOST:PORT")
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise UsageError(f"server URL {url!r} lacks a port; use qfw://HOST:PORT")
    return host.strip("[]"), int(port)


def client_context(cafile: str | os.PathLike[str], *,
                   certfile: str | os.PathLike[str] | None = None,
                   keyfile: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """The device's TLS context: TLS 1.3 only, the update ALPN, the server's CA,
    and the device certificate when the server asks for mutual TLS.

    Raises:
        UsageError: a file cannot be loaded.
    """
    ctx = tls13(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    try:
        ctx.load_verify_locations(cafile)
        if certfile is not None:
            ctx.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS files {os.fspath(cafile)}"
                         f"{'' if certfile is None else ', ' + os.fspath(certfile)} ({exc}); "
                         "make them with `qpuos fw certs DIR`") from exc
    return ctx


class TlsFetcher:
    """A blocking update-protocol client (a ``Fetcher`` for :class:`UpdateAgent`).

    Chunk requests are pipelined: with each chunk it asks for, it also asks for the next
    ``read_ahead`` ranges of the same size, so the server encrypts chunk k+1 while the
    device hashes and writes chunk k. An answer nobody asks for (a re-fetch, the short
    last chunk) is read and dropped before the next exchange.

    Args:
        url: ``qfw://HOST:PORT``.
        context: from :func:`client_context`.
        timeout: seconds for connecting and for each answer.
        server_hostname: the name the certificate must carry (default: the host).
        read_ahead: chunk requests sent ahead of the one being read (0: none).
    """

    def __init__(self, url: str, context: ssl.SSLContext, *, timeout: float = 10.0,
                 server_hostname: str | None = None, read_ahead: int = 2) -> None:
        self.host, self.port = parse_server_url(url)
        self._ctx = context
        self._timeout = timeout
        self._name = server_hostname or self.host
        self._sock: ssl.SSLSocket | None = None
        self._closed = False
        self._read_ahead = max(0, read_ahead)
        self._ahead: deque[tuple[dict[str, Any], int]] = deque()  # sent, answer unread
        self._answered = 0  # answers read on this connection

    def _connect(self) -> ssl.SSLSocket:
        if self._closed:
            raise ClosedResourceError("the update connection is closed; make a new fetcher")
        if self._sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=self._timeout)
            try:
                sock = self._ctx.wrap_socket(raw, server_hostname=self._name)
            except BaseException:
                raw.close()
                raise
            if sock.selected_alpn_protocol() != ALPN:
                sock.close()
                raise FirmwareTransportError(f"{self.host}:{self.port} did not agree to "
                                             f"ALPN {ALPN}; is it a qpuos update server?")
            self._sock = sock
            self._answered = 0
        return self._sock

    def _recv(self, sock: ssl.SSLSocket, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = sock.recv_into(view[got:], n - got)
            if not k:
                if self._answered == 0 and got == 0:
                    raise FirmwareTransportError(
                        f"{self.host}:{self.port} closed the connection before answering; "
                        "if it requires mutual TLS, give the device certificate "
                        "(--cert, --key)")
                raise FirmwareTransportError(f"{self.host}:{self.port} closed the "
                                             f"connection mid-answer ({got} of {n} "
                                             "bytes); run the update again to resume")
            got += k
        return bytes(buf)

    def _answer(self, sock: ssl.SSLSocket, max_body: int) -> tuple[dict[str, Any], bytes]:
        (n,) = HEADER.unpack(self._recv(sock, 4))
        if n > MAX_RESPONSE_HEADER:
            raise FirmwareTransportError(f"response header of {n} bytes; refused")
        header = decode(self._recv(sock, n), "response")
        length = header.get("length", 0)
        if not isinstance(length, int) or not 0 <= length <= max_body + 1:
            raise FirmwareTransportError(f"response body of {length!r} bytes, over "
                                         f"the {max_body} asked; refused")
        body = self._recv(sock, length)
        self._answered += 1
        return header, body

    def _exchange(self, req: dict[str, Any], max_body: int,
                  ahead: Sequence[dict[str, Any]] = ()) -> tuple[dict[str, Any], bytes]:
        """Answer ``req`` (reusing a request already sent ahead), sending ``ahead``."""
        try:
            sock = self._connect()
            if not (self._ahead and self._ahead[0][0] == req):
                while self._ahead:  # answers to guesses nobody needs now
                    self._answer(sock, self._ahead.popleft()[1])
                sock.sendall(encode(req))
                self._ahead.append((req, max_body))
            queued = [r for r, _ in self._ahead]
            for extra in ahead:
                if extra not in queued:
                    sock.sendall(encode(extra))
                    self._ahead.append((extra, max_body))
            return self._answer(sock, self._ahead.popleft()[1])
        except TimeoutError as exc:
            self._drop()
            raise FirmwareTimeout(f"{self.host}:{self.port} did not answer in "
                                  f"{self._timeout:g} s; retry later") from exc
        except FirmwareError:
            self._drop()
            raise
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            raise FirmwareTransportError(f"connection to {self.host}:{self.port} failed: "
                                         f"{exc}; check the server and its certificate") \
                from exc

    def request(self, req: dict[str, Any], *, max_body: int = MAX_BODY
                ) -> tuple[dict[str, Any], bytes]:
        """Send one request; return the response header and body.

        Raises:
            FirmwareTransportError: connection failed, closed, or the server said "busy"
                or "error"; FirmwareTimeout when it did not answer in time.
        """
        return self._checked(self._exchange(req, max_body))

    def _checked(self, answer: tuple[dict[str, Any], bytes]) -> tuple[dict[str, Any], bytes]:
        header, _ = answer
        status = header.get("status")
        if status in ("ok", "not-found"):
            return answer
        self._drop()
        raise FirmwareTransportError(f"{self.host}:{self.port} answered {status!r}: "
                                     f"{header.get('message', '')}")

    def fetch_metadata(self, name: str, *, max_length: int) -> bytes | None:
        """See :class:`~qpuos.firmware.client.Fetcher`."""
        header, body = self.request({"op": "meta", "name": name, "max": max_length},
                                    max_body=max_length)
        return None if header["status"] == "not-found" else body

    def fetch_chunk(self, sha256: str, *, offset: int, length: int) -> bytes:
        """See :class:`~qpuos.firmware.client.Fetcher` (pipelined: see the class)."""
        def ask(at: int) -> dict[str, Any]:
            return {"op": "chunk", "sha256": sha256, "offset": at, "length": length}

        header, body = self._checked(self._exchange(
            ask(offset), length,
            [ask(offset + k * length) for k in range(1, self._read_ahead + 1)]))
        if header["status"] == "not-found":
            raise FirmwareError(f"the server has no image {sha256[:16]}...; re-sign it")
        return body

    def hello(self, device_id: str, *, version: str) -> str | None:
        """Check in; returns the registry's target version for this device, if any."""
        header, _ = self.request({"op": "hello", "device_id": device_id,
                                  "version": version})
        target = header.get("target")
        return target if isinstance(target, str) else None

    def report(self, device_id: str, *, version: str, result: str) -> None:
        """Tell the server how the update ended."""
        self.request({"op": "report", "device_id": device_id, "version": version,
                      "result": result})

    def _drop(self) -> None:
        self._ahead.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._drop()
        self._closed = True

    def __enter__(self) -> TlsFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def update_device(device_dir: str | os.PathLike[str], url: str, *, device_id: str,
                  context: ssl.SSLContext, name: str = "controller",
                  timeout: float = 10.0, **agent_options: Any) -> UpdateResult:
    """One update over the network: check in, run the agent, report the outcome.

    A refused chain or image is reported as ``error: ClassName`` and re-raised; a
    transport failure is re-raised (the server may be gone; the next run resumes).

    Args:
        device_dir: the device folder (:func:`~qpuos.firmware.client.provision_device`).
        url: ``qfw://HOST:PORT``.
        device_id: this device's id in the fleet registry.
        context: from :func:`client_context`.
        name: the target name this device installs.
        timeout: seconds per answer.
        agent_options: passed to :class:`~qpuos.firmware.client.UpdateAgent`.

    Returns:
        The agent's result.
    """
    with TlsFetcher(url, context, timeout=timeout) as fetcher:
        agent = UpdateAgent(device_dir, fetcher, name=name, **agent_options)
        running = agent.running_version()
        allowed = fetcher.hello(device_id, version=running)  # the registry's target
        try:
            result = agent.update(allowed=allowed)
        except FirmwareTransportError:
            raise
        except FirmwareError as exc:
            fetcher.report(device_id, version=running, result=f"error: {type(exc).__name__}")
            raise
        # a held device did nothing: to the registry (and a rollout) it is "current"
        status = "current" if result.status == "held" else result.status
        fetcher.report(device_id, version=result.version, result=status)
        return result
