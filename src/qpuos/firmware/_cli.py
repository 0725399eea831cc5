"""``qpuos fw``: the firmware layer's command group, for ``qpuos/cli.py`` to mount.

Thin, as the rest of the CLI: parse, call the library, print. Errors propagate to the
CLI's one handler (``ClassName: message``, exit 2). A local trial run::

    qpuos fw keygen fw-repo
    qpuos fw certs fw-certs
    qpuos fw sign v1.bin --version 1.0.0 --repo fw-repo
    qpuos fw provision dev1 --root fw-repo/metadata/root.json --image v1.bin --version 1.0.0
    qpuos fw serve --repo fw-repo --certs fw-certs --port 8443 &
    qpuos fw push v2.bin --version 1.1.0 --repo fw-repo
    # or staged: 10 % of the fleet first, halting if over 20 % of a stage fails
    qpuos fw push v3.bin --version 1.2.0 --stages 10,50,100 --max-failure-rate 0.2
    qpuos fw update --server qfw://127.0.0.1:8443 --device-id dev1 --device-dir dev1 \\
        --ca fw-certs/ca.pem
    qpuos fw status
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from qpuos._argtypes import positive_float, positive_int

__all__ = ["add_fw_parser"]

_REGISTRY = "fw-repo/fleet.db"
_REGISTRY_HELP = (f"SQLite file, or a postgresql:// URL for several servers (default "
                  f"{_REGISTRY})")


def _cmd_keygen(args: argparse.Namespace) -> int:
    from qpuos.firmware.repo import keygen

    root = keygen(args.repo, root_keys=args.root_keys, root_threshold=args.root_threshold)
    print(f"created {args.repo}: root v{root.version}, keys in {Path(args.repo, 'keys')} "
          "(keep root-*.pem offline)")
    for role, rk in root.roles.items():
        ids = ", ".join(k[:12] for k in rk.keyids)
        print(f"  {role:<9} threshold {rk.threshold} of {len(rk.keyids)}: {ids}")
    return 0


def _cmd_certs(args: argparse.Namespace) -> int:
    from qpuos.firmware.certs import make_certs

    paths = make_certs(args.dir, hosts=args.host or ("localhost", "127.0.0.1", "::1"),
                       devices=args.device or ())
    print(f"wrote {paths.ca}, {paths.server_cert}, {paths.server_key}"
          + "".join(f", {c}, {k}" for c, k in paths.devices.values()))
    return 0


def _sign(args: argparse.Namespace) -> Any:
    from qpuos.firmware.repo import sign_image

    entry = sign_image(args.repo, args.image, version=args.version, name=args.name,
                       chunk_size=args.chunk_size)
    print(f"signed {args.image} as {entry.name} {entry.version}: {entry.length} bytes, "
          f"{len(entry.chunks)} chunks, sha256 {entry.sha256[:16]}...")
    return entry


def _cmd_sign(args: argparse.Namespace) -> int:
    _sign(args)
    return 0


def _where(registry: str) -> str:
    """The registry for messages: a URL's password is not printed."""
    head, at, tail = registry.rpartition("@")
    return f"{head.partition('://')[0]}://...@{tail}" if at and "://" in head else registry


def _cmd_push(args: argparse.Namespace) -> int:
    from qpuos.errors import UsageError
    from qpuos.firmware.fleet import open_registry
    from qpuos.firmware.rollout import parse_stages

    if args.stages is None and args.max_failure_rate is not None:
        raise UsageError("--max-failure-rate applies to a staged rollout: add --stages")
    if args.stages is not None and args.device:
        raise UsageError("a staged rollout covers the whole fleet: drop --device")
    stages = parse_stages(args.stages) if args.stages is not None else None
    rate = 0.2 if args.max_failure_rate is None else args.max_failure_rate
    if not 0.0 <= rate < 1.0:
        raise UsageError(f"--max-failure-rate {rate} is outside [0, 1); give a fraction "
                         "such as 0.2")
    entry = _sign(args)
    with open_registry(args.registry) as reg:
        if stages is not None:
            state = reg.start_rollout(entry.version, stages=stages, max_failure_rate=rate)
            print(f"rollout of {entry.version} over {state.members} device(s) in stages "
                  f"{','.join(map(str, stages))}% (halts above {rate:.0%} failures): "
                  f"{_rollout_line(state)}")
            return 0
        n = reg.set_target(entry.version, devices=args.device or None)
    print(f"target {entry.version} set for {n} device(s) in {_where(args.registry)}")
    return 0


def _rollout_line(state: Any) -> str:
    if state.state == "done":
        return f"done, all {len(state.stages)} stages complete"
    line = (f"{state.state}, stage {state.stage + 1} of {len(state.stages)} "
            f"({state.stages[state.stage]}%): {state.succeeded} of {state.stage_size} "
            f"updated, {state.failed} failed")
    return f"{line}; {state.reason}" if state.reason else line


