"""Pooled connections kept aside for the service's hot path."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool, PoolProxiedConnection

# Connections kept aside for SendMessage's insert: one per concurrent request of a worker
# (its default threads), well within the pool's size.
KEPT_CONNECTIONS = 4


class KeptConnections:
    """A few pooled connections kept checked out, for SendMessage's insert.

    Checking a connection out of SQLAlchemy's pool and back in runs its events, reset and
    bookkeeping: cheap in a loop, but on a request that has just parsed and encrypted 100 KB
    it finds all of that cold in the CPU's caches and costs about 70 us, more than the rest
    of the insert's Python side. Taking one from here is a pop and a push.

    Each is still the pool's connection, and is treated as the pool would: checked with a
    ping when it sat idle, dropped when the pool was replaced after a lost database
    (`engine.dispose()`), and given back to the pool when the database is disposed. At most
    `keep` are kept; more concurrent requests take and return ordinary pooled connections.
    """

    def __init__(self, engine: Engine, *, ping_after: float | None, keep: int = KEPT_CONNECTIONS):
        self._engine = engine
        self._ping_after = ping_after
        self._keep = keep
        self._idle: deque[Kept] = deque()
        self._closed = False

    def take(self) -> Kept:
        while True:
            try:
                kept = self._idle.pop()  # atomic: no lock needed
            except IndexError:
                # The pool first: if it is replaced meanwhile, this connection is dropped
                # at give-back rather than kept from a disposed pool.
                pool = self._engine.pool
                return Kept(self._engine.raw_connection(), pool)
            if kept.pool is not self._engine.pool:
                # The pool was disposed after a lost database: so is this connection.
                self.discard(kept, broken=True)
                continue
            idle = time.monotonic() - kept.last_used
            if (
                self._ping_after is not None
                and idle > self._ping_after
                and not alive(kept.connection.driver_connection)
            ):
                self.discard(kept, broken=True)
                continue
            return kept

    def give_back(self, kept: Kept) -> None:
        """For a connection that is idle, out of any transaction; otherwise `discard` it."""
        if kept.pool is not self._engine.pool:
            self.discard(kept, broken=True)
        elif self._closed or len(self._idle) >= self._keep:
            kept.connection.close()
        else:
            kept.last_used = time.monotonic()
            self._idle.append(kept)

    def discard(self, kept: Kept, *, broken: bool, error: BaseException | None = None) -> None:
        """Not to be kept: a broken connection (or one of a disposed pool) is invalidated,
        closed and replaced in the pool; any other goes back to the pool, whose reset rolls
        back whatever it was in."""
        if broken:
            kept.connection.invalidate(error)
        kept.connection.close()

    def close(self) -> None:
        """Give every kept connection back to the pool, and keep none from now on."""
        self._closed = True
        while True:
            try:
                kept = self._idle.pop()  # a request may take one meanwhile
            except IndexError:
                return
            kept.connection.close()


class Kept:
    """A pooled connection kept aside, with the pool it came from."""

    __slots__ = ("connection", "last_used", "pool")

    def __init__(self, connection: PoolProxiedConnection, pool: Pool) -> None:
        self.connection = connection
        self.pool = pool
        self.last_used = time.monotonic()


def alive(dbapi_connection: Any) -> bool:
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()
    except Exception:
        return False
    return True
