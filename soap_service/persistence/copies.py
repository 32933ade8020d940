"""Whole copies of the database, for backup and restore: SQLite's online backup (a
consistent copy while the service runs), PostgreSQL's pg_dump and pg_restore."""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from sqlalchemy import inspect

from soap_service.errors import ConfigurationError
from soap_service.persistence.database import Database, sqlite_path

SQLITE_FILE = "database.sqlite3"
POSTGRESQL_FILE = "database.dump"


def dump(database: Database, folder: Path) -> Path:
    """Write a consistent copy of the database into `folder`; the file written."""
    if database.is_sqlite:
        target = folder / SQLITE_FILE
        with closing(_sqlite(database)) as live, closing(sqlite3.connect(target)) as copy:
            live.backup(copy)  # page by page, consistent, while writers go on
        return target
    target = folder / POSTGRESQL_FILE
    _run(
        ["pg_dump", "--format=custom", "--no-owner", "--file", str(target), _libpq(database)],
        "pg_dump",
    )
    return target


def load(database: Database, copy: Path) -> None:
    """Load a copy made by `dump` into an empty database."""
    if inspect(database.engine).get_table_names():
        raise ConfigurationError("the database to restore into is not empty")
    if database.is_sqlite:
        if copy.name != SQLITE_FILE:
            raise ConfigurationError("this backup is of PostgreSQL, and the database is SQLite")
        with closing(sqlite3.connect(copy)) as source, closing(_sqlite(database)) as live:
            source.backup(live)
        return
    if copy.name != POSTGRESQL_FILE:
        raise ConfigurationError("this backup is of SQLite, and the database is PostgreSQL")
    database.engine.dispose()  # pg_restore works on its own connection
    _run(
        ["pg_restore", "--no-owner", "--exit-on-error", "--dbname", _libpq(database), str(copy)],
        "pg_restore",
    )
    _rebase_journal(database)


def _rebase_journal(database: Database) -> None:
    """The restored events' transaction ids are the old cluster's, which may lie ahead of
    this one's: GetStatusChanges would not show them until this cluster caught up. They
    all become 0, before anything written here (migration 0010), in their id order."""
    with database.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events DISABLE TRIGGER USER")
        connection.exec_driver_sql("UPDATE events SET xact = '0'")
        connection.exec_driver_sql("ALTER TABLE events ENABLE TRIGGER USER")


def _sqlite(database: Database) -> sqlite3.Connection:
    path = sqlite_path(database.url)
    if path is None:
        raise ConfigurationError("an in-memory database has nothing to back up or restore into")
    return sqlite3.connect(path)


def _libpq(database: Database) -> str:
    """The URL as libpq's tools read it (without SQLAlchemy's driver name)."""
    return database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _run(command: list[str], tool: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise ConfigurationError(f"{tool} is not installed (Debian: postgresql-client)") from None
    if done.returncode != 0:
        # Its own words: they name tables and options, never message content.
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigurationError(f"{tool} failed: {last[:300]}")
