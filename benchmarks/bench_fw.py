"""``qpuos bench fw``: the firmware update server beside ``openssl s_server``, same run.

Everything on loopback, client and servers sharing this machine's CPUs:

1. Full TLS 1.3 handshakes at concurrency 16 and 256. One asyncio load generator opens
   connections (TCP connect + TLS 1.3 handshake, X25519, ALPN quantum-firmware/1.0),
   makes one request-response exchange (so the server has finished its side), and
   closes. Servers: qpuos's :class:`FirmwareServer` (``--workers`` processes sharing
   the port with SO_REUSEPORT) and the anchor ``openssl s_server -WWW`` with the same
   certificate, group and ALPN (one ``GET`` per connection). Reported: handshakes/s
   (connections / wall time) and handshake latency p50/p99 (connect start to the
   handshake's end, so at concurrency 256 it includes the accept queue).
2. The C pair: ``openssl s_time -new -tls1_3`` against ``openssl s_server`` (sequential,
   the issue's 437/s anchor), and ``-reuse`` (resumed sessions).
3. Resumed handshakes against qpuos: a blocking client reusing its TLS 1.3 session
   ticket, sequential (compare with ``s_time -reuse``).
4. Bulk: one 256 MiB image (``--quick``: 32 MiB) fetched over one connection in 1 MiB
   chunks with :class:`TlsFetcher` (two requests in flight ahead), each chunk hashed as
   it arrives (what the agent does, minus the disk); the anchor is ``openssl s_client``
   fetching the same file from ``s_server -WWW`` to /dev/null.
5. A fleet: 256 devices (``--quick``: 32) updating at once through ``update_device``
   (TLS, verified metadata chain, chunked download, A/B install, registry report).

Targets (issue [firmware] 10): qpuos handshakes/s at c=16 and c=256 >= the openssl
``s_time -new`` rate of this run; bulk >= 500 MiB/s; zero failed updates among the
concurrent devices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import BenchRecord

ALPN = "quantum-firmware/1.0"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    for _ in range(400):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.025)
    raise RuntimeError(f"nothing listens on port {port}")


def _start_qpuos(repo: Path, certs: Path, registry: Path, workers: int
                 ) -> tuple[list[subprocess.Popen[bytes]], int]:
    port = _free_port()
    cmd = [sys.executable, "-c",
           "import sys, argparse; from qpuos.firmware._cli import add_fw_parser; "
           "p = argparse.ArgumentParser(); add_fw_parser(p.add_subparsers()); "
           "a = p.parse_args(sys.argv[1:])\ntry: a.func(a)\nexcept KeyboardInterrupt: pass",
           "fw", "serve", "--repo", str(repo), "--certs", str(certs), "--port", str(port),
           "--registry", str(registry), "--workers", str(workers),
           "--max-connections", "4096"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _wait_port(port, proc)
    time.sleep(0.3)  # let every worker bind before load starts
    return [proc], port


def _start_openssl(certs: Path, www: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", str(port), "-cert", str(certs / "server.pem"),
         "-key", str(certs / "server.key"), "-tls1_3", "-groups", "X25519",
         "-alpn", ALPN, "-WWW", "-quiet", "-naccept", "1000000"],
        cwd=www, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL)
    _wait_port(port, proc)
    return proc, port


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _client_ctx(ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([ALPN])
    ctx.load_verify_locations(ca)
    return ctx


async def _load(port: int, ctx: ssl.SSLContext, *, n: int, concurrency: int,
                request: bytes, qpuos: bool) -> tuple[list[float], float, int]:
    """n connections, ``concurrency`` at a time; (handshake latencies s, wall s, errors)."""
    lat: list[float] = []
    errors = 0
    left = n

    async def worker() -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
                lat.append(time.perf_counter() - t0)
                writer.write(request)
                if qpuos:
                    head = await reader.readexactly(4)
                    hdr = await reader.readexactly(int.from_bytes(head, "big"))
                    if b'"ok"' not in hdr:
                        errors += 1
                else:
                    await reader.read(65536)
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()
            except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, time.perf_counter() - t0, errors


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _s_time(port: int, mode: str, seconds: int) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", mode,
                          "-tls1_3", "-time", str(seconds)],
                         capture_output=True, text=True, check=False).stdout
    wall = time.perf_counter() - t0
    m = re.search(r"(\d+) connections in [\d.]+s", out)
    return int(m.group(1)) / wall if m else float("nan")


def _resumed_qpuos(port: int, ctx: ssl.SSLContext, n: int) -> tuple[list[float], int]:
    from qpuos.firmware._wire import encode

    session = None
    lat: list[float] = []
    resumed = 0
    req = encode({"op": "meta", "name": "timestamp.json", "max": 65536})
    for _ in range(n + 1):
        t0 = time.perf_counter()
        raw = socket.create_connection(("127.0.0.1", port))
        sock = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        dt = time.perf_counter() - t0
        sock.sendall(req)
        sock.recv(65536)  # the answer; the session tickets arrived before it
        if session is not None:
            lat.append(dt)
            resumed += sock.session_reused
        session = sock.session
        sock.close()
    return lat, resumed


def _bulk_qpuos(port: int, ca: Path, sha: str, length: int) -> float:
    from qpuos.firmware.transport import TlsFetcher, client_context

    chunk = 1 << 20
    with TlsFetcher(f"qfw://127.0.0.1:{port}", client_context(ca), timeout=60) as f:
        t0 = time.perf_counter()
        for off in range(0, length, chunk):
            data = f.fetch_chunk(sha, offset=off, length=min(chunk, length - off))
            hashlib.sha256(data).digest()
        return length / (time.perf_counter() - t0) / 2**20


def _bulk_openssl(port: int, name: str, length: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3",
                    "-quiet", "-alpn", ALPN], input=f"GET /{name} HTTP/1.0\r\n\r\n".encode(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return length / (time.perf_counter() - t0) / 2**20


def _fleet(base: Path, repo: Path, port: int, ca: Path, n: int) -> tuple[int, float]:
    from qpuos.firmware.client import provision_device
    from qpuos.firmware.image import describe_image
    from qpuos.firmware.transport import client_context, update_device

    v1 = (base / "v1.bin").read_bytes()
    t1 = describe_image(v1, name="controller", version="1.0.0")
    root = (repo / "metadata" / "1.root.json").read_bytes()
    devices = [base / "fleet" / f"dev-{i:03d}" for i in range(n)]
    for d in devices:
        provision_device(d, root, v1, t1)
    ctx = client_context(ca)
    failed = [0]

    def one(dev: Path) -> None:
        try:
            r = update_device(dev, f"qfw://127.0.0.1:{port}", device_id=dev.name,
                              context=ctx, timeout=120)
            failed[0] += r.status != "updated"
        except Exception:
            failed[0] += 1

    threads = [threading.Thread(target=one, args=(d,)) for d in devices]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed[0], time.perf_counter() - t0


def main(argv: list[str]) -> int:
    """Entry point of ``qpuos bench fw``."""
    p = argparse.ArgumentParser(prog="qpuos bench fw", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, default=Path("out/bench_fw.json"),
                   help="where to write the results (default out/bench_fw.json)")
    p.add_argument("--quick", action="store_true", help="small counts (seconds)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="qpuos server processes sharing the port (default: CPU count)")
    args = p.parse_args(argv)
    if shutil.which("openssl") is None:
        print("UsageError: the anchor needs the openssl command", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    from qpuos.firmware import repo as fwrepo
    from qpuos.firmware.certs import make_certs

    console = Console()
    n_hs = {16: 400, 256: 1024} if not args.quick else {16: 100, 256: 256}
    bulk_mib = 32 if args.quick else 256
    fleet_n = 32 if args.quick else 256
    s_time_s = 2 if args.quick else 5
    rec = BenchRecord("fw", packages=("cryptography",))
    results: list[tuple[str, str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="qpuos-bench-fw-") as tmp:
        base = Path(tmp)
        certs = make_certs(base / "certs")
        repo = base / "repo"
        fwrepo.keygen(repo)
        small = os.urandom(256 * 1024)
        (base / "v1.bin").write_bytes(small)
        (base / "v2.bin").write_bytes(os.urandom(256 * 1024))
        fwrepo.sign_image(repo, base / "v2.bin", version="1.1.0", chunk_size=64 * 1024)
        big = base / "bulk.bin"
        with open(big, "wb") as fh:
            for _ in range(bulk_mib):
                fh.write(os.urandom(1 << 20))
        bulk = fwrepo.sign_image(repo, big, version="1.0.0", name="bulk")
        big.unlink()
        ctx = _client_ctx(certs.ca)
        q_procs, q_port = _start_qpuos(repo, base / "certs", base / "fleet.db", args.workers)
        o_proc, o_port = _start_openssl(base / "certs", repo / "images")
        try:
            from qpuos.firmware._wire import encode

            q_req = encode({"op": "meta", "name": "timestamp.json", "max": 65536})
            o_req = b"GET /none HTTP/1.0\r\n\r\n"
            for conc, n in n_hs.items():
                for impl, port, req, is_q in (("qpuos", q_port, q_req, True),
                                              ("openssl s_server", o_port, o_req, False)):
                    lat, wall, errs = asyncio.run(_load(port, ctx, n=n, concurrency=conc,
                                                        request=req, qpuos=is_q))
                    rate = len(lat) / wall
                    results += [(impl, f"full handshakes/s c={conc}", rate, "1/s"),
                                (impl, f"handshake p50 c={conc}", _pct(lat, .5) * 1e3, "ms"),
                                (impl, f"handshake p99 c={conc}", _pct(lat, .99) * 1e3, "ms"),
                                (impl, f"errors c={conc}", errs, "count")]
            s_new = _s_time(o_port, "-new", s_time_s)
            s_reuse = _s_time(o_port, "-reuse", s_time_s)
            results += [("openssl s_time + s_server", "full handshakes/s c=1", s_new, "1/s"),
                        ("openssl s_time + s_server", "resumed handshakes/s c=1", s_reuse,
                         "1/s")]
            lat, resumed = _resumed_qpuos(q_port, ctx, 100 if args.quick else 400)
            results += [("qpuos", "resumed handshake p50 c=1", _pct(lat, .5) * 1e3, "ms"),
                        ("qpuos", "resumed handshake p99 c=1", _pct(lat, .99) * 1e3, "ms"),
                        ("qpuos", "resumed share", resumed / max(1, len(lat)), "ratio")]
            length = bulk.length
            q_bulk = _bulk_qpuos(q_port, certs.ca, bulk.sha256, length)
            o_bulk = _bulk_openssl(o_port, bulk.sha256, length)
            results += [("qpuos", f"bulk {bulk_mib} MiB", q_bulk, "MiB/s"),
                        ("openssl s_server + s_client", f"bulk {bulk_mib} MiB", o_bulk,
                         "MiB/s")]
            failed, wall = _fleet(base, repo, q_port, certs.ca, fleet_n)
            results += [("qpuos", f"failed updates of {fleet_n} concurrent", failed, "count"),
                        ("qpuos", f"fleet of {fleet_n} updated in", wall, "s")]
        finally:
            _stop([*q_procs, o_proc])
    for impl, metric, value, unit in results:
        rec.add(impl, metric, float(value), unit)
    get = {(i, m): v for i, m, v, _ in results}
    for conc in n_hs:
        rec.target(f"qpuos full handshakes/s c={conc} >= openssl s_time -new",
                   get[("qpuos", f"full handshakes/s c={conc}")], s_new, "1/s", at_most=False)
    rec.target("bulk throughput", q_bulk, 500.0, "MiB/s", at_most=False)
    rec.target(f"failed updates among {fleet_n} concurrent clients", failed, 0, "count")
    table = Table(title=f"qpuos bench fw ({args.workers} server worker(s), "
                        f"load {os.getloadavg()[0]:.2f})")
    for col in ("impl", "metric", "value", "unit"):
        table.add_column(col)
    for impl, metric, value, unit in results:
        table.add_row(impl, metric, f"{value:.4g}", unit)
    console.print(table)
    rec.print_targets(console)
    rec.write(args.json, extra={"workers": args.workers, "quick": args.quick})
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
