"""SendMessages against a real gunicorn HTTPS process, on SQLite and on PostgreSQL:
through zeep, and as raw requests for what zeep would not send (entries that break the
schema, broken base64, a batch of 101, the size limits)."""

from __future__ import annotations

import base64
import os
import threading
import uuid

import pytest
from lxml import etree

from tests.e2e.conftest import Sender
from tests.support import (
    SOAP11_ENV,
    TNS,
    ServiceProcess,
    count_messages,
    envelope,
    fault_of,
    security_header,
    send_message_xml,
    stored_attachments,
)

PDF = b"%PDF-1.4\n" + os.urandom(50_000)
MAX_REQUEST_BYTES = 56 * 1024 * 1024  # SOAP_SERVICE_MAX_REQUEST_BYTES' default
MAX_ATTACHMENT_BYTES = 30 * 1024 * 1024


def reference() -> str:
    return f"run-2026-12-{uuid.uuid4().hex[:12]}"


def payslip(ref: str, address: str = "anna.muster@example.ch", **overrides: object) -> dict:
    message: dict[str, object] = {
        "Reference": ref,
        "Type": "confidential",
        "Recipients": {"Recipient": [{"Address": address}]},
        "Subject": "Lohnabrechnung Dezember 2026",
        "TextBody": "Ihre Lohnabrechnung liegt bei.",
        "Attachments": {
            "Attachment": [
                {"FileName": "payslip.pdf", "ContentType": "application/pdf", "Content": PDF}
            ]
        },
        "Language": "de",
    }
    message.update(overrides)
    return message


def batch_xml(*messages: str) -> str:
    """A SendMessages body of SendMessage bodies' messages (send_message_xml)."""
    inner = [m.removeprefix("<m:SendMessage>").removesuffix("</m:SendMessage>") for m in messages]
    return "<m:SendMessages>" + "".join(inner) + "</m:SendMessages>"


def results_of(answer: bytes) -> list[dict[str, str | None]]:
    """Each Result of a SendMessages answer: position, reference, message id or fault."""
    root = etree.fromstring(answer)
    found = []
    for result in root.iter(f"{{{TNS}}}Result"):
        found.append(
            {
                "position": result.findtext(f"{{{TNS}}}Position"),
                "reference": result.findtext(f"{{{TNS}}}Reference"),
                "message_id": result.findtext(f"{{{TNS}}}Status/{{{TNS}}}MessageId"),
                "code": result.findtext(f"{{{TNS}}}Fault/{{{TNS}}}Code"),
                "text": result.findtext(f"{{{TNS}}}Fault/{{{TNS}}}Text"),
            }
        )
    return found


def post_batch(service: ServiceProcess, sender: Sender, body: str) -> bytes:
    answer = service.post(envelope(body, security_header(sender.username, sender.password)))
    assert answer.status_code == 200, answer.text[:500]
    assert root_tag(answer.content) == f"{{{TNS}}}SendMessagesResponse"
    return answer.content


def root_tag(answer: bytes) -> str:
    body = etree.fromstring(answer).find(f"{{{SOAP11_ENV}}}Body")
    assert body is not None
    return str(body[0].tag)


def test_a_batch_through_zeep_stores_every_payslip(service: ServiceProcess, sender: Sender) -> None:
    references = [reference() for _ in range(5)]
    count = count_messages(service.database_url)

    # zeep unwraps the one repeated element of the answer: a list of results.
    answer = sender.client.service.SendMessages(
        Message=[payslip(ref, f"person{n}@example.ch") for n, ref in enumerate(references)]
    )

    assert [r.Position for r in answer] == [1, 2, 3, 4, 5]
    assert [r.Reference for r in answer] == references
    assert all(r.Fault is None for r in answer)
    statuses = [r.Status for r in answer]
    assert [s.Reference for s in statuses] == references
    assert [s.Recipients.Recipient[0].Address for s in statuses] == [
        f"person{n}@example.ch" for n in range(5)
    ]
    assert {s.State for s in statuses} == {"queued"}
    assert count_messages(service.database_url) == count + 5
    # Stored as SendMessage stores one: encrypted, and the very bytes that were sent.
    assert stored_attachments(service, statuses[2].MessageId) == [("payslip.pdf", PDF)]
    # The answer came after the commit: every message is there for GetStatus at once.
    for status in statuses:
        again = sender.client.service.GetStatus(MessageId=status.MessageId)
        assert again.Reference == status.Reference


