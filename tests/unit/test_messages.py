"""MessageService with a real SqlStore, on SQLite and on PostgreSQL (fixture database_url):
SendMessage's send, then SendMessages' send_batch (each message as send would treat it
alone, all stored in one transaction)."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.messages import MAX_BATCH_MESSAGES, MessageService
from soap_service.domain.model import (
    Account,
    AttachmentDraft,
    Language,
    MessageDraft,
    MessageLimits,
    MessageState,
    MessageStatus,
    MessageType,
    RecipientState,
    RecipientStatus,
)
from soap_service.domain.ports import NewAccount, NewMessage, ReferenceRecord
from soap_service.domain.sealing import MessageCipher
from soap_service.errors import (
    AttachmentRejected,
    DuplicateReference,
    InvalidAddress,
    NotFound,
    ServiceError,
    ValidationError,
)
from soap_service.persistence.database import Database
from soap_service.persistence.store import SqlStore
from soap_service.persistence.tables import AttachmentRow, EventRow, MessageRow, RecipientRow
from tests.conftest import BACKENDS, PostgresDatabases, database_url_for

NOW = datetime(2024, 5, 31, 10, 0, 0, tzinfo=UTC)
SUBJECT = "Lohnabrechnung Mai 2024 for Hans Muster"
TEXT_BODY = "Net salary CHF 6'543.21, paid on 25 May."
HTML_BODY = "<p>Net salary <b>CHF 6'543.21</b></p>"
ATTACHMENT = b"%PDF-1.7\nSECRET-PAYSLIP-CONTENT " + b"0123456789" * 100


def draft(**changes: object) -> MessageDraft:
    base = MessageDraft(
        reference="payroll-2024-05-0001",
        type=MessageType.PERSONAL,
        recipients=("hans.muster@example.ch", "hr@example.ch"),
        subject=SUBJECT,
        text_body=TEXT_BODY,
        html_body=HTML_BODY,
        attachments=(
            AttachmentDraft(
                filename="payslip.pdf", content_type="application/pdf", content=ATTACHMENT
            ),
        ),
        language=Language.FR,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Setup:
    database: Database
    keyring: crypto.Keyring
    clock: list[datetime]
    alice: Account
    bob: Account
    _stores: list[SqlStore]

    def service(self) -> MessageService:
        store = self.database.store()
        self._stores.append(store)
        return self.service_on(store)

    def service_on(self, store: SqlStore) -> MessageService:
        return MessageService(
            store=store,
            keyring=self.keyring,
            limits=MessageLimits(),
            default_language=Language.DE,
            now=lambda: self.clock[0],
        )

    def count(self, model: type[MessageRow | RecipientRow | EventRow]) -> int:
        """Rows of this test's two accounts (the database may be shared by a module)."""
        ours = select(MessageRow.id).where(MessageRow.account_id.in_([self.alice.id, self.bob.id]))
        column = MessageRow.id if model is MessageRow else model.message_id
        with Session(self.database.engine) as session:
            return session.scalar(select(func.count()).where(column.in_(ours))) or 0


@pytest.fixture(scope="module", params=BACKENDS)
def shared_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresDatabases,
) -> Iterator[Database]:
    """One database per backend for the module: dropping a PostgreSQL database takes about
    a second, too long to do for every test. Tests keep apart by using their own accounts."""
    folder = tmp_path_factory.mktemp(f"messages-{request.param}")
    database = Database(database_url_for(request.param, folder, postgres))
    database.upgrade()
    yield database
    database.dispose()


def make_setup(database: Database, keyring_path: Path) -> Setup:
    store = database.store()
    suffix = uuid.uuid4().hex[:8]
    alice, bob = (
        store.add_account(
            NewAccount(
                username=f"{name}-{suffix}",
                organisation=name.title(),
                password_hash="not-used-here",
                digest_secret=None,
                created_at=NOW,
            )
        )
        for name in ("alice", "bob")
    )
    return Setup(
        database=database,
        keyring=crypto.Keyring.load_or_create(keyring_path),
        clock=[NOW],
        alice=alice,
        bob=bob,
        _stores=[store],
    )