def _cmd_provision(args: argparse.Namespace) -> int:
    from qpuos.firmware.client import provision_device
    from qpuos.firmware.image import describe_image

    image = Path(args.image).read_bytes()
    target = describe_image(image, name=args.name, version=args.version)
    provision_device(args.device_dir, Path(args.root).read_bytes(), image, target)
    print(f"provisioned {args.device_dir}: {args.name} {args.version} in slot a")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from qpuos.errors import UsageError
    from qpuos.firmware.fleet import open_registry
    from qpuos.firmware.server import FirmwareServer, server_context

    if args.workers > 1 and args.port == 0:
        raise UsageError("--workers > 1 shares one port: give it with --port")
    certs = Path(args.certs)
    ctx = server_context(certs / "server.pem", certs / "server.key",
                         client_ca=certs / "ca.pem" if args.mtls else None)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # stop cleanly, as a daemon should
            loop.add_signal_handler(sig, stop.set)
        with open_registry(args.registry) as reg:
            async with FirmwareServer(
                    args.repo, ctx, registry=reg, host=args.host, port=args.port,
                    handshake_timeout=args.handshake_timeout,
                    idle_timeout=args.idle_timeout, max_connections=args.max_connections,
                    reuse_port=args.workers > 1) as srv:
                # one write per line: the workers share stdout, and unbuffered
                # (PYTHONUNBUFFERED) print() writes the text and its newline apart
                sys.stdout.write(f"serving {args.repo} on qfw://{args.host}:{srv.port} "
                                 f"(pid {os.getpid()}, TLS 1.3, ALPN quantum-firmware/1.0"
                                 f"{', mutual TLS' if args.mtls else ''})\n")
                sys.stdout.flush()
                await stop.wait()

    children = []
    for _ in range(args.workers - 1):  # SO_REUSEPORT: the kernel spreads connections
        pid = os.fork()
        if pid == 0:  # a worker: never returns into the caller
            code = 1
            try:
                asyncio.run(run())
                code = 0
            except BaseException as exc:  # say why, as the parent's handler would
                print(f"qpuos fw serve worker {os.getpid()}: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        children.append(pid)
    try:
        asyncio.run(run())
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    from qpuos.firmware.transport import client_context, update_device

    ctx = client_context(args.ca, certfile=args.cert, keyfile=args.key)
    result = update_device(args.device_dir or args.device_id, args.server, device_id=args.device_id,
                           context=ctx, name=args.name, timeout=args.timeout)
    print(f"{args.device_id}: {result.status}, running {result.version} (was "
          f"{result.previous}); chunks fetched {result.chunks_fetched}, resumed "
          f"{result.chunks_resumed}, re-fetched {result.chunks_refetched}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    import time

    from qpuos.firmware.fleet import open_registry

    if args.device_dir:
        from qpuos.firmware.slots import SlotStore

        state = SlotStore(Path(args.device_dir) / "slots").state()
        print(json.dumps(state.to_json(), indent=2, sort_keys=True))
        return 0
    url = args.registry.startswith(("postgresql://", "postgres://"))
    if not url and not Path(args.registry).exists():
        print(f"no registry at {args.registry}; `qpuos fw serve` or `push` creates it",
              file=sys.stderr)
        return 0
    with open_registry(args.registry) as reg:
        rows = reg.devices()
        rollout = reg.rollout()
    if args.json:
        print(json.dumps({
            "devices": [{"device_id": r.device_id, "current": r.current_version,
                         "target": r.target_version, "last_seen": r.last_seen,
                         "last_result": r.last_result, "reports": r.reports}
                        for r in rows],
            "rollout": None if rollout is None else {
                "version": rollout.version, "stages": list(rollout.stages),
                "max_failure_rate": rollout.max_failure_rate, "stage": rollout.stage,
                "state": rollout.state, "reason": rollout.reason,
                "members": rollout.members, "stage_size": rollout.stage_size,
                "succeeded": rollout.succeeded, "failed": rollout.failed}}, indent=2))
        return 0
    if rollout is not None:
        print(f"rollout {rollout.version}: {_rollout_line(rollout)}")
    print(f"{'DEVICE':<16} {'CURRENT':<10} {'TARGET':<10} {'LAST SEEN':<20} LAST RESULT")
    for r in rows:
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.last_seen)) \
            if r.last_seen else "never"
        print(f"{r.device_id:<16} {r.current_version or '-':<10} "
              f"{r.target_version or '-':<10} {seen:<20} {r.last_result or '-'}")
    return 0


def _image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the firmware image file")
    p.add_argument("--version", required=True, help="firmware version, dotted integers")
    p.add_argument("--repo", default="fw-repo", help="repository folder (default fw-repo)")
    p.add_argument("--name", default="controller", help="target name (default controller)")
    p.add_argument("--chunk-size", type=positive_int, default=1 << 20,
                   help="bytes per verified chunk (default 1 MiB)")