def test_bad_messages_are_refused_alone_and_the_others_stored(
    service: ServiceProcess, sender: Sender
) -> None:
    good = [reference() for _ in range(3)]
    bad_address, bad_type, bad_base64, too_long = (reference() for _ in range(4))
    body = batch_xml(
        send_message_xml(good[0]),
        send_message_xml(bad_address, recipients=("not-an-address",)),
        send_message_xml(good[1]),
        send_message_xml(bad_type, message_type="urgent"),
        send_message_xml(bad_base64, attachments=(("a.pdf", "application/pdf", "JVBERi0x!!"),)),
        send_message_xml(too_long, subject="x" * 256),
        send_message_xml(good[2]),
    )
    count = count_messages(service.database_url)

    results = results_of(post_batch(service, sender, body))

    assert [r["position"] for r in results] == [str(n) for n in range(1, 8)]
    assert [r["reference"] for r in results] == [
        good[0], bad_address, good[1], bad_type, bad_base64, too_long, good[2]
    ]  # fmt: skip
    assert [r["code"] for r in results] == [
        None,
        "Client.InvalidAddress",
        None,
        "Client.ValidationError",
        "Client.InvalidBase64",
        "Client.ValidationError",
        None,
    ]
    assert results[3]["text"] == (
        "Message/Type: the value must be one of confidential, personal, registered"
    )
    assert results[4]["text"] == (
        "SendMessages/Message[5]/Attachments/Attachment/Content: the content is not valid base64"
    )
    assert results[5]["text"] == "Message/Subject: longer than 255 characters"
    assert all(r["message_id"] for r in results if r["code"] is None)
    assert count_messages(service.database_url) == count + 3


def test_a_resent_batch_answers_with_the_original_results(
    service: ServiceProcess, sender: Sender
) -> None:
    refs = [reference() for _ in range(4)]
    body = batch_xml(
        send_message_xml(refs[0]),
        send_message_xml(refs[1], recipients=("nobody",)),
        send_message_xml(refs[2]),
        send_message_xml(refs[3], subject="Payslip December"),
    )
    first = results_of(post_batch(service, sender, body))
    count = count_messages(service.database_url)

    again = results_of(post_batch(service, sender, body))

    assert again == first
    assert count_messages(service.database_url) == count


def test_a_reference_twice_in_one_batch(service: ServiceProcess, sender: Sender) -> None:
    same, changed = reference(), reference()
    count = count_messages(service.database_url)
    results = results_of(
        post_batch(
            service,
            sender,
            batch_xml(
                send_message_xml(same),
                send_message_xml(changed),
                send_message_xml(same),
                send_message_xml(changed, subject="Another payslip"),
            ),
        )
    )

    assert results[0]["message_id"] == results[2]["message_id"] is not None
    assert results[1]["message_id"] is not None
    assert results[3]["code"] == "Client.DuplicateReference"
    assert count_messages(service.database_url) == count + 2


