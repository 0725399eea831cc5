"""The fleet registry: per device, the running and target versions, when it was last
seen and how its last update ended.

:class:`Registry` is the seam: the update server talks only to it. :class:`SqliteRegistry`
is the default, safe for several threads and processes on one host: WAL journal (readers
never block the writer), every write in ``BEGIN IMMEDIATE`` (the write lock is taken at
the start, so two read-modify-writes cannot interleave and lose an update), and a bounded
retry with backoff when another writer holds the lock past ``busy_timeout``.
:class:`~qpuos.firmware._pg.PostgresRegistry` serves fleets behind several update
servers; :func:`open_registry` picks the backend from its argument. Both hold staged
rollouts (:mod:`qpuos.firmware.rollout`) in the same transactions as the reports.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from qpuos.errors import ClosedResourceError, QpuosInternalError, RegistryError
from qpuos.firmware import rollout as _rollout
from qpuos.firmware.rollout import RolloutState

__all__ = ["DeviceRecord", "Registry", "SqliteRegistry", "open_registry"]

_T = TypeVar("_T")

_SCHEMA = ("""
CREATE TABLE IF NOT EXISTS devices (
    device_id       TEXT PRIMARY KEY,
    current_version TEXT,
    target_version  TEXT,
    last_seen       REAL NOT NULL,
    last_result     TEXT,
    reports         INTEGER NOT NULL DEFAULT 0
)""", """
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT
)""")


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One device's row: versions, last contact (epoch s), last result, report count."""

    device_id: str
    current_version: str | None
    target_version: str | None
    last_seen: float
    last_result: str | None
    reports: int


class Registry(Protocol):
    """What the update server needs from a fleet registry."""

    def seen(self, device_id: str, *, version: str) -> DeviceRecord:
        """Record that the device checked in running ``version``."""
        ...

    def report(self, device_id: str, *, version: str, result: str) -> DeviceRecord:
        """Record an update's outcome; the device now runs ``version``."""
        ...

    def set_target(self, version: str, *, devices: Sequence[str] | None = None) -> int:
        """Set the target version of ``devices`` (when None: all, and every device that
        checks in later); returns how many rows changed."""
        ...

    def get(self, device_id: str) -> DeviceRecord | None:
        """The device's row, or None."""
        ...

    def start_rollout(self, version: str, *, stages: Sequence[int],
                      max_failure_rate: float) -> RolloutState:
        """Replace any rollout with a staged one of ``version`` over the known devices."""
        ...

    def rollout(self) -> RolloutState | None:
        """The current rollout, or None."""
        ...

    def devices(self) -> list[DeviceRecord]:
        """Every row, by device id."""
        ...

    def close(self) -> None:
        """Release the connections (idempotent)."""
        ...

    def __enter__(self) -> Registry:
        """The registry itself."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Close it."""
        ...


