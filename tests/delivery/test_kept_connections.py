"""The connections kept aside for SendMessage's insert, on SQLite and PostgreSQL: reused,
bounded, given back to the pool, and never handed out once dead or from a disposed pool."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from soap_service.errors import InternalError, Unavailable
from soap_service.persistence.connections import KEPT_CONNECTIONS, KeptConnections
from soap_service.persistence.database import Database
from tests.conftest import PG_ADMIN_URL, PostgresDatabases


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def checked_out(database: Database) -> int:
    return int(database.engine.pool.checkedout())  # type: ignore[attr-defined]


def is_closed(driver: Any) -> bool:
    if isinstance(driver, sqlite3.Connection):
        try:
            driver.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            return True
        return False
    return bool(driver.closed)


def test_a_connection_given_back_is_taken_again_and_stays_out_of_the_pool(
    database: Database,
) -> None:
    first = database.kept.take()
    database.kept.give_back(first)
    assert checked_out(database) == 1
    second = database.kept.take()
    driver = second.connection.driver_connection
    assert driver is first.connection.driver_connection
    database.kept.give_back(second)
    database.dispose()
    assert is_closed(driver)  # given back to the pool, which closed it


def test_no_more_than_the_limit_are_kept(database: Database) -> None:
    taken = [database.kept.take() for _ in range(KEPT_CONNECTIONS + 2)]
    assert checked_out(database) == KEPT_CONNECTIONS + 2
    for kept in taken:
        database.kept.give_back(kept)
    assert checked_out(database) == KEPT_CONNECTIONS


def test_after_close_a_connection_given_back_goes_to_the_pool(database: Database) -> None:
    kept = database.kept.take()
    driver = kept.connection.driver_connection
    database.kept.close()
    database.kept.give_back(kept)
    assert checked_out(database) == 0
    assert not is_closed(driver)  # pooled, still usable


def test_a_connection_of_a_disposed_pool_is_closed_not_handed_out(database: Database) -> None:
    old = database.kept.take()
    old_driver = old.connection.driver_connection
    database.kept.give_back(old)
    # What the store does when it finds the database gone: the pool starts afresh.
    database.engine.dispose(close=False)
    new = database.kept.take()
    assert new.connection.driver_connection is not old_driver
    assert is_closed(old_driver)
    cursor = new.connection.driver_connection.cursor()
    cursor.execute("SELECT 1")
    assert cursor.fetchone()[0] == 1
    database.kept.give_back(new)


def test_a_connection_in_use_while_the_pool_was_disposed_is_not_kept(database: Database) -> None:
    kept = database.kept.take()
    driver = kept.connection.driver_connection
    database.engine.dispose(close=False)
    database.kept.give_back(kept)
    assert is_closed(driver)
    assert database.kept.take().connection.driver_connection is not driver


def test_a_failed_statement_gives_its_connection_back_rolled_back(database: Database) -> None:
    database.upgrade()
    store = database.store()
    try:
        with pytest.raises(InternalError), store._driver_transaction() as cursor:
            cursor.execute(
                "INSERT INTO master_keys (key_id, check_value, created_at) "
                "VALUES ('k-1', 'x', '2026-11-28 12:00:00')"
            )
            cursor.execute("INSERT INTO master_keys (key_id) VALUES (NULL)")
    finally:
        store.close()
    assert checked_out(database) == 0  # not kept: back in the pool
    store = database.store()
    try:
        with store._driver_transaction() as cursor:
            cursor.execute("SELECT count(*) FROM master_keys")
            assert cursor.fetchone()[0] == 0
    finally:
        store.close()
    assert checked_out(database) == 1  # this one went well, and is kept


def test_an_idle_postgresql_connection_that_died_is_replaced_before_use(
    postgres: PostgresDatabases,
) -> None:
    database = Database(postgres.create())
    kept = KeptConnections(database.engine, ping_after=0.0)
    dead = kept.take()
    cursor = dead.connection.driver_connection.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    kept.give_back(dead)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()

    fresh = kept.take()
    cursor = fresh.connection.driver_connection.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    assert cursor.fetchone()[0] != pid
    kept.give_back(fresh)
    kept.close()
    database.dispose()


def test_a_connection_killed_during_the_insert_is_not_kept(
    postgres: PostgresDatabases,
) -> None:
    database = Database(postgres.create())
    store = database.store()
    try:
        with (
            pytest.raises(Unavailable),
            store._driver_transaction(single_statement=True) as cursor,
        ):
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        assert checked_out(database) == 0  # invalidated, not kept
        with store._driver_transaction(single_statement=True) as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone()[0] == 1
        assert checked_out(database) == 1  # the fresh one is kept
    finally:
        store.close()
        database.dispose()