def test_100_messages_are_one_batch_and_101_are_refused_whole(
    service: ServiceProcess, sender: Sender
) -> None:
    refs = [reference() for _ in range(101)]
    count = count_messages(service.database_url)
    header = security_header(sender.username, sender.password)

    refused = service.post(envelope(batch_xml(*map(send_message_xml, refs)), header))
    code, text = fault_of(refused)
    assert code == "Client.ValidationError"
    assert text == "SendMessages: at most 100 Message elements are allowed"
    assert count_messages(service.database_url) == count

    results = results_of(post_batch(service, sender, batch_xml(*map(send_message_xml, refs[:100]))))
    assert len(results) == 100
    assert all(r["message_id"] for r in results)
    assert count_messages(service.database_url) == count + 100


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<m:SendMessages></m:SendMessages>", "SendMessages: the element Message is missing"),
        (
            batch_xml(send_message_xml("a-ref")).replace(
                "</m:SendMessages>", "<m:Other/></m:SendMessages>"
            ),
            "SendMessages/Other: this element is not allowed here",
        ),
    ],
    ids=["empty", "foreign-element"],
)
def test_what_is_wrong_with_the_batch_itself_refuses_it_whole(
    service: ServiceProcess, sender: Sender, body: str, expected: str
) -> None:
    count = count_messages(service.database_url)
    code, text = fault_of(
        service.post(envelope(body, security_header(sender.username, sender.password)))
    )
    assert (code, text) == ("Client.ValidationError", expected)
    assert count_messages(service.database_url) == count


def padded_batch(sender: Sender, size: int) -> bytes:
    """A valid SendMessages request of exactly `size` bytes: two messages, padded with
    whitespace between them (allowed in element-only content)."""
    header = security_header(sender.username, sender.password)
    bare = envelope(batch_xml(send_message_xml(reference()), send_message_xml(reference())), header)
    request = bare.replace(b"</m:Message><m:Message>", b"</m:Message>\n<m:Message>", 1)
    padding = size - len(request)
    assert padding > 0
    return request.replace(b"\n<m:Message>", b"\n" + b" " * padding + b"<m:Message>", 1)


def test_the_whole_request_is_limited_to_56_mib(service: ServiceProcess, sender: Sender) -> None:
    count = count_messages(service.database_url)
    at_limit = service.post(padded_batch(sender, MAX_REQUEST_BYTES))
    assert at_limit.status_code == 200, at_limit.text[:300]
    assert len(results_of(at_limit.content)) == 2
    assert count_messages(service.database_url) == count + 2

    over = service.post(padded_batch(sender, MAX_REQUEST_BYTES + 1))
    code, text = fault_of(over)
    assert code == "Client.MessageTooLarge"
    assert str(MAX_REQUEST_BYTES) in text
    assert count_messages(service.database_url) == count + 2


def test_a_batchs_attachments_are_limited_to_30_mib_in_all(
    service: ServiceProcess, sender: Sender
) -> None:
    header = security_header(sender.username, sender.password)

    def request(total: int) -> bytes:
        half = total // 2
        sizes = (half, total - half)
        return envelope(
            batch_xml(
                *(
                    send_message_xml(
                        reference(),
                        attachments=(
                            (
                                "big.pdf",
                                "application/pdf",
                                base64.b64encode(b"%PDF-1.4" + b"\0" * (size - 8)).decode(),
                            ),
                        ),
                    )
                    for size in sizes
                )
            ),
            header,
        )

    count = count_messages(service.database_url)
    accepted = service.post(request(MAX_ATTACHMENT_BYTES))
    assert accepted.status_code == 200, accepted.text[:300]
    assert all(r["message_id"] for r in results_of(accepted.content))

    code, text = fault_of(service.post(request(MAX_ATTACHMENT_BYTES + 1)))
    assert code == "Client.MessageTooLarge"
    assert str(MAX_ATTACHMENT_BYTES + 1) in text
    assert count_messages(service.database_url) == count + 2


def test_concurrent_batches_with_the_same_references_store_each_once(
    service: ServiceProcess, sender: Sender
) -> None:
    refs = [reference() for _ in range(30)]
    bodies = [
        batch_xml(*map(send_message_xml, refs)),
        batch_xml(*map(send_message_xml, reversed(refs))),
    ]
    count = count_messages(service.database_url)
    answers: list[list[dict[str, str | None]]] = [[], []]

    def send(index: int) -> None:
        answers[index] = results_of(post_batch(service, sender, bodies[index]))

    threads = [threading.Thread(target=send, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    first, second = answers
    assert [r["message_id"] for r in first] == [r["message_id"] for r in reversed(second)]
    assert all(r["message_id"] for r in first)
    assert count_messages(service.database_url) == count + 30
