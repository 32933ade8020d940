"""One request's connection and transactions, and the one place driver errors are translated.

Every query module (accounts.py, messages.py, delivery.py ...) builds on `Transactions`:
one store serves one request on one pooled connection taken at first use, and each public
method is one transaction that commits before it returns. SendMessage's insert may run on
a connection kept aside for it instead (see connections.py and `_driver_transaction`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any, NoReturn, Protocol

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from soap_service.errors import InternalError, SoapServiceError, Unavailable
from soap_service.logs import describe_exception
from soap_service.persistence.connections import Kept, KeptConnections
from soap_service.persistence.dialects import POSTGRESQL

log = logging.getLogger(__name__)


class WriteLock(Protocol):
    """One writer at a time (SQLite's, database.py), whose write is on disk once released
    unless `synced` is off."""

    def __call__(self, *, synced: bool = True) -> AbstractContextManager[None]: ...


class Transactions:
    """The queries of one request, on one pooled connection taken at first use (or, for
    SendMessage's insert, a kept one: `_driver_transaction`)."""

    def __init__(
        self,
        engine: Engine,
        write_lock: WriteLock,
        kept: KeptConnections,
    ) -> None:
        self._engine = engine
        self._write_lock = write_lock
        self._kept = kept
        self._connection: Connection | None = None

    @property
    def _dialect(self) -> str:
        return self._engine.dialect.name

    @contextmanager
    def _transaction(
        self, *, read_only: bool = False, durable: bool = True, fresh_plans: bool = False
    ) -> Iterator[Connection]:
        """`durable=False`: a write whose loss with the database host (a power cut, never
        a killed process) costs only a repetition, such as a delivery outcome (the mail
        goes out again): its commit does not wait for the disk.

        `fresh_plans`: each statement is planned for the tables as they are now
        (PostgreSQL). psycopg prepares a query after its fifth run, and PostgreSQL may
        then keep a generic plan made while a table was small: for a lookup by an
        account's Reference, a scan of the account's messages or of the whole table,
        kept as a payroll run grows it (tests/unit/test_reference_lookup.py)."""
        lock = nullcontext() if read_only else self._write_lock(synced=durable)
        with self._translated_errors(), lock:
            if self._connection is None:
                self._connection = self._engine.connect()
            connection = self._connection
            # SQLite: a reader need not take the write lock (see database.py).
            connection.execution_options(sqlite_begin="DEFERRED" if read_only else "IMMEDIATE")
            with connection.begin():
                if not durable and self._dialect == POSTGRESQL:
                    connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                if fresh_plans and self._dialect == POSTGRESQL:
                    connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
                yield connection

    @contextmanager
    def _driver_transaction(
        self, *, single_statement: bool = False, durable: bool = True
    ) -> Iterator[Any]:
        """One write transaction on the driver's own cursor, for SendMessage's insert.

        Through SQLAlchemy, each statement's events and result set-up cost more CPU than
        SQLite spends storing it, and on SQLite that time is spent holding the one write
        lock that every sender waits for. Here the connection is taken before the lock and
        only BEGIN, the statements and COMMIT run while holding it. The connection is the
        request's own if it has one already, else one kept aside for this (see
        KeptConnections). A `single_statement` runs in the driver's autocommit mode
        (PostgreSQL), where it is its own transaction. `durable` as for `_transaction`
        (on PostgreSQL the statements say it themselves).
        """
        with self._translated_errors():
            kept, driver = self._driver_connection()
        broken = False  # the connection cannot be trusted with another request
        with self._translated_errors(driver):
            try:
                cursor = driver.cursor()
                with self._write_lock(synced=durable):
                    if single_statement:
                        driver.autocommit = True
                        try:
                            yield cursor
                        finally:
                            broken = not self._autocommit_off(driver)
                    else:
                        with self._committed(driver, cursor):
                            yield cursor
            except BaseException as exc:
                dbapi = self._engine.dialect.loaded_dbapi
                lost = isinstance(exc, dbapi.Error) and self._engine.dialect.is_disconnect(
                    exc, driver, None
                )
                self._release(kept, broken=lost or broken, failure=exc)
                raise
        self._release(kept, broken=broken)

    def _driver_connection(self) -> tuple[Kept | None, Any]:
        """The request's own connection if it has one, else a kept one."""
        if self._connection is not None:
            return None, self._connection.connection.driver_connection
        kept = self._kept.take()
        return kept, kept.connection.driver_connection

    def _autocommit_off(self, driver: Any) -> bool:
        """False for a broken connection: it must not be used again, least of all in
        autocommit mode."""
        try:
            driver.autocommit = False
        except self._engine.dialect.loaded_dbapi.Error:
            return False
        return True

    @contextmanager
    def _committed(self, driver: Any, cursor: Any) -> Iterator[None]:
        if self._dialect == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")  # autocommit mode: database.py
        try:
            yield
            driver.commit()
        except BaseException:
            with suppress(self._engine.dialect.loaded_dbapi.Error):
                driver.rollback()
            raise

    def _release(
        self, kept: Kept | None, *, broken: bool, failure: BaseException | None = None
    ) -> None:
        """After `_driver_transaction`: a kept connection goes back to be kept if all went
        well, else it is discarded; the request's own connection is invalidated if broken
        (a connection left in autocommit mode must not go back to the pool)."""
        if kept is not None:
            if broken or failure is not None:
                self._kept.discard(kept, broken=broken, error=failure)
            else:
                self._kept.give_back(kept)
        elif broken and self._connection is not None:
            self._connection.invalidate(failure)

    @contextmanager
    def _translated_errors(self, driver: Any = None) -> Iterator[None]:
        """Driver errors become the service's: a lost database is Unavailable (the caller
        may retry), anything else an InternalError that says nothing of the SQL. The
        service's own errors pass, and so does IntegrityError: what a broken uniqueness
        rule means is the caller's to say. `driver` is the driver's connection for errors
        raised by its own cursor (`_driver_transaction`), which SQLAlchemy did not wrap."""
        dbapi = self._engine.dialect.loaded_dbapi
        try:
            yield
        except (SoapServiceError, IntegrityError):
            raise
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            self._lost_connection(exc)
        except (dbapi.OperationalError, dbapi.InterfaceError) as exc:
            if self._engine.dialect.is_disconnect(exc, driver, None):
                # As SQLAlchemy does for its own statements: every pooled connection
                # is as dead as this one, so the pool starts afresh.
                self._engine.dispose(close=False)
            if self._connection is not None:
                self._connection.invalidate(exc)
            self._lost_connection(exc)
        except (SQLAlchemyError, dbapi.Error) as exc:
            log.error("storage error: %s", describe_exception(exc))
            raise InternalError("a storage error occurred") from exc

    def _lost_connection(self, exc: Exception) -> NoReturn:
        # Said once per outage by the worker, and per request in the request log.
        log.debug("database unavailable: %s", describe_exception(exc))
        self.close()  # a broken connection goes back to be replaced
        raise Unavailable("the database is unavailable; retry later") from exc

    def ping(self) -> None:
        with self._transaction(read_only=True) as connection:
            connection.exec_driver_sql("SELECT 1")

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()
