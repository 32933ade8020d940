"""Lookups by Reference use the unique (account, reference) index, however stale
PostgreSQL's view of the table is: they must never read the account's other messages.
At a payroll run's start the table is small, and a plan made then (from its statistics,
or a generic plan of a query psycopg has prepared) would otherwise scan the whole
account for each lookup as the run grows it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from soap_service.domain.model import Account
from soap_service.domain.ports import NewAccount
from soap_service.persistence.database import Database
from soap_service.persistence.store import SqlStore
from tests.postgres_plans import generic_plans, nodes

UNIQUE_INDEX = "uq_messages_account_id_reference"
INSERT_ROWS = text(
    """
    INSERT INTO messages (id, account_id, reference, type, language, accepted_at,
        expires_at, key_id, wrapped_key, fingerprint, sealed_subject, sealed_text_body,
        content_bytes)
    SELECT 'm-' || n, :account, 'payslip-' || lpad(n::text, 5, '0'), 'confidential', 'de',
        now(), now(), 'k', '\\x00', '\\x01', '\\x02', '\\x03', 0
    FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
    """
)


@pytest.fixture
def plans(postgres_database: Database) -> Iterator[list[dict[str, Any]]]:
    """The generic plan of every statement on messages that the store's connections run."""
    with generic_plans(postgres_database.engine, lambda query: "messages" in query) as found:
        yield found


def payroll_account(database: Database, store: SqlStore) -> Account:
    """An account with a run's first 10 messages, the table analysed as it is then."""
    account = store.add_account(
        NewAccount(
            username="payroll",
            organisation="Payroll",
            password_hash="not-used-here",
            digest_secret=None,
            created_at=datetime(2026, 11, 25, tzinfo=UTC),
        )
    )
    with database.engine.begin() as connection:
        connection.execute(INSERT_ROWS, {"account": account.id, "first": 0, "last": 9})
        connection.execute(text("ANALYZE messages"))
    return account


def grow(database: Database, account: Account) -> None:
    """The rest of the run: 5,000 messages in all, stored after the last ANALYZE."""
    with database.engine.begin() as connection:
        connection.execute(INSERT_ROWS, {"account": account.id, "first": 10, "last": 4999})


def assert_probes_only(plan: dict[str, Any], probes: int) -> None:
    scans = [node for node in nodes(plan) if node.get("Relation Name") == "messages"]
    assert {node.get("Index Name") for node in scans} == {UNIQUE_INDEX}, scans
    assert sum(node["Actual Loops"] for node in scans) == probes, scans
    assert not any(node.get("Rows Removed by Filter") for node in nodes(plan)), plan


def test_a_batchs_known_references_are_probed_by_the_unique_index_as_the_table_grows(
    postgres_database: Database, plans: list[dict[str, Any]]
) -> None:
    store = postgres_database.store()
    try:
        account = payroll_account(postgres_database, store)
        wanted = [f"payslip-{n:05}" for n in range(0, 10_000, 200)]
        for _ in range(8):  # the run's first batches: the query is prepared
            assert list(store.find_references(account.id, wanted)) == ["payslip-00000"]
        grow(postgres_database, account)
        plans.clear()
        found = store.find_references(account.id, wanted)
    finally:
        store.close()
    assert sorted(found) == [reference for reference in wanted if reference < "payslip-05000"]
    assert {record.message_id for record in found.values()} == {
        f"m-{int(reference[-5:])}" for reference in found
    }
    [plan] = plans
    assert_probes_only(plan, len(wanted))


def test_a_status_by_reference_is_probed_by_the_unique_index_as_the_table_grows(
    postgres_database: Database, plans: list[dict[str, Any]]
) -> None:
    """GetStatus by Reference, as a payroll program polls it for each payslip of a run."""
    store = postgres_database.store()
    try:
        account = payroll_account(postgres_database, store)
        for n in range(8):  # the run's first polls: the query is prepared
            status = store.message_status(account.id, reference=f"payslip-{n:05}")
            assert status is not None and status.message_id == f"m-{n}"
        grow(postgres_database, account)
        plans.clear()
        status = store.message_status(account.id, reference="payslip-04321")
    finally:
        store.close()
    assert status is not None and status.message_id == "m-4321"
    assert_probes_only(plans[0], 1)
