"""Alembic migrations create, remove and re-create the schema on both backends, and the
migrated schema is exactly what the models describe."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from soap_service.persistence.database import Database
from soap_service.persistence.tables import Base

TABLES = {
    "account_mails",
    "accounts",
    "messages",
    "recipients",
    "attachments",
    "events",
    "used_nonces",
    "master_keys",
    "recipient_accounts",
    "pickup_sessions",
    "receipts",
    "login_failures",
    "organisations",
    "organisation_domains",
    "sender_reports",
    "team_members",
    "teams",
}
HEAD = "0015"


def tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


@pytest.mark.filterwarnings("ignore:Did not recognize type .xid8.")
def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert tables(database) == set()

        database.upgrade()
        assert tables(database) == TABLES
        assert database.current_revision() == HEAD

        database.downgrade("0001")  # one step back, then all the way
        assert "recipient_accounts" not in tables(database)
        assert database.current_revision() == "0001"
        database.downgrade("base")
        assert tables(database) == set()
        assert database.current_revision() is None

        database.upgrade()
        assert tables(database) == TABLES
        with database.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            # SQLite's expression indexes escape the comparison: the inbox's is asked for.
            definition = index_definition(connection, "ix_recipients_mailbox")
            assert "onrecipients" in definition and "lower((address" in definition
        assert differences == []
    finally:
        database.dispose()


def index_definition(connection: Any, name: str) -> str:
    """An index's CREATE INDEX statement, as the database keeps it."""
    if connection.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    definition: str = connection.execute(text(query), {"name": name}).scalar_one()
    # Without quotes, spaces and schema; SQLite's `lower(address)` in PostgreSQL's way of
    # writing it (`ON public.recipients USING btree (lower((address)::text))`).
    definition = definition.replace('"', "").replace(" ", "").replace("public.", "").lower()
    return definition.replace("lower(address)", "lower((address))")


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    database = Database(database_url)
    try:
        database.upgrade()
        database.upgrade()
        assert database.current_revision() == HEAD
    finally:
        database.dispose()


def test_the_journal_refuses_updates_and_deletes(database_url: str) -> None:
    database = Database(database_url)
    try:
        database.upgrade()
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts (username, organisation, password_hash, disabled, "
                    "show_subject, created_at) VALUES ('a', 'a', 'x', false, false, "
                    "CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO messages (id, account_id, reference, type, language, "
                    "accepted_at, expires_at, key_id, wrapped_key, fingerprint, "
                    "sealed_subject, sealed_text_body, content_bytes) SELECT 'm', id, 'r', "
                    "'confidential', 'de', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'k', :b, :b, "
                    ":b, :b, 0 FROM accounts"
                ),
                {"b": b"x"},
            )
            connection.execute(
                text(
                    "INSERT INTO events (message_id, at, kind) VALUES ('m', CURRENT_TIMESTAMP, "
                    "'accepted')"
                )
            )
        for statement in ("UPDATE events SET kind = 'opened'", "DELETE FROM events"):
            with pytest.raises(DBAPIError, match="append-only"), database.engine.begin() as c:
                c.execute(text(statement))
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT kind FROM events")).scalars().all() == [
                "accepted"
            ]
    finally:
        database.dispose()
