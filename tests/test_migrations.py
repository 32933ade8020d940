"""Alembic migrations create, remove and re-create the schema on both backends, and the
migrated schema is exactly what the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from soap_service.persistence.database import Database
from soap_service.persistence.tables import Base

TABLES = {
    "accounts",
    "messages",
    "recipients",
    "attachments",
    "events",
    "used_nonces",
    "master_keys",
}


def tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert tables(database) == set()

        database.upgrade()
        assert tables(database) == TABLES
        assert database.current_revision() == "0001"

        database.downgrade("base")
        assert tables(database) == set()
        assert database.current_revision() is None

        database.upgrade()
        assert tables(database) == TABLES
        with database.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        database.dispose()


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    database = Database(database_url)
    try:
        database.upgrade()
        database.upgrade()
        assert database.current_revision() == "0001"
    finally:
        database.dispose()
