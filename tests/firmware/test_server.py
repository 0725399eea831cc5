"""The update server and its TLS client on loopback: protocol, lifecycle limits, faults,
and many devices at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qpuos.errors import FirmwareTransportError, SignatureError
from qpuos.firmware._wire import ALPN
from qpuos.firmware.certs import CertPaths, make_certs
from qpuos.firmware.client import UpdateAgent
from qpuos.firmware.fleet import SqliteRegistry
from qpuos.firmware.server import FirmwareServer, serve_in_thread, server_context
from qpuos.firmware.slots import SlotStore
from qpuos.firmware.transport import TlsFetcher, client_context, update_device
from tests.firmware._fw_world import CHUNK, World

CRASHED = 77


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    return make_certs(tmp_path_factory.mktemp("certs"), devices=["dev-1", "dev-2"])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[SqliteRegistry]:
    with SqliteRegistry(tmp_path / "fleet.db") as reg:
        yield reg


def _server(world: World, certs: CertPaths, registry: SqliteRegistry | None = None,
            **kw: object) -> FirmwareServer:
    mtls = kw.pop("mtls", False)
    ctx = server_context(certs.server_cert, certs.server_key,
                         client_ca=certs.ca if mtls else None)
    return FirmwareServer(world.repo, ctx, registry=registry, **kw)  # type: ignore[arg-type]


def _url(srv: FirmwareServer) -> str:
    return f"qfw://127.0.0.1:{srv.port}"


def _version(device: Path) -> tuple[str, bytes]:
    booted = SlotStore(device / "slots").boot()
    return booted.record.version, (device / "slots" / f"slot-{booted.slot}.img").read_bytes()


def test_update_over_tls_is_recorded_in_the_registry(world: World, certs: CertPaths,
                                                     registry: SqliteRegistry) -> None:
    registry.set_target("1.1.0", devices=["dev-1"])
    with serve_in_thread(_server(world, certs, registry)) as srv:
        result = update_device(world.device, _url(srv), device_id="dev-1",
                               context=client_context(certs.ca))
        assert srv.stats.refused_alpn == 0
    assert (result.status, result.version) == ("updated", "1.1.0")
    assert _version(world.device) == ("1.1.0", world.v2)
    rec = registry.get("dev-1")
    assert rec is not None
    assert (rec.current_version, rec.target_version, rec.last_result, rec.reports) == \
        ("1.1.0", "1.1.0", "updated", 1)


def test_a_refused_chain_is_reported_as_an_error(world: World, certs: CertPaths,
                                                 registry: SqliteRegistry) -> None:
    ts = world.repo / "metadata" / "timestamp.json"
    ts.write_bytes(ts.read_bytes().replace(b'"sig":"', b'"sig":"00', 1)[:-1] + b"}")
    with serve_in_thread(_server(world, certs, registry)) as srv, \
            pytest.raises(SignatureError):
        update_device(world.device, _url(srv), device_id="dev-9",
                      context=client_context(certs.ca))
    rec = registry.get("dev-9")
    assert rec is not None and (rec.current_version, rec.last_result) == \
        ("1.0.0", "error: SignatureError")


def _raw_tls(port: int, *, alpn: list[str] | None, tls12: bool = False) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(sock, server_hostname="localhost")


def test_other_alpn_or_none_is_refused_and_tls12_fails(world: World, certs: CertPaths) -> None:
    with serve_in_thread(_server(world, certs)) as srv:
        for alpn in (["http/1.1"], None):
            sock = _raw_tls(srv.port, alpn=alpn)
            sock.sendall(b"\0\0\0\2{}")
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(100) == b""  # closed without a byte of protocol
            sock.close()
        with pytest.raises(ssl.SSLError):
            _raw_tls(srv.port, alpn=[ALPN], tls12=True)
        good = _raw_tls(srv.port, alpn=[ALPN])
        assert (good.version(), good.selected_alpn_protocol()) == ("TLSv1.3", ALPN)
        good.close()
        assert srv.stats.refused_alpn == 2


def test_mutual_tls_requires_the_devices_own_certificate(world: World, certs: CertPaths,
                                                         registry: SqliteRegistry) -> None:
    with serve_in_thread(_server(world, certs, registry, mtls=True)) as srv:
        with pytest.raises(FirmwareTransportError), \
                TlsFetcher(_url(srv), client_context(certs.ca)) as anonymous:
            anonymous.hello("dev-1", version="1.0.0")
        cert, key = certs.devices["dev-1"]
        ctx = client_context(certs.ca, certfile=cert, keyfile=key)
        with TlsFetcher(_url(srv), ctx) as fetcher:
            fetcher.hello("dev-1", version="1.0.0")
            with pytest.raises(FirmwareTransportError, match=r"answered 'error': this "
                               r"connection's certificate is for 'dev-1', not 'dev-2'$"):
                fetcher.report("dev-2", version="1.0.0", result="updated")
    assert [r.device_id for r in registry.devices()] == ["dev-1"]


def test_handshake_and_idle_timeouts_close_the_connection(world: World,
                                                          certs: CertPaths) -> None:
    with serve_in_thread(_server(world, certs, handshake_timeout=0.2,
                                 idle_timeout=0.2)) as srv:
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        assert silent.recv(100) == b""  # no ClientHello: the server gives up
        silent.close()
        idle = _raw_tls(srv.port, alpn=[ALPN])
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            assert idle.recv(100) == b""
        idle.close()
        assert srv.stats.idle_closed == 1


def test_connection_limit_answers_busy(world: World, certs: CertPaths) -> None:
    with serve_in_thread(_server(world, certs, max_connections=2)) as srv:
        held = [TlsFetcher(_url(srv), client_context(certs.ca)) for _ in range(2)]
        for f in held:
            f.hello("dev-1", version="1.0.0")
        with pytest.raises(FirmwareTransportError, match=r"answered 'busy': connection "
                           r"limit reached; retry later$"), \
                TlsFetcher(_url(srv), client_context(certs.ca)) as third:
            third.hello("dev-1", version="1.0.0")
        for f in held:
            f.close()
        assert srv.stats.refused_busy == 1


def _server_process(world: World, certs: CertPaths) -> tuple[int, int]:
    """Fork a process that serves the repository; return its pid and port."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)

            async def main() -> None:
                srv = _server(world, certs)
                await srv.start()
                os.write(w, f"{srv.port}\n".encode())
                await asyncio.Event().wait()

            asyncio.run(main())
        finally:
            os._exit(1)
    os.close(w)
    with os.fdopen(r) as fh:
        return pid, int(fh.readline())


