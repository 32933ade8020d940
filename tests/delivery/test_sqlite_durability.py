"""SQLite commits with synchronous=NORMAL and the writer syncs the WAL itself, after
releasing the write lock: every write is on disk before its caller goes on, and the next
writer does not wait for that disk."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.delivery.conftest import Env


@dataclass(frozen=True)
class Sync:
    inode: int
    lock_free: bool
    messages_committed: int


@pytest.fixture
def env(env_factory: Callable[..., Env]) -> Env:
    return env_factory()


def test_a_sent_message_is_committed_then_its_wal_synced_outside_the_write_lock(
    env_factory: Callable[..., Env], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "delivery.sqlite3"  # env_factory's
    lock_file = path.with_name(path.name + ".write-lock")
    wal = path.with_name(path.name + "-wal")
    syncs: list[Sync] = []
    directory_syncs: list[int] = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def fdatasync(fd: int) -> None:
        probe = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(probe, fcntl.LOCK_UN)
            free = True
        except BlockingIOError:
            free = False
        finally:
            os.close(probe)
        with sqlite3.connect(path) as reader:  # what another process sees at this moment
            (committed,) = reader.execute("SELECT count(*) FROM messages").fetchone()
        syncs.append(Sync(os.fstat(fd).st_ino, free, committed))
        real_fdatasync(fd)

    def fsync(fd: int) -> None:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):  # not the keyring's file, written at set-up
            directory_syncs.append(status.st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)

    env = env_factory()  # its sender account is the first write
    assert syncs == [Sync(wal.stat().st_ino, lock_free=True, messages_committed=0)]
    # A WAL file the writer had not synced before: its directory entry is synced too.
    assert directory_syncs == [path.parent.stat().st_ino]

    env.send("anna@example.ch")
    assert syncs[1:] == [Sync(wal.stat().st_ino, lock_free=True, messages_committed=1)]
    env.send("ben@example.ch")
    assert syncs[2:] == [Sync(wal.stat().st_ino, lock_free=True, messages_committed=2)]
    assert directory_syncs == [path.parent.stat().st_ino]  # not again for the same file


def test_sqlite_connections_leave_the_sync_to_the_writer(env: Env) -> None:
    with env.database.engine.connect() as connection:
        synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
        journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    assert (synchronous, journal) == (1, "wal")  # 1 is NORMAL
