"""SendMessages looks up a batch's known references by the unique (account, reference)
index, however stale PostgreSQL's statistics are: the lookup must not read the account's
other messages (at a payroll run's start, the planner believes the table tiny)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from soap_service.domain.ports import NewAccount
from soap_service.persistence.database import Database
from soap_service.persistence.messages import FIND_REFERENCES
from tests.conftest import PostgresDatabases

STORED = 5_000
ACCOUNT_INDEX = "ix_messages_account_id_accepted_at"
UNIQUE_INDEX = "uq_messages_account_id_reference"


@pytest.fixture
def database(postgres: PostgresDatabases) -> Iterator[Database]:
    database = Database(postgres.create())
    database.upgrade()
    yield database
    database.dispose()


def scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(node type, index, filter) of every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [(plan["Node Type"], plan.get("Index Name"), plan.get("Filter"))]
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


def test_known_references_are_found_by_the_unique_index_without_statistics(
    database: Database,
) -> None:
    store = database.store()
    try:
        account = store.add_account(
            NewAccount(
                username="payroll",
                organisation="Payroll",
                password_hash="not-used-here",
                digest_secret=None,
                created_at=datetime(2026, 11, 25, tzinfo=UTC),
            )
        )
        wanted = [f"payslip-{n:05}" for n in range(0, STORED * 2, 100)][:50]
        with database.engine.begin() as connection:
            # A run's first 5,000 payslips, stored after the table's last ANALYZE (of none).
            connection.execute(text("ANALYZE messages"))
            connection.execute(
                text(
                    """
                    INSERT INTO messages (id, account_id, reference, type, language,
                        accepted_at, expires_at, key_id, wrapped_key, fingerprint,
                        sealed_subject, sealed_text_body, content_bytes)
                    SELECT 'm-' || n, :account, 'payslip-' || lpad(n::text, 5, '0'),
                        'confidential', 'de', now(), now(), 'k', '\\x00', '\\x01',
                        '\\x02', '\\x03', 0
                    FROM generate_series(0, :stored - 1) AS n
                    """
                ),
                {"account": account.id, "stored": STORED},
            )
        statements: list[tuple[str, Any]] = []

        def capture(*args: Any) -> None:
            _, _, statement, driver_parameters, _, _ = args
            statements.append((statement, driver_parameters))

        event.listen(database.engine, "before_cursor_execute", capture)
        try:
            found = store.find_references(account.id, wanted)
        finally:
            event.remove(database.engine, "before_cursor_execute", capture)
        assert sorted(found) == [ref for ref in wanted if int(ref[-5:]) < STORED]
        assert {record.message_id for record in found.values()} == {
            "m-" + str(int(ref[-5:])) for ref in found
        }
        [(statement, driver_parameters)] = [
            (sql, values) for sql, values in statements if "messages" in sql
        ]

        with database.engine.connect() as connection:

            def plan_of(sql: str, values: Any) -> list[tuple[str, str | None, str | None]]:
                explained = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", values)
                document = explained.scalar_one()
                document = document if isinstance(document, list) else json.loads(document)
                return scans(document[0]["Plan"])

            # The plain form (SQLite's): the planner takes the account's index and filters
            # every one of its messages; without that, this test would tell nothing.
            plain_plan = plan_of(
                str(
                    FIND_REFERENCES.params(account_id=account.id, references=wanted).compile(
                        dialect=connection.dialect, compile_kwargs={"literal_binds": True}
                    )
                ),
                None,
            )
            assert any(index == ACCOUNT_INDEX for _, index, _ in plain_plan), plain_plan
            lookups = plan_of(statement, driver_parameters)
        # What the store ran: one probe of the unique index per reference, nothing filtered.
        assert {index for _, index, _ in lookups if index} == {UNIQUE_INDEX}, lookups
        assert not any(where for _, _, where in lookups), lookups
    finally:
        store.close()