def test_server_killed_mid_transfer_then_the_device_resumes(world: World,
                                                            certs: CertPaths) -> None:
    pid, port = _server_process(world, certs)
    ctx = client_context(certs.ca)
    fetcher = TlsFetcher(f"qfw://127.0.0.1:{port}", ctx, read_ahead=0)  # exact counts
    inner = fetcher.fetch_chunk

    def dying(sha256: str, *, offset: int, length: int) -> bytes:
        if offset == 3 * CHUNK:  # the server process dies before the fourth chunk
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        return inner(sha256, offset=offset, length=length)

    fetcher.fetch_chunk = dying  # type: ignore[method-assign]
    with pytest.raises(FirmwareTransportError, match=r"closed the connection mid-answer|"
                       r"connection to .* failed"):
        UpdateAgent(world.device, fetcher).update()
    fetcher.close()
    assert _version(world.device) == ("1.0.0", world.v1)
    with serve_in_thread(_server(world, certs)) as again, \
            TlsFetcher(_url(again), ctx) as fetcher:
        result = UpdateAgent(world.device, fetcher).update()
    assert (result.status, result.chunks_resumed, result.chunks_fetched) == ("updated", 3, 3)
    assert _version(world.device) == ("1.1.0", world.v2)


def test_client_killed_mid_transfer_resumes(world: World, certs: CertPaths) -> None:
    with serve_in_thread(_server(world, certs)) as srv:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with TlsFetcher(_url(srv), client_context(certs.ca)) as f:
                    inner = f.fetch_chunk

                    def dying(sha256: str, *, offset: int, length: int) -> bytes:
                        if offset == 3 * CHUNK:  # killed while fetching the fourth chunk
                            os._exit(CRASHED)
                        return inner(sha256, offset=offset, length=length)

                    f.fetch_chunk = dying  # type: ignore[method-assign]
                    UpdateAgent(world.device, f).update()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == CRASHED
        assert _version(world.device) == ("1.0.0", world.v1)
        result = update_device(world.device, _url(srv), device_id="dev-1",
                               context=client_context(certs.ca))
    assert (result.chunks_resumed, result.chunks_fetched) == (3, 3)
    assert _version(world.device) == ("1.1.0", world.v2)


