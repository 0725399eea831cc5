"""The fleet registry in PostgreSQL, for fleets served by several update servers.

Same rows and behaviour as :class:`~qpuos.firmware.fleet.SqliteRegistry`, over psycopg
3. Each thread has its own connection (psycopg connections serialise their calls, so one
shared connection would make the server's worker threads queue). Every write is one
transaction: check-ins are single upserts; a report locks its device row with ``SELECT
... FOR UPDATE`` before counting, and the rollout row ``FOR UPDATE`` before evaluating,
so concurrent writers from several hosts lose no update. A transaction that fails with a
serialisation failure or deadlock is retried with backoff.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from qpuos.errors import ClosedResourceError, QpuosInternalError, RegistryError
from qpuos.firmware import rollout as _rollout
from qpuos.firmware.fleet import DeviceRecord
from qpuos.firmware.rollout import RolloutState

__all__ = ["PostgresRegistry"]

_T = TypeVar("_T")

_SCHEMA = ("""
CREATE TABLE IF NOT EXISTS devices (
    device_id       TEXT PRIMARY KEY,
    current_version TEXT,
    target_version  TEXT,
    last_seen       DOUBLE PRECISION NOT NULL,
    last_result     TEXT,
    reports         INTEGER NOT NULL DEFAULT 0
)""", """
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT
)""", *_rollout.SCHEMA)

_COLUMNS = "device_id, current_version, target_version, last_seen, last_result, reports"
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected,
              pg_errors.UniqueViolation)
# every process creating the schema at once would race on the catalog: one at a time
_SCHEMA_LOCK = 0x71_70_75_6F_73_66_77  # "qpuosfw"


def _redact(url: str) -> str:
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.partition(':')[0]}:***@{tail}"


class PostgresRegistry:
    """A :class:`~qpuos.firmware.fleet.Registry` in a PostgreSQL database.

    Args:
        url: ``postgresql://user:password@host:port/dbname``.
        retries: attempts of a transaction that hits a serialisation failure.
        connect_timeout: seconds to wait for the server.

    Raises:
        RegistryError: the server cannot be reached or the schema not created.

    With a server (tests/firmware/test_fleet.py runs it against one) it behaves as
    :class:`~qpuos.firmware.fleet.SqliteRegistry`; without one it says so:

    >>> PostgresRegistry("postgresql://fleet:secret@127.0.0.1:1/fleet")
    Traceback (most recent call last):
    ...
    qpuos.errors.RegistryError: cannot open the registry postgresql://fleet:***@127.0.0.1:1/...
    """

    def __init__(self, url: str, *, retries: int = 50, connect_timeout: float = 5.0) -> None:
        self.url = url
        self._where = _redact(url)
        self._retries = retries
        self._timeout = connect_timeout
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

        def schema(cur: psycopg.Cursor[Any]) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                cur.execute(statement)
        self._write(schema)

    def _db(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise ClosedResourceError(f"the registry {self._where} is closed")
        db: psycopg.Connection[Any] | None = getattr(self._local, "db", None)
        if db is None or db.closed:
            try:
                db = psycopg.connect(self.url, connect_timeout=max(1, round(self._timeout)))
            except psycopg.Error as exc:
                raise RegistryError(f"cannot open the registry {self._where}: {exc}; "
                                    "check that the server runs and the URL") from exc
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def _write(self, body: Callable[[psycopg.Cursor[Any]], _T]) -> _T:
        """Run ``body`` in one transaction, retrying serialisation failures."""
        db = self._db()
        for attempt in range(self._retries):
            try:
                with db.transaction(), db.cursor() as cur:
                    return body(cur)
            except _RETRYABLE:
                time.sleep(min(0.2, 0.002 * 2 ** min(attempt, 7)) * random.random())
            except psycopg.Error as exc:
                raise RegistryError(f"registry {self._where}: {exc}") from exc
        raise RegistryError(f"registry {self._where}: {self._retries} attempts failed on "
                            "conflicts with other writers; retry later")

    _read = _write  # reads too run in a (short) transaction of their own

    @staticmethod
    def _exec(cur: psycopg.Cursor[Any]) -> _rollout.Exec:
        def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            return list(cur.fetchall()) if cur.description is not None else []
        return run

    @staticmethod
    def _row(cur: psycopg.Cursor[Any], device_id: str, *, lock: bool = False) -> \
            DeviceRecord | None:
        cur.execute(f"SELECT {_COLUMNS} FROM devices WHERE device_id = %s"
                    + (" FOR UPDATE" if lock else ""), (device_id,))
        row = cur.fetchone()
        return None if row is None else DeviceRecord(*row)

    def _must_row(self, cur: psycopg.Cursor[Any], device_id: str) -> DeviceRecord:
        rec = self._row(cur, device_id)
        if rec is None:
            raise QpuosInternalError(f"device {device_id!r} vanished inside a transaction")
        return rec

    def seen(self, device_id: str, *, version: str) -> DeviceRecord:
        """Record a check-in (inserts the device on first contact)."""
        def body(cur: psycopg.Cursor[Any]) -> DeviceRecord:
            cur.execute("INSERT INTO devices (device_id, current_version, target_version, "
                        "last_seen) VALUES (%s, %s, (SELECT value FROM settings WHERE key = "
                        "'default_target'), %s) ON CONFLICT (device_id) DO UPDATE SET "
                        "current_version = excluded.current_version, "
                        "last_seen = excluded.last_seen", (device_id, version, time.time()))
            return self._must_row(cur, device_id)
        return self._write(body)

    def report(self, device_id: str, *, version: str, result: str) -> DeviceRecord:
        """Record an outcome: the row is locked before it is counted (no lost update)."""
        def body(cur: psycopg.Cursor[Any]) -> DeviceRecord:
            cur.execute("INSERT INTO devices (device_id, last_seen) VALUES (%s, 0) "
                        "ON CONFLICT (device_id) DO NOTHING", (device_id,))
            old = self._row(cur, device_id, lock=True)
            count = (old.reports if old else 0) + 1
            cur.execute("UPDATE devices SET current_version = %s, last_seen = %s, "
                        "last_result = %s, reports = %s WHERE device_id = %s",
                        (version, time.time(), result, count, device_id))
            _rollout.on_report(self._exec(cur), device_id, version, result,
                               lock=" FOR UPDATE")
            return self._must_row(cur, device_id)
        return self._write(body)

    def set_target(self, version: str, *, devices: Sequence[str] | None = None) -> int:
        """Set the target version (when ``devices`` is None: of every device, and the
        default for new ones)."""
        def body(cur: psycopg.Cursor[Any]) -> int:
            if devices is None:
                cur.execute("INSERT INTO settings (key, value) VALUES ('default_target', %s)"
                            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (version,))
                cur.execute("UPDATE devices SET target_version = %s", (version,))
                return cur.rowcount
            for dev in devices:
                cur.execute("INSERT INTO devices (device_id, target_version, last_seen) "
                            "VALUES (%s, %s, 0) ON CONFLICT (device_id) DO UPDATE SET "
                            "target_version = excluded.target_version", (dev, version))
            return len(devices)
        return self._write(body)

    def get(self, device_id: str) -> DeviceRecord | None:
        """The device's row, or None."""
        return self._read(lambda cur: self._row(cur, device_id))

    def start_rollout(self, version: str, *, stages: Sequence[int],
                      max_failure_rate: float) -> RolloutState:
        """Start a staged rollout (see :mod:`qpuos.firmware.rollout`); returns its state.

        Raises:
            UsageError: bad stages or failure rate.
        """
        steps = _rollout.parse_stages(stages)

        def body(cur: psycopg.Cursor[Any]) -> RolloutState:
            ex = self._exec(cur)
            ex("LOCK TABLE rollout IN EXCLUSIVE MODE", ())
            _rollout.start(ex, version, steps, max_failure_rate)
            got = _rollout.state(ex)
            if got is None:
                raise QpuosInternalError("a rollout vanished inside its transaction")
            return got
        return self._write(body)

    def rollout(self) -> RolloutState | None:
        """The current rollout, or None."""
        return self._read(lambda cur: _rollout.state(self._exec(cur)))

    def devices(self) -> list[DeviceRecord]:
        """Every row, ordered by device id."""
        def body(cur: psycopg.Cursor[Any]) -> list[DeviceRecord]:
            cur.execute(f"SELECT {_COLUMNS} FROM devices ORDER BY device_id")
            return [DeviceRecord(*r) for r in cur.fetchall()]
        return self._read(body)

    def close(self) -> None:
        """Close every thread's connection (idempotent)."""
        with self._lock:
            self._closed = True
            for db in self._all:
                db.close()
            self._all.clear()

    def __enter__(self) -> PostgresRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