@pytest.fixture
def setup(shared_database: Database, tmp_path: Path) -> Iterator[Setup]:
    result = make_setup(shared_database, tmp_path / "keyring.json")
    yield result
    for opened in result._stores:
        opened.close()


@pytest.fixture
def fresh_setup(database_url: str, tmp_path: Path) -> Iterator[Setup]:
    """A database of its own (conftest's database_url), for the races."""
    database = Database(database_url)
    database.upgrade()
    result = make_setup(database, tmp_path / "keyring.json")
    yield result
    for opened in result._stores:
        opened.close()
    database.dispose()


def test_send_returns_the_status_with_queued_recipients(setup: Setup) -> None:
    status = setup.service().send(setup.alice, draft())

    assert str(uuid.UUID(status.message_id)) == status.message_id
    assert status == MessageStatus(
        message_id=status.message_id,
        reference="payroll-2024-05-0001",
        type=MessageType.PERSONAL,
        language=Language.FR,
        accepted_at=NOW,
        expires_at=NOW + timedelta(days=7),
        recipients=(
            RecipientStatus(
                address="hans.muster@example.ch",
                state=RecipientState.QUEUED,
                attempts=0,
                state_changed_at=NOW,
            ),
            RecipientStatus(
                address="hr@example.ch",
                state=RecipientState.QUEUED,
                attempts=0,
                state_changed_at=NOW,
            ),
        ),
    )
    assert status.state is MessageState.QUEUED


def test_the_stored_status_equals_the_returned_one(setup: Setup) -> None:
    sent = setup.service().send(setup.alice, draft(expiry_days=30))

    # A new service and session: what was returned is what was committed.
    stored = setup.service().status(setup.alice, message_id=sent.message_id)
    assert stored == sent
    assert stored.expires_at == NOW + timedelta(days=30)
    assert stored.accepted_at.tzinfo is not None


def test_content_is_encrypted_at_rest(setup: Setup) -> None:
    sent = setup.service().send(setup.alice, draft())

    with Session(setup.database.engine) as session:
        message = session.get(MessageRow, sent.message_id)
        assert message is not None
        attachments = session.scalars(
            select(AttachmentRow).where(AttachmentRow.message_id == sent.message_id)
        ).all()
    assert len(attachments) == 1
    sealed_columns = [
        bytes(message.sealed_subject),
        bytes(message.sealed_text_body),
        bytes(message.sealed_html_body or b""),
        bytes(attachments[0].sealed_content),
        bytes(message.fingerprint),
        bytes(message.wrapped_key),
    ]
    for plaintext in (SUBJECT, TEXT_BODY, HTML_BODY):
        for column in sealed_columns:
            assert plaintext.encode() not in column
            assert plaintext[:12].encode() not in column
    for column in sealed_columns:
        assert b"SECRET-PAYSLIP-CONTENT" not in column
    assert attachments[0].size == len(ATTACHMENT)
    assert message.key_id == setup.keyring.current_key_id

    cipher = MessageCipher.unwrap(
        setup.keyring,
        crypto.WrappedKey(key_id=message.key_id, wrapped=bytes(message.wrapped_key)),
        sent.message_id,
    )

    def opened(part: str, sealed: bytes) -> bytes:
        return cipher.open(part, bytes(sealed))

    assert opened(sealing.SUBJECT, message.sealed_subject).decode() == SUBJECT
    assert opened(sealing.TEXT_BODY, message.sealed_text_body).decode() == TEXT_BODY
    assert message.sealed_html_body is not None
    assert opened(sealing.HTML_BODY, message.sealed_html_body).decode() == HTML_BODY
    assert opened(sealing.attachment_content(1), attachments[0].sealed_content) == ATTACHMENT
    name = opened(sealing.attachment_name(1), attachments[0].sealed_filename)
    assert name == b"payslip.pdf"
    assert b"payslip" not in bytes(attachments[0].sealed_filename)
    # Each part is bound to its own place: the subject does not open as the body.
    with pytest.raises(crypto.DecryptionFailed):
        opened(sealing.TEXT_BODY, message.sealed_subject)