def _fleet(world: World, certs: CertPaths, registry: SqliteRegistry, n: int) -> None:
    devices = [world.device.with_name(f"dev-{i:03d}") for i in range(n)]
    for d in devices:
        shutil.copytree(world.device, d)
    errors: list[BaseException] = []
    results: dict[str, str] = {}
    ctx = client_context(certs.ca)
    with serve_in_thread(_server(world, certs, registry, max_connections=n + 8)) as srv:
        def one(dev: Path) -> None:
            try:
                r = update_device(dev, _url(srv), device_id=dev.name, context=ctx,
                                  timeout=60)
                results[dev.name] = r.status
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert errors == []
    assert {name for name, s in results.items() if s != "updated"} == set()
    assert len(results) == n
    rows = registry.devices()
    assert {r.device_id for r in rows} ^ {d.name for d in devices} == set()
    assert {r.device_id for r in rows
            if (r.current_version, r.last_result, r.reports) != ("1.1.0", "updated", 1)} \
        == set()
    wrong = {d.name for d in devices if _version(d) != ("1.1.0", world.v2)}
    assert wrong == set()


def test_64_concurrent_devices_update_with_nothing_lost(world: World, certs: CertPaths,
                                                        registry: SqliteRegistry) -> None:
    _fleet(world, certs, registry, 64)


@pytest.mark.slow
def test_256_concurrent_devices_update_with_nothing_lost(world: World, certs: CertPaths,
                                                         registry: SqliteRegistry) -> None:
    _fleet(world, certs, registry, 256)


def test_malformed_requests_get_an_error_and_no_file_outside_the_repo(
        world: World, certs: CertPaths) -> None:
    (world.repo / "secret.json").write_text("{}")
    with serve_in_thread(_server(world, certs)) as srv, \
            TlsFetcher(_url(srv), client_context(certs.ca)) as f:
        bad = [({"op": "format"}, r"unknown op 'format'; this server speaks "
                                  r"quantum-firmware/1\.0$"),
               ({"op": "meta", "name": "../secret.json", "max": 10}, r"bad metadata request"),
               ({"op": "meta", "name": ".x.json", "max": 10}, r"bad metadata request"),
               ({"op": "chunk", "sha256": "../x", "offset": 0, "length": 1},
                r"bad chunk request"),
               ({"op": "chunk", "sha256": "ab", "offset": 0, "length": 1 << 30},
                r"bad chunk request")]
        for req, message in bad:
            with pytest.raises(FirmwareTransportError, match=r"answered 'error': " + message):
                f.request(req)
        assert f.fetch_metadata("nothing.json", max_length=10) is None
        assert f.fetch_metadata("timestamp.json", max_length=10) is not None
        assert srv.stats.errors == {"_Reject": 5}


def test_pipelined_chunks_survive_a_refetch_out_of_order(world: World,
                                                         certs: CertPaths) -> None:
    """A corrupt chunk is re-asked while later chunks are already requested ahead: the
    unneeded answers are drained and the image still comes out whole."""
    with serve_in_thread(_server(world, certs)) as srv, \
            TlsFetcher(_url(srv), client_context(certs.ca), read_ahead=3) as fetcher:
        inner = fetcher.fetch_chunk
        corrupted = [0]

        def flaky(sha256: str, *, offset: int, length: int) -> bytes:
            data = inner(sha256, offset=offset, length=length)
            if offset == 2 * CHUNK and not corrupted[0]:
                corrupted[0] = 1
                return data[:-1] + bytes([data[-1] ^ 1])
            return data

        fetcher.fetch_chunk = flaky  # type: ignore[method-assign]
        result = UpdateAgent(world.device, fetcher).update()
        assert fetcher.fetch_metadata("timestamp.json", max_length=65536) is not None
        requests = srv.stats.requests
    assert (result.status, result.chunks_refetched, result.chunks_fetched) == ("updated", 1, 7)
    assert _version(world.device) == ("1.1.0", world.v2)
    assert requests > 7 + 4  # chunks plus metadata, and the guesses sent ahead