def add_fw_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``fw`` and its commands (keygen, certs, sign, push, provision, serve, update,
    status) to ``subparsers``; each leaf sets ``func`` to its handler.

    >>> p = argparse.ArgumentParser(prog="qpuos")
    >>> _ = add_fw_parser(p.add_subparsers(dest="command"))
    >>> a = p.parse_args(["fw", "sign", "v2.bin", "--version", "1.1.0"])
    >>> a.image, a.version, a.repo, a.func.__name__
    ('v2.bin', '1.1.0', 'fw-repo', '_cmd_sign')
    """
    fw: argparse.ArgumentParser = subparsers.add_parser(
        "fw", help="signed firmware updates over TLS 1.3 (repository, server, device)",
        description="Signed firmware updates: TUF-style metadata (Ed25519), a TLS 1.3 "
                    "server, and a device agent with A/B slots and automatic rollback.")
    sub = fw.add_subparsers(dest="fw_command", metavar="WHAT", required=True)

    k = sub.add_parser("keygen", help="create a repository with fresh signing keys")
    k.add_argument("repo", nargs="?", default="fw-repo", help="folder (default fw-repo)")
    k.add_argument("--root-keys", type=positive_int, default=1, help="root keys (default 1)")
    k.add_argument("--root-threshold", type=positive_int, default=1,
                   help="root signatures needed (default 1)")
    k.set_defaults(func=_cmd_keygen)

    c = sub.add_parser("certs", help="make a local CA, server and device certificates")
    c.add_argument("dir", nargs="?", default="fw-certs", help="folder (default fw-certs)")
    c.add_argument("--host", action="append", help="server name or address (repeatable; "
                   "default localhost, 127.0.0.1, ::1)")
    c.add_argument("--device", action="append", help="device id for a client certificate "
                   "(repeatable)")
    c.set_defaults(func=_cmd_certs)

    s = sub.add_parser("sign", help="sign an image into the repository")
    _image_args(s)
    s.set_defaults(func=_cmd_sign)

    p = sub.add_parser("push", help="sign an image and make it the fleet's target")
    _image_args(p)
    p.add_argument("--registry", default=_REGISTRY, help=_REGISTRY_HELP)
    p.add_argument("--device", action="append", help="only these devices (repeatable)")
    p.add_argument("--stages", default=None, metavar="PCT,...",
                   help="staged rollout over the known devices: cumulative percentages "
                        "ending at 100, e.g. 10,50,100; a stage opens when the previous "
                        "one's devices report success")
    p.add_argument("--max-failure-rate", type=float, default=None, metavar="F",
                   help="halt the staged rollout when more than this fraction of a "
                        "stage's devices fail (default 0.2)")
    p.set_defaults(func=_cmd_push)

    v = sub.add_parser("provision", help="set up a device folder with a factory image")
    v.add_argument("device_dir", metavar="DEVICE_DIR")
    v.add_argument("--root", required=True, help="the repository's metadata/root.json")
    v.add_argument("--image", required=True, help="the factory image")
    v.add_argument("--version", required=True, help="its firmware version")
    v.add_argument("--name", default="controller", help="target name (default controller)")
    v.set_defaults(func=_cmd_provision)

    r = sub.add_parser("serve", help="serve the repository over TLS 1.3")
    r.add_argument("--repo", default="fw-repo", help="repository folder (default fw-repo)")
    r.add_argument("--certs", default="fw-certs", help="from `qpuos fw certs` (default "
                   "fw-certs)")
    r.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    r.add_argument("--port", type=int, default=8443, help="port (default 8443; 0: any)")
    r.add_argument("--registry", default=_REGISTRY, help=_REGISTRY_HELP)
    r.add_argument("--mtls", action="store_true", help="require device certificates")
    r.add_argument("--workers", type=positive_int, default=1,
                   help="processes sharing the port with SO_REUSEPORT (default 1)")
    r.add_argument("--handshake-timeout", type=positive_float, default=10.0, help="seconds")
    r.add_argument("--idle-timeout", type=positive_float, default=30.0, help="seconds")
    r.add_argument("--max-connections", type=positive_int, default=1024,
                   help="connections served at once per worker (default 1024)")
    r.set_defaults(func=_cmd_serve)

    u = sub.add_parser("update", help="update a device from a server")
    u.add_argument("--server", required=True, metavar="URL", help="qfw://HOST:PORT")
    u.add_argument("--device-id", required=True, metavar="ID", help="id in the registry")
    u.add_argument("--device-dir", default=None, metavar="DIR",
                   help="device folder (default: the device id)")
    u.add_argument("--ca", default="fw-certs/ca.pem", help="CA of the server certificate")
    u.add_argument("--cert", default=None, help="device certificate (mutual TLS)")
    u.add_argument("--key", default=None, help="device key (mutual TLS)")
    u.add_argument("--name", default="controller", help="target name (default controller)")
    u.add_argument("--timeout", type=positive_float, default=10.0, help="seconds per answer")
    u.set_defaults(func=_cmd_update)

    t = sub.add_parser("status", help="the fleet registry, or one device's slots")
    t.add_argument("--registry", default=_REGISTRY, help=_REGISTRY_HELP)
    t.add_argument("--device-dir", default=None, help="show this device's boot pointer")
    t.add_argument("--json", action="store_true", help="print JSON")
    t.set_defaults(func=_cmd_status)
    return fw