def test_a_message_without_html_body_stores_none(setup: Setup) -> None:
    sent = setup.service().send(setup.alice, draft(html_body=None, attachments=()))
    with Session(setup.database.engine) as session:
        message = session.get(MessageRow, sent.message_id)
    assert message is not None
    assert message.sealed_html_body is None
    assert message.content_bytes == len(TEXT_BODY.encode())


def test_an_identical_resend_returns_the_original_message(setup: Setup) -> None:
    first = setup.service().send(setup.alice, draft())
    setup.clock[0] = NOW + timedelta(minutes=3)

    # Domain case and duplicate recipients normalise to the same message.
    again = setup.service().send(
        setup.alice,
        draft(recipients=("hans.muster@EXAMPLE.ch", "hr@example.ch", "hr@Example.CH")),
    )

    assert again == first
    assert again.accepted_at == NOW
    assert setup.count(MessageRow) == 1
    assert setup.count(RecipientRow) == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": SUBJECT + "."},
        {"text_body": TEXT_BODY + " "},
        {"html_body": None},
        {"recipients": ("hans.muster@example.ch",)},
        {"recipients": ("hr@example.ch", "hans.muster@example.ch")},
        {"attachments": ()},
        {
            "attachments": (
                AttachmentDraft(
                    filename="payslip.pdf",
                    content_type="application/pdf",
                    content=ATTACHMENT + b"!",
                ),
            )
        },
        {"type": MessageType.REGISTERED},
        {"language": Language.DE},
        {"expiry_days": 8},
    ],
    ids=lambda changes: "-".join(changes),
)
def test_the_same_reference_with_other_content_is_refused(
    setup: Setup, changes: dict[str, object]
) -> None:
    setup.service().send(setup.alice, draft())

    with pytest.raises(
        DuplicateReference, match=r"^the reference 'payroll-2024-05-0001' was already used"
    ) as caught:
        setup.service().send(setup.alice, draft(**changes))
    assert caught.value.code == "Client.DuplicateReference"
    assert setup.count(MessageRow) == 1


def test_a_resend_after_key_rotation_is_still_recognised(setup: Setup, tmp_path: Path) -> None:
    first = setup.service().send(setup.alice, draft())
    crypto.Keyring.rotate(tmp_path / "keyring.json")
    setup.keyring = crypto.Keyring.load(tmp_path / "keyring.json")

    assert setup.service().send(setup.alice, draft()) == first
    with pytest.raises(DuplicateReference):
        setup.service().send(setup.alice, draft(subject="Other"))


def test_references_belong_to_one_account(setup: Setup) -> None:
    alice = setup.service().send(setup.alice, draft())
    bob = setup.service().send(setup.bob, draft())
    assert bob.message_id != alice.message_id
    assert setup.count(MessageRow) == 2


def test_another_accounts_message_is_not_found_like_an_unknown_one(setup: Setup) -> None:
    service = setup.service()
    sent = service.send(setup.alice, draft())

    with pytest.raises(NotFound) as other:
        service.status(setup.bob, message_id=sent.message_id)
    with pytest.raises(NotFound) as unknown:
        service.status(setup.bob, message_id=str(uuid.uuid4()))
    assert other.value.message == unknown.value.message == "no message with this MessageId"
    assert other.value.code == unknown.value.code == "Client.NotFound"

    with pytest.raises(NotFound) as by_reference:
        service.status(setup.bob, reference="payroll-2024-05-0001")
    assert by_reference.value.message == "no message with this Reference"


