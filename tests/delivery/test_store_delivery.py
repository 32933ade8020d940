"""The delivery queries of the store, on SQLite and PostgreSQL: leased claims, results that
only change what the worker still holds, and the expiry sweep."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from soap_service.crypto import WrappedKey
from soap_service.domain import sealing
from soap_service.domain.delivery import Decision, DeliveryJob, DeliveryResult
from soap_service.domain.model import AttachmentDraft, Language, MessageType, RecipientState
from soap_service.domain.sealing import MessageCipher
from soap_service.persistence.store import SqlStore
from soap_service.persistence.tables import AttachmentRow, EventRow, MessageRow, RecipientRow
from tests.delivery.conftest import Env

LEASE = timedelta(seconds=60)


@pytest.fixture
def env(database_url: str, env_factory: Callable[..., Env]) -> Env:
    return env_factory(database_url)


@pytest.fixture
def stores(env: Env) -> Iterator[Callable[[], SqlStore]]:
    opened: list[SqlStore] = []

    def store() -> SqlStore:
        opened.append(env.database.store())
        return opened[-1]

    yield store
    for one in opened:
        one.close()


def claim(store: SqlStore, worker: str, now: datetime, limit: int = 100) -> list[DeliveryJob]:
    return store.claim_due(worker, now=now, lease_until=now + LEASE, limit=limit)


def result(
    job: DeliveryJob,
    state: RecipientState,
    at: datetime,
    *,
    detail: str = "",
    next_attempt_at: datetime | None = None,
) -> DeliveryResult:
    return DeliveryResult(
        job=job,
        decision=Decision(state=state, next_attempt_at=next_attempt_at, detail=detail),
        attempted_at=at,
    )


def states(env: Env, message_id: str) -> list[RecipientState]:
    return [recipient.state for recipient in env.status(message_id).recipients]


def set_state(env: Env, recipient_id: int, state: RecipientState) -> None:
    recipients = RecipientRow.__table__
    with env.database.engine.begin() as connection:
        connection.execute(
            update(recipients).where(recipients.c.id == recipient_id).values(state=state.value)
        )


def test_claim_leases_due_recipients_and_another_worker_gets_none(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@example.ch", "b@example.ch", "c@example.ch", language=Language.FR)
    ids = env.recipient_ids(status.message_id)
    now = env.clock.advance(seconds=1)

    jobs = claim(stores(), "worker-a", now)

    assert [job.recipient_id for job in jobs] == ids
    assert [job.address for job in jobs] == ["a@example.ch", "b@example.ch", "c@example.ch"]
    assert [job.position for job in jobs] == [1, 2, 3]
    first = jobs[0]
    assert first.message_id == status.message_id
    assert first.attempts == 0
    assert first.accepted_at == status.accepted_at
    assert first.expires_at == status.expires_at
    assert first.type is MessageType.CONFIDENTIAL
    assert first.language is Language.FR
    assert first.organisation == "ACME Treuhand AG"
    assert first.show_subject is False
    row = env.recipient_row(ids[0])
    assert row.lease_owner == "worker-a"
    assert row.leased_until == now + LEASE
    # Claiming does not change the recipients' state.
    assert states(env, status.message_id) == [RecipientState.QUEUED] * 3

    assert claim(stores(), "worker-b", now) == []
    assert claim(stores(), "worker-b", now + LEASE - timedelta(seconds=1)) == []


def test_claim_takes_at_most_limit_and_the_rest_is_left_for_the_next(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send(*(f"r{n}@example.ch" for n in range(5)))
    ids = env.recipient_ids(status.message_id)
    now = env.clock()
    first = claim(stores(), "worker-a", now, limit=2)
    second = claim(stores(), "worker-b", now, limit=10)
    assert [job.recipient_id for job in first] == ids[:2]
    assert [job.recipient_id for job in second] == ids[2:]


def test_a_lease_that_ran_out_is_claimed_by_another_worker(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@example.ch", "b@example.ch")
    ids = env.recipient_ids(status.message_id)
    now = env.clock()
    assert len(claim(stores(), "worker-a", now)) == 2

    # At the very end of the lease it is still held, just after it is free.
    assert claim(stores(), "worker-b", now + LEASE) == []
    later = now + LEASE + timedelta(seconds=1)
    taken = claim(stores(), "worker-b", later)
    assert [job.recipient_id for job in taken] == ids
    assert env.recipient_row(ids[0]).lease_owner == "worker-b"
    assert claim(stores(), "worker-a", later) == []


def test_a_deferred_recipient_is_not_due_before_its_next_attempt(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@example.ch")
    [recipient_id] = env.recipient_ids(status.message_id)
    now = env.clock()
    [job] = claim(stores(), "worker-a", now)
    next_attempt = now + timedelta(seconds=300)
    changed = stores().record_results(
        "worker-a",
        [
            result(
                job,
                RecipientState.DEFERRED,
                now,
                detail="451 4.3.0 try later",
                next_attempt_at=next_attempt,
            )
        ],
    )
    assert changed == 1

    [recipient] = env.status(status.message_id).recipients
    assert recipient.state is RecipientState.DEFERRED
    assert recipient.attempts == 1
    assert recipient.last_attempt_at == now
    assert recipient.next_attempt_at == next_attempt
    assert recipient.last_error == "451 4.3.0 try later"
    row = env.recipient_row(recipient_id)
    assert (row.lease_owner, row.leased_until) == (None, None)

    assert claim(stores(), "worker-b", now) == []
    assert claim(stores(), "worker-b", next_attempt - timedelta(seconds=1)) == []
    [again] = claim(stores(), "worker-b", next_attempt)
    assert again.recipient_id == recipient_id
    assert again.attempts == 1


def test_recipients_of_an_expired_message_are_not_claimed(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@example.ch", expiry_days=1)
    assert status.expires_at == env.clock() + timedelta(days=1)
    assert claim(stores(), "worker-a", status.expires_at) == []
    assert claim(stores(), "worker-a", status.expires_at + timedelta(hours=1)) == []
    # Just before it expires it is still due.
    assert len(claim(stores(), "worker-a", status.expires_at - timedelta(seconds=1))) == 1


def test_a_result_changes_the_recipient_and_writes_a_journal_event(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@example.ch", "b@example.ch")
    ids = env.recipient_ids(status.message_id)
    now = env.clock.advance(minutes=1)
    sent_job, failed_job = claim(stores(), "worker-a", now)
    changed = stores().record_results(
        "worker-a",
        [
            result(sent_job, RecipientState.SENT, now, detail="relay accepted the mail"),
            result(failed_job, RecipientState.FAILED, now, detail="550 5.1.1 no such user"),
        ],
    )
    assert changed == 2

    sent, failed = env.status(status.message_id).recipients
    assert (sent.state, sent.attempts, sent.last_error) == (RecipientState.SENT, 1, None)
    assert (sent.state_changed_at, sent.next_attempt_at) == (now, None)
    assert (failed.state, failed.attempts) == (RecipientState.FAILED, 1)
    assert failed.last_error == "550 5.1.1 no such user"
    assert env.journal(ids[0]) == [
        ("queued", "waiting for delivery"),
        ("sent", "relay accepted the mail"),
    ]
    assert env.journal(ids[1]) == [
        ("queued", "waiting for delivery"),
        ("failed", "550 5.1.1 no such user"),
    ]


def test_a_result_from_a_worker_whose_lease_was_taken_over_changes_nothing(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@example.ch")
    [recipient_id] = env.recipient_ids(status.message_id)
    now = env.clock()
    [stale] = claim(stores(), "worker-a", now)
    later = now + LEASE + timedelta(seconds=1)
    [current] = claim(stores(), "worker-b", later)

    # worker-a comes back late with a failure: journal only.
    late = stores().record_results(
        "worker-a", [result(stale, RecipientState.FAILED, later, detail="550 late answer")]
    )
    assert late == 0
    [recipient] = env.status(status.message_id).recipients
    assert (recipient.state, recipient.attempts) == (RecipientState.QUEUED, 0)
    assert recipient.last_error is None
    assert env.recipient_row(recipient_id).lease_owner == "worker-b"
    assert env.journal(recipient_id)[-1] == ("late-attempt", "550 late answer")

    # The holder's result counts.
    assert (
        stores().record_results(
            "worker-b", [result(current, RecipientState.SENT, later, detail="accepted")]
        )
        == 1
    )
    [recipient] = env.status(status.message_id).recipients
    assert (recipient.state, recipient.attempts) == (RecipientState.SENT, 1)
    assert [kind for kind, _ in env.journal(recipient_id)] == ["queued", "late-attempt", "sent"]


def test_a_result_from_a_worker_that_never_held_the_recipient_changes_nothing(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@example.ch")
    [recipient_id] = env.recipient_ids(status.message_id)
    [job] = claim(stores(), "worker-a", env.clock())
    assert stores().record_results("intruder", [result(job, RecipientState.SENT, env.clock())]) == 0
    assert states(env, status.message_id) == [RecipientState.QUEUED]
    assert env.recipient_row(recipient_id).lease_owner == "worker-a"
    assert [kind for kind, _ in env.journal(recipient_id)] == ["queued", "late-attempt"]


@pytest.mark.parametrize(
    ("final", "late", "recorded"),
    [
        # Recorded by this worker, which then reports the same recipient again.
        (RecipientState.SENT, RecipientState.DEFERRED, True),
        (RecipientState.SENT, RecipientState.FAILED, True),
        (RecipientState.FAILED, RecipientState.SENT, True),
        # Changed elsewhere (pickup, cancel, the sweep) while the worker still holds it.
        (RecipientState.SENT, RecipientState.DEFERRED, False),
        (RecipientState.OPENED, RecipientState.DEFERRED, False),
        (RecipientState.CANCELLED, RecipientState.SENT, False),
        (RecipientState.EXPIRED, RecipientState.SENT, False),
    ],
)
def test_a_result_for_a_recipient_no_longer_waiting_never_moves_it_back(
    env: Env,
    stores: Callable[[], SqlStore],
    final: RecipientState,
    late: RecipientState,
    recorded: bool,
) -> None:
    status = env.send("a@example.ch")
    [recipient_id] = env.recipient_ids(status.message_id)
    now = env.clock()
    [job] = claim(stores(), "worker-a", now)
    if recorded:
        assert stores().record_results("worker-a", [result(job, final, now, detail="x")]) == 1
    else:
        set_state(env, recipient_id, final)
        assert env.recipient_row(recipient_id).lease_owner == "worker-a"
    before = env.status(status.message_id).recipients[0]

    changed = stores().record_results(
        "worker-a",
        [result(job, late, now + timedelta(seconds=5), detail="late", next_attempt_at=None)],
    )
    assert changed == 0
    after = env.status(status.message_id).recipients[0]
    assert after == before
    assert env.journal(recipient_id)[-1] == ("late-attempt", "late")


def test_expire_due_expires_waiting_and_sent_recipients_and_leaves_final_ones(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    addresses = ["queued@x.ch", "deferred@x.ch", "sent@x.ch", "failed@x.ch", "opened@x.ch"]
    status = env.send(*addresses, expiry_days=2)
    keep = env.send("other@x.ch", expiry_days=7)
    ids = env.recipient_ids(status.message_id)
    now = env.clock.advance(hours=1)
    jobs = {job.address: job for job in claim(stores(), "worker-a", now)}
    stores().record_results(
        "worker-a",
        [
            result(
                jobs["deferred@x.ch"],
                RecipientState.DEFERRED,
                now,
                detail="451",
                next_attempt_at=now + timedelta(minutes=5),
            ),
            result(jobs["sent@x.ch"], RecipientState.SENT, now, detail="ok"),
            result(jobs["failed@x.ch"], RecipientState.FAILED, now, detail="550"),
            result(jobs["opened@x.ch"], RecipientState.SENT, now, detail="ok"),
        ],
    )
    set_state(env, ids[4], RecipientState.OPENED)

    store = stores()
    assert store.expire_due(now=status.expires_at - timedelta(seconds=1), limit=100) == 0
    expiry = status.expires_at + timedelta(minutes=1)
    assert store.expire_due(now=expiry, limit=100) == 3
    assert states(env, status.message_id) == [
        RecipientState.EXPIRED,
        RecipientState.EXPIRED,
        RecipientState.EXPIRED,
        RecipientState.FAILED,
        RecipientState.OPENED,
    ]
    for recipient_id in ids[:3]:
        assert env.journal(recipient_id)[-1] == ("expired", "the message expired")
        row = env.recipient_row(recipient_id)
        assert row.state_changed_at == expiry
        assert (row.lease_owner, row.leased_until) == (None, None)
    assert env.journal(ids[3])[-1][0] == "failed"
    assert env.journal(ids[4])[-1][0] == "sent"
    assert states(env, keep.message_id) == [RecipientState.QUEUED]
    # Nothing twice.
    assert store.expire_due(now=expiry, limit=100) == 0
    assert [kind for kind, _ in env.journal(ids[0])].count("expired") == 1


def test_expire_due_takes_at_most_limit(env: Env, stores: Callable[[], SqlStore]) -> None:
    status = env.send("a@x.ch", "b@x.ch", "c@x.ch", expiry_days=1)
    after = status.expires_at + timedelta(seconds=1)
    assert stores().expire_due(now=after, limit=2) == 2
    assert stores().expire_due(now=after, limit=2) == 1
    assert states(env, status.message_id) == [RecipientState.EXPIRED] * 3


def test_extend_leases_only_extends_what_the_worker_holds(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@x.ch", "b@x.ch")
    ids = env.recipient_ids(status.message_id)
    now = env.clock()
    claim(stores(), "worker-a", now)
    assert stores().extend_leases("worker-a", ids[:1], now + 3 * LEASE) == {ids[0]}
    assert stores().extend_leases("worker-b", ids[1:], now + 3 * LEASE) == set()
    assert env.recipient_row(ids[0]).leased_until == now + 3 * LEASE
    assert env.recipient_row(ids[1]).leased_until == now + LEASE
    later = now + 2 * LEASE
    assert [job.recipient_id for job in claim(stores(), "worker-b", later)] == ids[1:]


def test_two_threads_claiming_at_once_never_get_the_same_recipient(env: Env) -> None:
    ids: list[int] = []
    for batch in range(2):
        status = env.send(*(f"r{batch}-{n}@example.ch" for n in range(100)))
        ids += env.recipient_ids(status.message_id)
    now = env.clock()
    start = threading.Barrier(2)
    claimed: dict[str, list[int]] = {"worker-a": [], "worker-b": []}
    errors: list[BaseException] = []

    def run(worker: str) -> None:
        store = env.database.store()
        try:
            start.wait()
            while jobs := claim(store, worker, now, limit=7):
                claimed[worker] += [job.recipient_id for job in jobs]
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    a, b = set(claimed["worker-a"]), set(claimed["worker-b"])
    assert len(a) == len(claimed["worker-a"])
    assert len(b) == len(claimed["worker-b"])
    assert a & b == set()
    assert a | b == set(ids)
    assert len(ids) == 200


def test_postgresql_skips_rows_another_transaction_locks(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    """A claim does not wait for recipients another worker is claiming right now."""
    if env.database.is_sqlite:
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has one writer at a time")
    status = env.send("a@x.ch", "b@x.ch", "c@x.ch")
    ids = env.recipient_ids(status.message_id)
    got: list[list[int]] = []
    with env.database.engine.connect() as locker:
        transaction = locker.begin()
        locker.execute(
            text("SELECT id FROM recipients WHERE id IN (:a, :b) FOR UPDATE"),
            {"a": ids[0], "b": ids[1]},
        )
        thread = threading.Thread(
            target=lambda: got.append(
                [job.recipient_id for job in claim(stores(), "worker-b", env.clock())]
            )
        )
        thread.start()
        thread.join(timeout=30)
        blocked = thread.is_alive()
        transaction.rollback()
    thread.join(timeout=30)
    assert not blocked, "the claim waited for locked rows instead of skipping them"
    assert got == [ids[2:]]


def test_extend_leases_reports_what_was_taken_back(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@x.ch", "b@x.ch", "c@x.ch")
    ids = env.recipient_ids(status.message_id)
    now = env.clock()
    claim(stores(), "worker-a", now)
    stores().extend_leases("worker-a", [ids[0], ids[2]], now + 3 * LEASE)
    set_state(env, ids[2], RecipientState.EXPIRED)
    later = now + 2 * LEASE
    assert [job.recipient_id for job in claim(stores(), "worker-b", later)] == [ids[1]]
    assert stores().extend_leases("worker-a", ids, later + LEASE) == {ids[0]}
    assert env.recipient_row(ids[1]).lease_owner == "worker-b"


def test_release_leases_makes_recipients_due_at_once_without_an_attempt(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    status = env.send("a@x.ch", "b@x.ch")
    ids = env.recipient_ids(status.message_id)
    now = env.clock()
    claim(stores(), "worker-a", now)
    stores().release_leases("worker-b", ids)  # not its leases: nothing happens
    assert claim(stores(), "worker-b", now) == []
    stores().release_leases("worker-a", ids[:1])
    row = env.recipient_row(ids[0])
    assert (row.lease_owner, row.leased_until, row.attempts, row.state) == (None, None, 0, "queued")
    assert [job.recipient_id for job in claim(stores(), "worker-b", now)] == ids[:1]


def test_postgresql_expiry_skips_rows_a_worker_is_recording(
    env: Env, stores: Callable[[], SqlStore]
) -> None:
    """The sweep neither waits for a row locked by a recording worker nor overwrites the
    state that worker writes: it takes the row at its next sweep, if it is still due."""
    if env.database.is_sqlite:
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has one writer at a time")
    status = env.send("a@x.ch", "b@x.ch", expiry_days=1)
    ids = env.recipient_ids(status.message_id)
    after = env.clock() + timedelta(days=1, seconds=1)
    expired: list[int] = []
    with env.database.engine.connect() as recorder:
        transaction = recorder.begin()
        recorder.execute(
            text("SELECT id FROM recipients WHERE id = :id FOR UPDATE"), {"id": ids[0]}
        )
        recorder.execute(
            text("UPDATE recipients SET state = 'failed' WHERE id = :id"), {"id": ids[0]}
        )
        thread = threading.Thread(
            target=lambda: expired.append(stores().expire_due(now=after, limit=10))
        )
        thread.start()
        thread.join(timeout=30)
        blocked = thread.is_alive()
        transaction.commit()
    thread.join(timeout=30)
    assert not blocked, "the sweep waited for a locked row instead of skipping it"
    assert expired == [1]
    assert [env.recipient_row(i).state for i in ids] == ["failed", "expired"]
    assert stores().expire_due(now=after, limit=10) == 0


def test_a_message_is_stored_with_its_parts_in_order_and_its_tokens_by_position(
    env: Env,
) -> None:
    """SendMessage's insert (one statement on PostgreSQL, five on SQLite) numbers
    attachments and recipients as sent, keeps each token hash with its position, and
    journals acceptance first, then each recipient in order."""
    files = [("1.pdf", "application/pdf", b"%PDF-1.4 one"), ("2.txt", "text/plain", b"two")]
    files.append(("3.txt", "text/plain", b"three"))
    status = env.send(
        "c@example.ch",
        "a@example.ch",
        "b@example.ch",
        attachments=tuple(
            AttachmentDraft(filename=n, content_type=t, content=c) for n, t, c in files
        ),
    )
    with env.database.engine.connect() as connection:
        message = connection.execute(
            select(MessageRow.key_id, MessageRow.wrapped_key).where(
                MessageRow.id == status.message_id
            )
        ).one()
        recipients = connection.execute(
            select(
                RecipientRow.id,
                RecipientRow.position,
                RecipientRow.address,
                RecipientRow.token_hash,
            )
            .where(RecipientRow.message_id == status.message_id)
            .order_by(RecipientRow.position)
        ).all()
        attachments = connection.execute(
            select(
                AttachmentRow.position,
                AttachmentRow.sealed_filename,
                AttachmentRow.content_type,
                AttachmentRow.size,
                AttachmentRow.sealed_content,
            )
            .where(AttachmentRow.message_id == status.message_id)
            .order_by(AttachmentRow.position)
        ).all()
        events = connection.execute(
            select(EventRow.kind, EventRow.recipient_id)
            .where(EventRow.message_id == status.message_id)
            .order_by(EventRow.id)
        ).all()
    cipher = MessageCipher.unwrap(
        env.keyring,
        WrappedKey(key_id=message.key_id, wrapped=bytes(message.wrapped_key)),
        status.message_id,
    )
    assert [(r.position, r.address) for r in recipients] == [
        (1, "c@example.ch"),
        (2, "a@example.ch"),
        (3, "b@example.ch"),
    ]
    assert [bytes(r.token_hash) for r in recipients] == [
        sealing.token_hash(cipher.pickup_token(position)) for position in (1, 2, 3)
    ]
    assert [
        (
            a.position,
            cipher.open(sealing.attachment_name(a.position), bytes(a.sealed_filename)).decode(),
            a.content_type,
            a.size,
            cipher.open(sealing.attachment_content(a.position), bytes(a.sealed_content)),
        )
        for a in attachments
    ] == [(position, n, t, len(c), c) for position, (n, t, c) in enumerate(files, start=1)]
    assert [(e.kind, e.recipient_id) for e in events] == [("accepted", None)] + [
        ("queued", r.id) for r in recipients
    ]
