"""SendMessages looks up a batch's known references by the unique (account, reference)
index, however stale PostgreSQL's view of the table is: the lookup must never read the
account's other messages. At a payroll run's start the table is small, and a plan made
then (a statistic, or a generic plan of a query psycopg has prepared) would otherwise
scan the whole account for each batch as the run grows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from soap_service.domain.ports import NewAccount
from soap_service.persistence.database import Database
from tests.conftest import PostgresDatabases

ACCOUNT_INDEX = "ix_messages_account_id_accepted_at"
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
def database(postgres: PostgresDatabases) -> Iterator[Database]:
    database = Database(postgres.create())
    database.upgrade()
    yield database
    database.dispose()


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a plan, as EXPLAIN (FORMAT JSON) writes them."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found


def test_known_references_are_probed_by_the_unique_index_as_the_table_grows(
    database: Database,
) -> None:
    plans: list[dict[str, Any]] = []

    def explain_everything(dbapi_connection: Any, _: Any) -> None:
        """auto_explain on each of the store's connections, its plans sent as notices."""
        with dbapi_connection.cursor() as cursor:
            cursor.execute("LOAD 'auto_explain'")
            for setting in ("log_min_duration = 0", "log_analyze = on", "log_format = json"):
                cursor.execute(f"SET auto_explain.{setting}")
            cursor.execute("SET auto_explain.log_level = notice")
            # What PostgreSQL may choose on its own for a prepared query once its generic
            # plan looks as cheap as the custom ones (it did in bench/batch.py's runs).
            cursor.execute("SET plan_cache_mode = force_generic_plan")
        dbapi_connection.commit()

        def keep(notice: Any) -> None:
            message = notice.message_primary or ""
            if message.startswith("duration:") and "messages" in message:
                plans.append(json.loads(message.split("plan:", 1)[1])["Plan"])

        dbapi_connection.add_notice_handler(keep)

    database.engine.dispose()
    event.listen(database.engine, "connect", explain_everything)
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
        with database.engine.begin() as connection:
            connection.execute(INSERT_ROWS, {"account": account.id, "first": 0, "last": 9})
            connection.execute(text("ANALYZE messages"))
        wanted = [f"payslip-{n:05}" for n in range(0, 10_000, 200)]
        # The run's first batches, while the table is small: the query is prepared.
        for _ in range(8):
            assert list(store.find_references(account.id, wanted)) == ["payslip-00000"]
        with database.engine.begin() as connection:
            connection.execute(INSERT_ROWS, {"account": account.id, "first": 10, "last": 4999})
        plans.clear()

        found = store.find_references(account.id, wanted)
    finally:
        store.close()
        event.remove(database.engine, "connect", explain_everything)

    assert sorted(found) == [reference for reference in wanted if reference < "payslip-05000"]
    assert {record.message_id for record in found.values()} == {
        f"m-{int(reference[-5:])}" for reference in found
    }
    [plan] = plans
    scans = [node for node in nodes(plan) if "Relation Name" in node]
    assert {node.get("Index Name") for node in scans} == {UNIQUE_INDEX}, scans
    # One probe per reference, and nothing read beside what was found.
    assert sum(node["Actual Loops"] for node in scans) == len(wanted)
    assert not any(node.get("Rows Removed by Filter") for node in nodes(plan)), plan