def test_status_by_reference(setup: Setup) -> None:
    service = setup.service()
    first = service.send(setup.alice, draft())
    second = service.send(setup.alice, draft(reference="payroll-2024-05-0002"))

    assert service.status(setup.alice, reference="payroll-2024-05-0001") == first
    assert service.status(setup.alice, reference="payroll-2024-05-0002") == second
    assert first.message_id != second.message_id
    with pytest.raises(NotFound, match=r"^no message with this Reference$"):
        service.status(setup.alice, reference="payroll-2024-05-0003")


def test_status_needs_exactly_one_of_id_and_reference(setup: Setup) -> None:
    service = setup.service()
    sent = service.send(setup.alice, draft())
    with pytest.raises(ValidationError, match=r"^give either MessageId or Reference"):
        service.status(setup.alice)
    with pytest.raises(ValidationError, match=r"^give either MessageId or Reference"):
        service.status(setup.alice, message_id=sent.message_id, reference=sent.reference)


def test_the_journal_records_acceptance_and_one_queued_event_per_recipient(setup: Setup) -> None:
    sent = setup.service().send(setup.alice, draft())

    with Session(setup.database.engine) as session:
        events = session.scalars(
            select(EventRow).where(EventRow.message_id == sent.message_id).order_by(EventRow.id)
        ).all()
        recipients = session.scalars(
            select(RecipientRow)
            .where(RecipientRow.message_id == sent.message_id)
            .order_by(RecipientRow.position)
        ).all()

    assert [(event.kind, event.recipient_id) for event in events] == [
        ("accepted", None),
        ("queued", recipients[0].id),
        ("queued", recipients[1].id),
    ]
    assert [recipient.address for recipient in recipients] == [
        "hans.muster@example.ch",
        "hr@example.ch",
    ]
    assert all(event.at == NOW for event in events)
    assert events[0].detail == (
        f"2 recipient(s), 1 attachment(s), "
        f"{len(ATTACHMENT) + len(TEXT_BODY.encode()) + len(HTML_BODY.encode())} bytes"
    )
    # The journal names no content.
    assert all(SUBJECT not in (event.detail or "") for event in events)


def test_an_identical_resend_writes_no_new_events(setup: Setup) -> None:
    setup.service().send(setup.alice, draft())
    setup.service().send(setup.alice, draft())
    assert setup.count(EventRow) == 3


class RacingStore(SqlStore):
    """Holds every thread just before its insert until all are there, so all of them try
    to insert the same reference at once and the database must pick one."""

    def __init__(
        self, database: Database, barrier: threading.Barrier, conflicts: list[str]
    ) -> None:
        super().__init__(database.engine, database.write_lock, database.kept)
        self._barrier = barrier
        self._conflicts = conflicts

    def insert_message(self, message: NewMessage) -> ReferenceRecord | None:
        self._barrier.wait(timeout=30)
        existing = super().insert_message(message)
        if existing is not None:
            self._conflicts.append(message.reference)
        return existing


