"""A delivery worker records each outcome by the recipient's id, however stale PostgreSQL's
view of the recipients is: it must never read the other recipients waiting in the queue.

The statement is prepared, and at a payroll run's start the table is small: a generic plan
made then looked the held rows up by state, which read every waiting recipient (and every
row version the run had left behind) for each outcome. In bench.payroll that grew from
0.5 ms an outcome to 4 ms after 10,000, and the database became the machine's busiest
process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from soap_service.domain.delivery import Decision, DeliveryJob, DeliveryResult
from soap_service.domain.model import RecipientState
from soap_service.domain.ports import NewAccount
from soap_service.persistence.database import Database
from soap_service.persistence.tables import EventRow, RecipientRow
from tests.postgres_plans import generic_plans, nodes

WORKER = "worker-1"
NOW = datetime.now(UTC)
INSERT_MESSAGES = text(
    """
    INSERT INTO messages (id, account_id, reference, type, language, accepted_at,
        expires_at, key_id, wrapped_key, fingerprint, sealed_subject, sealed_text_body,
        content_bytes)
    SELECT 'm-' || n, :account, 'payslip-' || n, 'confidential', 'de', now(),
        now() + interval '30 days', 'k', '\\x00', '\\x01', '\\x02', '\\x03', 0
    FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
    """
)
INSERT_RECIPIENTS = text(
    """
    INSERT INTO recipients (message_id, position, address, token_hash, state, attempts,
        state_changed_at)
    SELECT 'm-' || n, 1, 'person' || n || '@example.ch', sha256(('token-' || n)::bytea),
        'queued', 0, now()
    FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
    """
)


@pytest.fixture
def plans(postgres_database: Database) -> Iterator[list[dict[str, Any]]]:
    """The generic plan of each outcome record the store's connections run."""
    with generic_plans(postgres_database.engine, lambda query: "WITH outcome" in query) as found:
        yield found


def queue(database: Database, account: int, first: int, last: int) -> None:
    """Messages `first` to `last`, a waiting recipient each."""
    with database.engine.begin() as connection:
        for statement in (INSERT_MESSAGES, INSERT_RECIPIENTS):
            connection.execute(statement, {"account": account, "first": first, "last": last})


def sent(job: DeliveryJob) -> DeliveryResult:
    return DeliveryResult(
        job=job,
        decision=Decision(state=RecipientState.SENT, next_attempt_at=None, detail="250 OK"),
        attempted_at=NOW,
    )


def test_an_outcome_is_recorded_by_the_recipients_id_as_the_queue_grows(
    postgres_database: Database, plans: list[dict[str, Any]]
) -> None:
    store = postgres_database.store()
    try:
        account = store.add_account(
            NewAccount(
                username="payroll",
                organisation="Payroll",
                password_hash="not-used-here",
                digest_secret=None,
                created_at=NOW,
            )
        )
        queue(postgres_database, account.id, 1, 10)
        jobs = store.claim_due(WORKER, now=NOW, lease_until=NOW + timedelta(minutes=5), limit=10)
        for job in jobs[:8]:  # the run's first outcomes: the statement is prepared
            assert store.record_results(WORKER, [sent(job)]) == 1
        queue(postgres_database, account.id, 11, 5000)  # the run goes on
        plans.clear()
        assert store.record_results(WORKER, [sent(jobs[8])]) == 1
    finally:
        store.close()
    [plan] = plans
    scans = [node for node in nodes(plan) if node.get("Relation Name") == "recipients"]
    scans = [node for node in scans if node["Node Type"] != "ModifyTable"]
    assert {node.get("Index Name") for node in scans} == {"pk_recipients"}, scans
    # Each reads the one recipient: the held row to lock, the row to update.
    assert [(node["Actual Loops"], node["Actual Rows"]) for node in scans] == [(1, 1), (1, 1)]
    with postgres_database.engine.connect() as connection:
        states = connection.execute(
            select(RecipientRow.state, RecipientRow.lease_owner).order_by(RecipientRow.id)
        ).all()
        journal = connection.execute(select(EventRow.recipient_id, EventRow.kind)).all()
    assert states[:9] == [("sent", None)] * 9
    assert states[9] == ("queued", WORKER)
    assert set(states[10:]) == {("queued", None)}
    assert journal == [(job.recipient_id, "sent") for job in jobs[:9]]
