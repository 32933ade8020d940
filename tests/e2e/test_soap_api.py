"""SendMessage and GetStatus through zeep against a real gunicorn HTTPS process,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import zeep
from sqlalchemy import create_engine, select

from soap_service.persistence.tables import AttachmentRow, EventRow, MessageRow, RecipientRow
from tests.e2e.conftest import Sender
from tests.support import (
    ServiceProcess,
    count_messages,
    envelope,
    fault_of,
    security_header,
    send_message_xml,
    stored_attachments,
)

PDF = b"%PDF-1.4\n" + os.urandom(50_000)


def new_reference() -> str:
    return f"payroll-2026-11-{uuid.uuid4().hex[:10]}"


def payslip(reference: str, **overrides: object) -> dict[str, object]:
    message: dict[str, object] = {
        "Reference": reference,
        "Type": "confidential",
        "Recipients": {
            "Recipient": [{"Address": "anna.muster@example.ch"}, {"Address": "bob@bücher.ch"}]
        },
        "Subject": "Lohnabrechnung November 2026",
        "TextBody": "Ihre Lohnabrechnung liegt bei.",
        "HtmlBody": "<p>Ihre Lohnabrechnung liegt bei.</p>",
        "Attachments": {
            "Attachment": [
                {"FileName": "payslip.pdf", "ContentType": "application/pdf", "Content": PDF},
                {"FileName": "notes.txt", "ContentType": "text/plain", "Content": b"Notes"},
            ]
        },
        "Language": "fr",
        "ExpiryDays": 10,
    }
    message.update(overrides)
    return message


def fault_code(error: zeep.exceptions.Fault) -> str:
    return str(error.code).split(":", 1)[-1]


def test_send_message_stores_and_reports_every_recipient(
    service: ServiceProcess, sender: Sender
) -> None:
    reference = new_reference()
    before = datetime.now(UTC)
    result = sender.client.service.SendMessage(Message=payslip(reference))

    assert uuid.UUID(result.MessageId)
    assert result.Reference == reference
    assert result.Type == "confidential"
    assert result.State == "queued"
    assert result.Language == "fr"
    assert before - timedelta(seconds=1) <= result.AcceptedAt <= datetime.now(UTC)
    assert result.ExpiresAt - result.AcceptedAt == timedelta(days=10)
    recipients = result.Recipients.Recipient
    assert [r.Address for r in recipients] == ["anna.muster@example.ch", "bob@bücher.ch"]
    assert {r.State for r in recipients} == {"queued"}
    assert {r.Attempts for r in recipients} == {0}

    engine = create_engine(service.database_url)
    with engine.connect() as connection:
        row = connection.execute(select(MessageRow).where(MessageRow.id == result.MessageId)).one()
        attachments = connection.execute(
            select(AttachmentRow).where(AttachmentRow.message_id == row.id)
        ).all()
        stored_recipients = connection.execute(
            select(RecipientRow.address, RecipientRow.state).where(
                RecipientRow.message_id == row.id
            )
        ).all()
        events = connection.execute(
            select(EventRow.kind).where(EventRow.message_id == row.id).order_by(EventRow.id)
        ).all()
    engine.dispose()
    assert row.reference == reference
    assert sorted(stored_recipients) == [
        ("anna.muster@example.ch", "queued"),
        ("bob@bücher.ch", "queued"),
    ]
    assert [kind for (kind,) in events] == ["accepted", "queued", "queued"]
    # Encrypted at rest: no plaintext in any stored column, sizes kept; decrypted, the
    # very bytes zeep sent.
    assert [a.size for a in attachments] == [len(PDF), 5]
    assert stored_attachments(service, result.MessageId) == [
        ("payslip.pdf", PDF),
        ("notes.txt", b"Notes"),
    ]
    assert b"payslip" not in attachments[0].sealed_filename
    assert PDF[100:200] not in attachments[0].sealed_content
    assert b"Lohnabrechnung" not in row.sealed_subject
    assert b"Ihre Lohnabrechnung" not in row.sealed_text_body


def test_a_message_with_only_required_fields(service: ServiceProcess, sender: Sender) -> None:
    result = sender.client.service.SendMessage(
        Message={
            "Reference": new_reference(),
            "Type": "personal",
            "Recipients": {"Recipient": [{"Address": "solo@example.ch"}]},
            "Subject": "Notice",
            "TextBody": "",
        }
    )
    assert result.Type == "personal"
    assert result.Language == "de"  # the default
    assert result.ExpiresAt - result.AcceptedAt == timedelta(days=7)
    status = sender.client.service.GetStatus(MessageId=result.MessageId)
    assert [r.Address for r in status.Recipients.Recipient] == ["solo@example.ch"]


def test_get_status_by_id_and_by_reference(sender: Sender) -> None:
    reference = new_reference()
    sent = sender.client.service.SendMessage(Message=payslip(reference))

    by_id = sender.client.service.GetStatus(MessageId=sent.MessageId)
    by_reference = sender.client.service.GetStatus(Reference=reference)

    for status in (by_id, by_reference):
        assert status.MessageId == sent.MessageId
        assert status.Reference == reference
        assert status.AcceptedAt == sent.AcceptedAt
        assert isinstance(status.Recipients.Recipient[0].StateChangedAt, datetime)
        assert [r.State for r in status.Recipients.Recipient] == ["queued", "queued"]


def test_password_digest_authenticates(service: ServiceProcess, sender: Sender) -> None:
    client = service.client(sender.username, sender.password, digest=True)
    result = client.service.SendMessage(Message=payslip(new_reference()))
    assert result.State == "queued"


def test_same_reference_and_content_returns_the_original(
    service: ServiceProcess, sender: Sender
) -> None:
    reference = new_reference()
    first = sender.client.service.SendMessage(Message=payslip(reference))
    count = count_messages(service.database_url)

    again = sender.client.service.SendMessage(Message=payslip(reference))

    assert again.MessageId == first.MessageId
    assert again.AcceptedAt == first.AcceptedAt
    assert count_messages(service.database_url) == count


def test_same_reference_with_other_content_is_a_duplicate_reference(
    service: ServiceProcess, sender: Sender
) -> None:
    reference = new_reference()
    sender.client.service.SendMessage(Message=payslip(reference))
    count = count_messages(service.database_url)

    with pytest.raises(zeep.exceptions.Fault) as raised:
        sender.client.service.SendMessage(Message=payslip(reference, Subject="Other subject"))

    assert fault_code(raised.value) == "Client.DuplicateReference"
    assert reference in raised.value.message
    assert "Other subject" not in raised.value.message
    assert count_messages(service.database_url) == count


def test_references_are_per_account(sender: Sender, other_sender: Sender) -> None:
    reference = new_reference()
    mine = sender.client.service.SendMessage(Message=payslip(reference))
    theirs = other_sender.client.service.SendMessage(Message=payslip(reference, Subject="X"))
    assert mine.MessageId != theirs.MessageId


def test_another_senders_message_is_not_found_like_an_unknown_one(
    sender: Sender, other_sender: Sender
) -> None:
    reference = new_reference()
    sent = sender.client.service.SendMessage(Message=payslip(reference))

    with pytest.raises(zeep.exceptions.Fault) as foreign:
        other_sender.client.service.GetStatus(MessageId=sent.MessageId)
    with pytest.raises(zeep.exceptions.Fault) as unknown:
        other_sender.client.service.GetStatus(MessageId=str(uuid.uuid4()))
    with pytest.raises(zeep.exceptions.Fault) as foreign_reference:
        other_sender.client.service.GetStatus(Reference=reference + "-absent")

    assert fault_code(foreign.value) == fault_code(unknown.value) == "Client.NotFound"
    assert foreign.value.message == unknown.value.message
    assert fault_code(foreign_reference.value) == "Client.NotFound"


def test_get_status_needs_exactly_one_key(sender: Sender) -> None:
    with pytest.raises(zeep.exceptions.Fault) as raised:
        sender.client.service.GetStatus()
    assert fault_code(raised.value) == "Client.ValidationError"


def test_concurrent_sends_with_one_reference_store_one_message(
    service: ServiceProcess, sender: Sender
) -> None:
    reference = new_reference()
    body = envelope(
        send_message_xml(reference, attachments=(("a.pdf", "application/pdf", "JVBERi0xLjQ="),)),
        security_header(sender.username, sender.password),
    )
    count = count_messages(service.database_url)
    barrier = threading.Barrier(8)
    answers: list[bytes] = []

    def send() -> None:
        session = service.session()
        barrier.wait()
        response = session.post(
            service.url, data=body, headers={"Content-Type": "text/xml"}, timeout=60
        )
        assert response.status_code == 200, response.text
        answers.append(response.content)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = {answer.split(b"<tns:MessageId>")[1].split(b"<")[0] for answer in answers}
    assert len(answers) == 8
    assert len(ids) == 1
    assert count_messages(service.database_url) == count + 1


def test_a_30_mib_message_is_accepted_and_one_byte_more_is_refused(
    service: ServiceProcess, sender: Sender
) -> None:
    limit = 30 * 1024 * 1024
    header = security_header(sender.username, sender.password)

    def request(size: int) -> bytes:
        content = base64.b64encode(b"%PDF-1.4" + b"\0" * (size - 8)).decode()
        return envelope(
            send_message_xml(
                new_reference(), attachments=(("big.pdf", "application/pdf", content),)
            ),
            header,
        )

    accepted = service.post(request(limit))
    assert accepted.status_code == 200, accepted.text[:500]
    count = count_messages(service.database_url)

    refused = service.post(request(limit + 1))
    code, text = fault_of(refused)
    assert code == "Client.MessageTooLarge"
    assert "31457281" in text
    assert count_messages(service.database_url) == count


# CancelMessage.


def test_cancel_message_withdraws_every_recipient_once(
    service: ServiceProcess, sender: Sender
) -> None:
    reference = new_reference()
    sent = sender.client.service.SendMessage(Message=payslip(reference))
    before = datetime.now(UTC)

    cancelled = sender.client.service.CancelMessage(MessageId=sent.MessageId)
    assert cancelled.MessageId == sent.MessageId
    assert cancelled.State == "cancelled"
    assert [r.State for r in cancelled.Recipients.Recipient] == ["cancelled", "cancelled"]
    assert all(
        r.StateChangedAt >= before - timedelta(seconds=1) for r in cancelled.Recipients.Recipient
    )

    # Again, and by reference: nothing changes, no second event.
    again = sender.client.service.CancelMessage(Reference=reference)
    assert [(r.State, r.StateChangedAt) for r in again.Recipients.Recipient] == [
        (r.State, r.StateChangedAt) for r in cancelled.Recipients.Recipient
    ]
    status = sender.client.service.GetStatus(MessageId=sent.MessageId)
    assert status.State == "cancelled"
    engine = create_engine(service.database_url)
    try:
        with engine.connect() as connection:
            kinds = connection.execute(
                select(EventRow.kind, EventRow.detail).where(
                    EventRow.message_id == sent.MessageId, EventRow.kind == "cancelled"
                )
            ).all()
    finally:
        engine.dispose()
    assert [tuple(k) for k in kinds] == [("cancelled", "withdrawn by the sender")] * 2


def test_cancel_message_of_another_sender_is_not_found_and_changes_nothing(
    sender: Sender, other_sender: Sender
) -> None:
    sent = sender.client.service.SendMessage(Message=payslip(new_reference()))
    with pytest.raises(zeep.exceptions.Fault) as foreign:
        other_sender.client.service.CancelMessage(MessageId=sent.MessageId)
    with pytest.raises(zeep.exceptions.Fault) as unknown:
        other_sender.client.service.CancelMessage(MessageId=str(uuid.uuid4()))
    assert fault_code(foreign.value) == fault_code(unknown.value) == "Client.NotFound"
    assert foreign.value.message == unknown.value.message
    status = sender.client.service.GetStatus(MessageId=sent.MessageId)
    assert [r.State for r in status.Recipients.Recipient] == ["queued", "queued"]


def test_cancel_message_needs_exactly_one_key(sender: Sender) -> None:
    with pytest.raises(zeep.exceptions.Fault) as neither:
        sender.client.service.CancelMessage()
    with pytest.raises(zeep.exceptions.Fault) as both:
        sender.client.service.CancelMessage(MessageId=str(uuid.uuid4()), Reference="r")
    assert fault_code(neither.value) == fault_code(both.value) == "Client.ValidationError"