def race(setup: Setup, drafts: list[MessageDraft]) -> list[MessageStatus | Exception]:
    barrier = threading.Barrier(len(drafts))
    conflicts: list[str] = []
    results: list[MessageStatus | Exception] = [RuntimeError("did not run")] * len(drafts)

    def send(index: int, message: MessageDraft) -> None:
        store = RacingStore(setup.database, barrier, conflicts)
        try:
            results[index] = setup.service_on(store).send(setup.alice, message)
        except Exception as exc:
            results[index] = exc
        finally:
            store.close()

    threads = [
        threading.Thread(target=send, args=(index, message)) for index, message in enumerate(drafts)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    # Both inserts ran together: the loser met the unique index and stored nothing.
    assert conflicts == ["payroll-2024-05-0001"]
    return results


def test_concurrent_sends_of_the_same_reference_store_one_message(fresh_setup: Setup) -> None:
    setup = fresh_setup
    results = race(setup, [draft(), draft()])

    assert all(isinstance(result, MessageStatus) for result in results), results
    first, second = results
    assert first == second
    assert setup.count(MessageRow) == 1
    assert setup.count(RecipientRow) == 2
    assert setup.count(EventRow) == 3


def test_concurrent_sends_of_the_same_reference_with_other_content(fresh_setup: Setup) -> None:
    setup = fresh_setup
    results = race(setup, [draft(), draft(subject="Something else")])

    statuses = [result for result in results if isinstance(result, MessageStatus)]
    refused = [result for result in results if isinstance(result, DuplicateReference)]
    assert len(statuses) == 1, results
    assert len(refused) == 1, results
    assert setup.count(MessageRow) == 1


def test_large_and_small_attachments_are_stored_whole_and_in_order(setup: Setup) -> None:
    """On SQLite a large attachment is written into its row page by page (never bound as
    a whole value); on both backends each comes back as it was sent, in its place."""
    large = b"%PDF-1.7\n" + bytes(range(256)) * (12 * 1024)  # 3 MiB
    files = (
        AttachmentDraft(filename="a.pdf", content_type="application/pdf", content=ATTACHMENT),
        AttachmentDraft(filename="b.pdf", content_type="application/pdf", content=large),
        AttachmentDraft(filename="c.pdf", content_type="application/pdf", content=ATTACHMENT[:50]),
    )
    sent = setup.service().send(setup.alice, draft(attachments=files))
    with Session(setup.database.engine) as session:
        message = session.get(MessageRow, sent.message_id)
        assert message is not None
        stored = session.scalars(
            select(AttachmentRow)
            .where(AttachmentRow.message_id == sent.message_id)
            .order_by(AttachmentRow.id)
        ).all()
    cipher = MessageCipher.unwrap(
        setup.keyring,
        crypto.WrappedKey(key_id=message.key_id, wrapped=bytes(message.wrapped_key)),
        sent.message_id,
    )
    assert [row.position for row in stored] == [1, 2, 3]
    assert [row.size for row in stored] == [len(f.content) for f in files]
    for row, sent_file in zip(stored, files, strict=True):
        content = cipher.open(sealing.attachment_content(row.position), bytes(row.sealed_content))
        assert content == sent_file.content


# SendMessages: send_batch.


def payslips(count: int, prefix: str = "run") -> list[MessageDraft]:
    return [
        draft(reference=f"{prefix}-{number:03d}", recipients=(f"p{number}@example.ch",))
        for number in range(1, count + 1)
    ]


def test_each_message_gets_its_own_result_in_order(setup: Setup) -> None:
    batch = payslips(4)
    batch[1] = draft(reference="run-bad-address", recipients=("not an address",))
    batch[2] = draft(
        reference="run-bad-file",
        attachments=(
            AttachmentDraft(filename="setup.exe", content_type="application/pdf", content=b"MZ"),
        ),
    )
    results = setup.service().send_batch(setup.alice, batch)

    assert [type(result) for result in results] == [
        MessageStatus,
        InvalidAddress,
        AttachmentRejected,
        MessageStatus,
    ]
    assert [r.reference for r in results if isinstance(r, MessageStatus)] == [
        "run-001",
        "run-004",
    ]
    assert all(
        recipient.state is RecipientState.QUEUED
        for result in results
        if isinstance(result, MessageStatus)
        for recipient in result.recipients
    )
    # Stored as SendMessage stores them: the message, its recipient, its journal.
    assert setup.count(MessageRow) == 2
    assert setup.count(RecipientRow) == 2
    assert setup.count(EventRow) == 4
    for result in results:
        if isinstance(result, MessageStatus):
            assert setup.service().status(setup.alice, message_id=result.message_id) == result


def test_a_resent_batch_answers_with_the_original_messages(setup: Setup) -> None:
    batch = payslips(3)
    first = setup.service().send_batch(setup.alice, batch)
    setup.clock[0] = setup.clock[0].replace(hour=11)
    again = setup.service().send_batch(setup.alice, batch)

    assert again == first
    assert setup.count(MessageRow) == 3
    assert setup.count(EventRow) == 6


def test_known_references_are_answered_without_storing_them_again(setup: Setup) -> None:
    batch = payslips(3)
    first = setup.service().send_batch(setup.alice, batch)
    inserted: list[list[str]] = []

    class CountingStore(SqlStore):
        def insert_messages(self, messages: Sequence[NewMessage]) -> list[ReferenceRecord | None]:
            inserted.append([message.reference for message in messages])
            return super().insert_messages(messages)

    store = CountingStore(setup.database.engine, setup.database.write_lock, setup.database.kept)
    changed = draft(reference="run-002", subject="Another payslip")
    try:
        again = setup.service_on(store).send_batch(
            setup.alice, [*batch, draft(reference="run-new"), changed]
        )
    finally:
        store.close()
    assert inserted == [["run-new"]]  # the known ones were neither sealed nor stored
    assert again[:3] == first
    assert isinstance(again[3], MessageStatus) and again[3].reference == "run-new"
    assert isinstance(again[4], DuplicateReference)


def test_a_reference_twice_in_one_batch(setup: Setup) -> None:
    same = draft(reference="twice")
    other = draft(reference="twice-other")
    changed = draft(reference="twice-other", subject="Another subject")
    results = setup.service().send_batch(setup.alice, [same, other, same, changed])

    assert isinstance(results[0], MessageStatus)
    assert results[2] == results[0]  # the same message: one stored, the same answer
    assert isinstance(results[1], MessageStatus)
    assert isinstance(results[3], DuplicateReference)
    assert setup.count(MessageRow) == 2


def test_a_batch_holds_1_to_100_messages(setup: Setup) -> None:
    service = setup.service()
    with pytest.raises(ValidationError, match="1 to 100"):
        service.send_batch(setup.alice, [])
    with pytest.raises(ValidationError, match="1 to 100"):
        service.send_batch(setup.alice, payslips(MAX_BATCH_MESSAGES + 1))
    assert setup.count(MessageRow) == 0

    results = service.send_batch(setup.alice, payslips(MAX_BATCH_MESSAGES))
    assert all(isinstance(result, MessageStatus) for result in results)
    assert setup.count(MessageRow) == MAX_BATCH_MESSAGES


def test_a_batch_of_only_bad_messages_stores_nothing(setup: Setup) -> None:
    results = setup.service().send_batch(
        setup.alice, [draft(reference="x", recipients=()), draft(reference="", subject="")]
    )
    assert all(isinstance(result, ServiceError) for result in results)
    assert setup.count(MessageRow) == 0


def test_concurrent_batches_sharing_references_in_opposite_orders(
    fresh_setup: Setup,
) -> None:
    """Each batch is one transaction that waits for the other's unique-index entries of the
    same references: inserted in reference order, neither can hold what the other waits
    for first (in batch order, PostgreSQL would report a deadlock)."""
    setup = fresh_setup
    forward = payslips(40, "shared")
    backward = list(reversed(forward))
    barrier = threading.Barrier(2)
    results: list[list[MessageStatus | ServiceError] | BaseException] = [[], []]

    def send(index: int, batch: list[MessageDraft]) -> None:
        service = setup.service_on(setup.database.store())
        barrier.wait(timeout=30)
        try:
            results[index] = service.send_batch(setup.alice, batch)
        except BaseException as exc:
            results[index] = exc

    threads = [
        threading.Thread(target=send, args=(0, forward)),
        threading.Thread(target=send, args=(1, backward)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    first, second = results
    assert isinstance(first, list) and isinstance(second, list), results
    assert first == list(reversed(second))
    assert all(isinstance(result, MessageStatus) for result in first)
    assert setup.count(MessageRow) == 40
