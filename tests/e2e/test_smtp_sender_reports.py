"""The SMTP sender hears back by mail: a delivery status notification (RFC 3464) when a
recipient fails, and a registered message's signed receipts as PDF attachments, at its
envelope sender. A SOAP sender gets none (it asks GetStatus). Real processes: `serve`,
`smtp`, a delivery worker and a STARTTLS mail sink that receives both notifications and
reports."""

from __future__ import annotations

import base64
import uuid
from email.message import EmailMessage

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.stack import Stack, new_reference, wait_until
from tests.smtp_sink import ReceivedMail, SmtpSink
from tests.support import SmtpChannelProcess

pytestmark = pytest.mark.e2e

SENDER = "payroll@firm.example"


def submit(stack: Stack, channel: SmtpChannelProcess, recipient: str, subject: str) -> str:
    mail = EmailMessage()
    mail["From"] = SENDER
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@firm.example>"
    mail.set_content("Your payslip.")
    mail["Content-Language"] = "en"
    with channel.connect(login=(stack.username, stack.password)) as client:
        client.send_message(mail, SENDER, [recipient])
    return str(mail["Message-ID"]).strip("<>")


def reports_to_sender(sink: SmtpSink) -> list[ReceivedMail]:
    return [mail for mail in sink.received if mail.recipients == (SENDER,)]


def test_a_failed_recipient_is_reported_to_the_smtp_sender_as_a_dsn(
    delivering: tuple[Stack, SmtpSink], smtp_channel: SmtpChannelProcess
) -> None:
    stack, sink = delivering
    sink.script.rcpt_replies["nobody@example.ch"] = "550 5.1.1 <nobody@example.ch>: no such user"
    reference = submit(stack, smtp_channel, "nobody@example.ch", "Payslip November")
    status = stack.client.service.GetStatus(Reference=reference)
    stack.wait_all(status.MessageId, "failed")

    [report] = wait_until(lambda: reports_to_sender(sink), "the failure report", timeout=30)
    assert report.mail_from == "<>"  # a report about a mail never causes another
    dsn = report.message
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Subject"] == "Undeliverable: Payslip November"
    assert dsn["References"] == f"<{reference}>"
    human, machine, original = dsn.get_payload()
    assert "could not be delivered to nobody@example.ch" in human.get_content()
    assert f"(reference {reference})" in human.get_content()
    assert machine.get_content_type() == "message/delivery-status"
    fields = machine.as_string()
    assert "Final-Recipient: rfc822; nobody@example.ch" in fields
    assert "Action: failed" in fields
    assert "Status: 5.1.1" in fields
    assert "Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.ch>: no such user" in fields
    assert original.get_content_type() == "text/rfc822-headers"
    assert f"Message-ID: <{reference}>" in original.get_payload()
    # Exactly one report, and it is recorded as sent.
    assert reports_to_sender(sink) == [report]
    assert report_states(stack) == [("failure", "sent")]


def test_a_registered_message_by_smtp_sends_its_submission_receipt_to_the_sender(
    delivering: tuple[Stack, SmtpSink], smtp_channel: SmtpChannelProcess
) -> None:
    stack, sink = delivering
    reference = submit(stack, smtp_channel, "anna@example.ch", "<r> Payslip November")
    [report] = wait_until(lambda: reports_to_sender(sink), "the submission receipt", timeout=30)
    receipt_mail = report.message
    assert report.mail_from not in ("", "<>")
    assert receipt_mail["Subject"] == "Submission receipt: Payslip November"
    [attachment] = list(receipt_mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    status = stack.client.service.GetStatus(Reference=reference)
    assert attachment.get_filename() == f"receipt-submission-{status.MessageId}.pdf"
    # The very receipt GetReceipt gives: kept once, signed once.
    by_soap = stack.client.service.GetReceipt(Kind="submission", Reference=reference).Content
    pdf = base64.b64decode(by_soap) if isinstance(by_soap, str) else by_soap
    assert attachment.get_content() == pdf
    assert report_states(stack) == [("submission", "sent")]


def test_a_soap_sender_gets_no_mail_reports(delivering: tuple[Stack, SmtpSink]) -> None:
    stack, sink = delivering
    sink.script.rcpt_replies["nobody@example.ch"] = "550 5.1.1 no such user"
    message_id = stack.send(("nobody@example.ch",), reference=new_reference())
    stack.wait_all(message_id, "failed")
    assert report_states(stack) == []  # none queued with the failure
    assert sink.received == []


def report_states(stack: Stack) -> list[tuple[str, str]]:
    engine = create_engine(stack.service.database_url)
    try:
        with engine.connect() as connection:
            return [
                (row.kind, row.state)
                for row in connection.execute(
                    text("SELECT kind, state FROM sender_reports ORDER BY id")
                )
            ]
    finally:
        engine.dispose()
