"""Engine, connections and migrations for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

from soap_service.persistence.connections import KEPT_CONNECTIONS, KeptConnections, alive
from soap_service.persistence.store import SqlStore
from soap_service.persistence.transactions import WriteLock

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# A pooled PostgreSQL connection unused this long is checked before use.
PING_AFTER_IDLE_SECONDS = 10.0


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.write_lock: WriteLock = _no_write_lock
        if self.is_sqlite:
            path = sqlite_path(url)
            self.engine = create_engine(url, connect_args={"timeout": 30})
            _configure_sqlite(self.engine)
            if path is not None:
                self.write_lock = SqliteWriteLock(path)
        else:
            # The connections kept aside for SendMessage (KeptConnections) come on top:
            # they must not leave other queries waiting for the pool.
            self.engine = create_engine(url, pool_size=5, max_overflow=5 + KEPT_CONNECTIONS)
            _ping_idle_connections(self.engine)
        self.kept = KeptConnections(
            self.engine, ping_after=None if self.is_sqlite else PING_AFTER_IDLE_SECONDS
        )

    def store(self) -> SqlStore:
        """A store for one request; close it when the request is done."""
        return SqlStore(self.engine, self.write_lock, self.kept)

    def ping(self) -> None:
        """Raises Unavailable if the database does not answer (for health checks)."""
        store = self.store()
        try:
            store.ping()
        finally:
            store.close()

    def upgrade(self, revision: str = "head") -> None:
        command.upgrade(alembic_config(self.engine), revision)

    def downgrade(self, revision: str) -> None:
        command.downgrade(alembic_config(self.engine), revision)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def dispose(self) -> None:
        self.kept.close()
        self.engine.dispose()


def _no_write_lock(*, synced: bool = True) -> AbstractContextManager[None]:
    # PostgreSQL: its own locks order the writers, and each commit says how durable it is.
    return nullcontext()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def sqlite_path(url: str) -> Path | None:
    path = url.split("///", 1)[-1]
    if not path or path == ":memory:":
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(path)


class SqliteWriteLock:
    """One SQLite writer at a time across this host's threads and processes, and every
    write on disk before its writer goes on.

    SQLite's own busy handler lets waiting writers sleep 1, 2, 5 ... 100 ms between tries,
    which leaves the machine idle while requests queue; a lock wakes the next writer as
    soon as the previous one commits. An exclusive flock (released by the kernel if the
    holder dies) orders processes, a thread lock orders the threads of one process.

    Durability without holding the lock for the disk: connections run with
    synchronous=NORMAL, so COMMIT writes its WAL frames and returns without waiting for
    the disk; the writer then syncs the WAL file itself, after releasing the lock. Its
    caller (SendMessage's answer) still waits for the disk, but the next writer does not,
    and one sync covers every commit written before it. A commit's frames are in the WAL
    before the lock is released, and SQLite rewrites the WAL only after a checkpoint has
    copied them into the database file and synced it, so once the sync returns the
    commit is on disk in one file or the other.
    """

    def __init__(self, database: Path) -> None:
        self._path = database.with_name(database.name + ".write-lock")
        self._wal = database.with_name(database.name + "-wal")
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._wal_inode: int | None = None

    @contextmanager
    def __call__(self, *, synced: bool = True) -> Iterator[None]:
        """`synced=False`: a write whose loss with the host (never with the process: its
        frames are in the WAL) costs nothing but a repetition, such as a delivery
        outcome, skips the sync; the next synced write covers it too."""
        with self._thread_lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        if synced:
            self._sync_wal()  # only after a write that did not fail

    def _file(self) -> int:
        # A descriptor inherited through fork() shares its lock with the parent.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def _sync_wal(self) -> None:
        try:
            # Opened each time: the last connection to close deletes the WAL, and the
            # next one creates a new file.
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed into the database file (and synced) and removed
        try:
            os.fdatasync(fd)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode != self._wal_inode:
            # A new WAL file: its directory entry must reach the disk too.
            directory = os.open(self._wal.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._wal_inode = inode


def _ping_idle_connections(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle: under load a connection is
    reused within milliseconds and a ping per request would cost a round trip each time.
    A connection found dead is replaced by the pool (DisconnectionError), and a failure in
    use invalidates the whole pool, so a PostgreSQL restart costs at most one request."""

    @event.listens_for(engine, "checkin")
    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        record.info["last_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        last_used = record.info.get("last_used")
        if last_used is None or time.monotonic() - last_used < PING_AFTER_IDLE_SECONDS:
            return
        if not alive(dbapi_connection):
            raise DisconnectionError("pooled connection is dead")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the one writer. synchronous=NORMAL: COMMIT does not
        # wait for the disk while holding the write lock; the writer syncs the WAL after
        # releasing it (SqliteWriteLock), so every commit is still durable before
        # SendMessage answers.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # Writers take the write lock at BEGIN (the store asks for it): a deferred
        # transaction that later wants to write fails with "database is locked" instead
        # of waiting for the busy timeout. Anything else begins deferred, as a reader.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {'IMMEDIATE' if mode == 'IMMEDIATE' else 'DEFERRED'}")
