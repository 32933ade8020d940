"""The queue of reports owed to senders, on both databases: the journal's trigger queues a
failure notice for any failed recipient and a registered message's receipts (submission,
pickup, refusal, expiry), only for messages that name where reports go, each once; the
workers claim them with a lease and record how it went."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from soap_service.domain.model import MessageType, RecipientState
from soap_service.domain.sender_reports import ReportKind, ReportResult
from tests.delivery.conftest import Env
from tests.delivery.test_store_delivery import claim, result

LEASE = timedelta(seconds=60)


@pytest.fixture
def env(database_url: str, env_factory: Callable[..., Env]) -> Env:
    return env_factory(database_url)


def queued(env: Env) -> list[tuple[str, int, str]]:
    with env.database.engine.connect() as connection:
        return [
            (row.kind, row.position, row.state)
            for row in connection.execute(
                text("SELECT kind, position, state FROM sender_reports ORDER BY id")
            )
        ]


def outcome(
    report_id: int, state: str, at: datetime, *, retry_at: datetime | None = None, detail: str = ""
) -> ReportResult:
    return ReportResult(
        report_id=report_id, state=state, next_attempt_at=retry_at, detail=detail, attempted_at=at
    )


def fail_all(env: Env, detail: str = "550 5.1.1 no such user") -> None:
    now = env.clock()
    with closing(env.database.store()) as store:
        jobs = claim(store, "w", now)
        store.record_results(
            "w", [result(job, RecipientState.FAILED, now, detail=detail) for job in jobs]
        )


def test_a_registered_message_queues_each_receipt_once(env: Env) -> None:
    message = env.send(
        "a@example.ch",
        "b@example.ch",
        "c@example.ch",
        type=MessageType.REGISTERED,
        expiry_days=1,
        report_to="payroll@firm.example",
    )
    assert queued(env) == [("submission", 0, "queued")]
    a, b, _ = env.recipient_ids(message.message_id)
    with closing(env.database.store()) as store:
        assert store.decide(a, RecipientState.ACCEPTED, "accepted", env.clock())
        assert store.decide(b, RecipientState.REFUSED, "refused", env.clock())
        assert not store.decide(b, RecipientState.ACCEPTED, "too late", env.clock())
        store.expire_due(now=env.clock.advance(days=2), limit=100)
    assert queued(env) == [
        ("submission", 0, "queued"),
        ("pickup", 1, "queued"),
        ("refusal", 2, "queued"),
        ("expiry", 3, "queued"),
    ]


def test_a_failed_recipient_queues_a_failure_notice_for_any_type(env: Env) -> None:
    env.send("a@example.ch", "b@example.ch", report_to="payroll@firm.example")
    assert queued(env) == []  # no receipts for a confidential message
    fail_all(env)
    assert queued(env) == [("failure", 1, "queued"), ("failure", 2, "queued")]


def test_messages_without_a_report_address_queue_nothing(env: Env) -> None:
    message = env.send("a@example.ch", "b@example.ch", type=MessageType.REGISTERED)
    [a, _] = env.recipient_ids(message.message_id)
    with closing(env.database.store()) as store:
        store.decide(a, RecipientState.REFUSED, "refused", env.clock())
    fail_all(env)
    assert queued(env) == []


def test_reports_are_claimed_with_a_lease_and_recorded(env: Env) -> None:
    message = env.send("anna@example.ch", report_to="Payroll@Firm.example")
    fail_all(env, detail="550 5.1.1 <anna@example.ch>: no such user")
    now = env.clock()
    with closing(env.database.store()) as store:
        [job] = store.claim_due_reports("w1", now=now, lease_until=now + LEASE, limit=10)
        # Held by w1: nobody else gets it while the lease lasts.
        assert store.claim_due_reports("w2", now=now, lease_until=now + LEASE, limit=10) == []
    details: dict[str, Any] = {
        "kind": job.kind,
        "report_to": job.report_to,
        "message_id": job.message_id,
        "reference": job.reference,
        "recipient": job.recipient,
        "recipient_error": job.recipient_error,
    }
    assert details == {
        "kind": ReportKind.FAILURE,
        "report_to": "Payroll@firm.example",
        "message_id": message.message_id,
        "reference": message.reference,
        "recipient": "anna@example.ch",
        "recipient_error": "550 5.1.1 <anna@example.ch>: no such user",
    }
    retry_at = now + timedelta(minutes=5)
    with closing(env.database.store()) as store:
        # Recorded by w2, which does not hold it: nothing changes.
        store.record_reports("w2", [outcome(job.report_id, "sent", now)])
        assert queued(env) == [("failure", 1, "queued")]
        store.record_reports(
            "w1", [outcome(job.report_id, "queued", now, retry_at=retry_at, detail="451 busy")]
        )
        assert store.claim_due_reports("w2", now=now, lease_until=now + LEASE, limit=10) == []
        [again] = store.claim_due_reports(
            "w2", now=retry_at, lease_until=retry_at + LEASE, limit=10
        )
        assert again.attempts == 1
        store.record_reports("w2", [outcome(job.report_id, "sent", retry_at)])
        later = retry_at + timedelta(hours=1)
        assert store.claim_due_reports("w3", now=later, lease_until=later + LEASE, limit=10) == []
    assert queued(env) == [("failure", 1, "sent")]