class SqliteRegistry:
    """A :class:`Registry` in one SQLite file (see the module docstring).

    Args:
        path: the database file (created).
        retries: attempts of a write that finds the database locked.
        busy_timeout_ms: how long SQLite itself waits for the lock per attempt.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d, SqliteRegistry(os.path.join(d, "f.db")) as r:
    ...     _ = r.seen("dev-1", version="1.0")
    ...     r.report("dev-1", version="1.1", result="updated").current_version
    '1.1'
    """

    def __init__(self, path: str | Path, *, retries: int = 50,
                 busy_timeout_ms: int = 2000) -> None:
        self.path = Path(path)
        self._retries = retries
        self._busy = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._write(lambda db: [db.execute(statement)
                                for statement in (*_SCHEMA, *_rollout.SCHEMA)])

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise ClosedResourceError(f"the registry {self.path} is closed")
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def _connect(self) -> sqlite3.Connection:
        """A new connection in WAL mode. Switching a new file to WAL takes an exclusive
        lock that ``busy_timeout`` does not wait for, so several processes opening one
        registry at once (``qpuos fw serve --workers N``) retry here."""
        for attempt in range(self._retries):
            db = None
            try:
                db = sqlite3.connect(self.path, isolation_level=None,
                                     check_same_thread=False)
                db.execute(f"PRAGMA busy_timeout = {int(self._busy)}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                return db
            except sqlite3.Error as exc:
                if db is not None:
                    db.close()
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or attempt == self._retries - 1:
                    raise RegistryError(f"cannot open the registry {self.path}: {exc}; "
                                        "check the path and its permissions") from exc
                time.sleep(min(0.2, 0.002 * 2 ** min(attempt, 7)) * random.random())
        raise QpuosInternalError("the retry loop always returns or raises")

    def _write(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``body`` in one BEGIN IMMEDIATE transaction, retrying while locked."""
        db = self._db()
        for attempt in range(self._retries):
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise RegistryError(f"registry {self.path}: {exc}") from exc
                time.sleep(min(0.2, 0.002 * 2 ** min(attempt, 7)) * random.random())
                continue
            try:
                out = body(db)
                db.execute("COMMIT")
                return out
            except BaseException:
                db.execute("ROLLBACK")
                raise
        raise RegistryError(f"registry {self.path} stayed locked through {self._retries} "
                            "attempts; another writer holds it, retry later")

    def _row(self, db: sqlite3.Connection, device_id: str) -> DeviceRecord | None:
        row = db.execute("SELECT device_id, current_version, target_version, last_seen, "
                         "last_result, reports FROM devices WHERE device_id = ?",
                         (device_id,)).fetchone()
        return None if row is None else DeviceRecord(*row)

    def _must_row(self, db: sqlite3.Connection, device_id: str) -> DeviceRecord:
        rec = self._row(db, device_id)
        if rec is None:
            raise RegistryError(f"device {device_id!r} vanished inside a transaction")
        return rec

    def seen(self, device_id: str, *, version: str) -> DeviceRecord:
        """Record a check-in (inserts the device on first contact)."""
        def body(db: sqlite3.Connection) -> DeviceRecord:
            db.execute("INSERT INTO devices (device_id, current_version, target_version, "
                       "last_seen) VALUES (?, ?, (SELECT value FROM settings WHERE key = "
                       "'default_target'), ?) ON CONFLICT(device_id) DO UPDATE SET "
                       "current_version = excluded.current_version, "
                       "last_seen = excluded.last_seen", (device_id, version, time.time()))
            return self._must_row(db, device_id)
        return self._write(body)

    def report(self, device_id: str, *, version: str, result: str) -> DeviceRecord:
        """Record an outcome; counts reports with a read-modify-write (no lost update)."""
        def body(db: sqlite3.Connection) -> DeviceRecord:
            old = self._row(db, device_id)
            count = (old.reports if old else 0) + 1
            db.execute("INSERT INTO devices (device_id, current_version, last_seen, "
                       "last_result, reports) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT(device_id) DO UPDATE SET current_version = "
                       "excluded.current_version, last_seen = excluded.last_seen, "
                       "last_result = excluded.last_result, reports = excluded.reports",
                       (device_id, version, time.time(), result, count))
            _rollout.on_report(_exec(db), device_id, version, result, lock="")
            return self._must_row(db, device_id)
        return self._write(body)

    def set_target(self, version: str, *, devices: Sequence[str] | None = None) -> int:
        """Set the target version (when ``devices`` is None: of every device, and the
        default for new ones)."""
        def body(db: sqlite3.Connection) -> int:
            if devices is None:  # also the target of devices that check in later
                db.execute("INSERT INTO settings (key, value) VALUES ('default_target', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (version,))
                return db.execute("UPDATE devices SET target_version = ?",
                                  (version,)).rowcount
            n = 0
            for dev in devices:
                db.execute("INSERT INTO devices (device_id, target_version, last_seen) "
                           "VALUES (?, ?, 0) ON CONFLICT(device_id) DO UPDATE SET "
                           "target_version = excluded.target_version", (dev, version))
                n += 1
            return n
        return self._write(body)

    def get(self, device_id: str) -> DeviceRecord | None:
        """The device's row, or None."""
        return self._row(self._db(), device_id)

    def start_rollout(self, version: str, *, stages: Sequence[int],
                      max_failure_rate: float) -> RolloutState:
        """Start a staged rollout (see :mod:`qpuos.firmware.rollout`); returns its state.

        Raises:
            UsageError: bad stages or failure rate.
        """
        steps = _rollout.parse_stages(stages)

        def body(db: sqlite3.Connection) -> RolloutState:
            _rollout.start(_exec(db), version, steps, max_failure_rate)
            got = _rollout.state(_exec(db))
            if got is None:
                raise QpuosInternalError("a rollout vanished inside its transaction")
            return got
        return self._write(body)

    def rollout(self) -> RolloutState | None:
        """The current rollout, or None."""
        return _rollout.state(_exec(self._db()))

    def devices(self) -> list[DeviceRecord]:
        """Every row, ordered by device id."""
        rows = self._db().execute("SELECT device_id, current_version, target_version, "
                                  "last_seen, last_result, reports FROM devices "
                                  "ORDER BY device_id").fetchall()
        return [DeviceRecord(*r) for r in rows]

    def close(self) -> None:
        """Close every thread's connection (idempotent)."""
        with self._lock:
            self._closed = True
            for db in self._all:
                db.close()
            self._all.clear()

    def __enter__(self) -> SqliteRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exec(db: sqlite3.Connection) -> _rollout.Exec:
    def run(sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        return db.execute(sql, tuple(params)).fetchall()
    return run


def open_registry(where: str | Path) -> Registry:
    """Open the fleet registry ``where`` names: a ``postgresql://`` (or ``postgres://``)
    URL opens :class:`~qpuos.firmware._pg.PostgresRegistry`, anything else is a SQLite
    file path.

    Args:
        where: a PostgreSQL URL or a file path.

    Returns:
        The registry (close it, or use it as a context manager).

    Raises:
        RegistryError: the database cannot be opened.

    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     reg = open_registry(os.path.join(d, "f.db"))
    ...     kind = type(reg).__name__
    ...     reg.close()
    >>> kind
    'SqliteRegistry'
    """
    if isinstance(where, str) and where.startswith(("postgresql://", "postgres://")):
        from qpuos.firmware._pg import PostgresRegistry

        return PostgresRegistry(where)
    return SqliteRegistry(where)
