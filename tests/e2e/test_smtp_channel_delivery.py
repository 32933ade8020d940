"""A payslip submitted over the SMTP channel is indistinguishable from the same payslip
sent with SendMessage: the same notification reaches the recipient, the same pickup page
opens from it, GetStatus follows it, and a registered one has its signed submission
receipt. Real processes: `serve`, `smtp`, a delivery worker and a STARTTLS mail sink."""

from __future__ import annotations

import base64
import io
from email.message import EmailMessage

import pytest
from lxml import html as lxml_html

from tests.e2e.stack import Stack, new_reference, wait_until
from tests.e2e.test_pickup_browser import read_link
from tests.smtp_sink import ReceivedMail, SmtpSink
from tests.support import SmtpChannelProcess

pytestmark = pytest.mark.e2e

PDF = b"%PDF-1.4\n" + b"payslip " * 4000 + b"\n%%EOF\n"
SUBJECT = "Lohnabrechnung November"
TEXT = "Guten Tag\nIhre Lohnabrechnung liegt bei."
HTML = "<p>Guten Tag</p><p><b>Nettolohn:</b> CHF 6'543.21</p>"


def by_smtp(stack: Stack, channel: SmtpChannelProcess, recipient: str, prefix: str = "") -> str:
    mail = EmailMessage()
    mail["From"] = "Lohnbüro <hr@firm.example>"
    mail["To"] = recipient + SmtpChannelProcess.SUFFIX
    mail["Subject"] = prefix + SUBJECT
    mail["Message-ID"] = f"<{new_reference()}@payroll.firm.example>"
    mail.set_content(TEXT)
    mail.add_alternative(HTML, subtype="html")
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename="Lohn-2026-11.pdf")
    mail["Content-Language"] = "de"
    with channel.connect(login=(stack.username, stack.password)) as client:
        client.send_message(mail)
    return str(mail["Message-ID"]).strip("<>")


def by_soap(stack: Stack, recipient: str, message_type: str = "confidential") -> str:
    reference = new_reference()
    stack.client.service.SendMessage(
        Message={
            "Reference": reference,
            "Type": message_type,
            "Recipients": {"Recipient": [{"Address": recipient}]},
            "Subject": SUBJECT,
            "TextBody": TEXT,
            "HtmlBody": HTML,
            "Attachments": {
                "Attachment": [
                    {
                        "FileName": "Lohn-2026-11.pdf",
                        "ContentType": "application/pdf",
                        "Content": PDF,
                    }
                ]
            },
            "Language": "de",
        }
    )
    return reference


def notification(stack: Stack, sink: SmtpSink, reference: str, recipient: str) -> ReceivedMail:
    status = stack.client.service.GetStatus(Reference=reference)
    stack.wait_all(status.MessageId, "sent")
    return wait_until(
        lambda: next(
            (
                m
                for m in sink.received
                if m.recipients == (recipient,) and m.message_id.startswith(f"<{status.MessageId}.")
            ),
            None,
        ),
        "the notification",
        timeout=30,
    )


def page_parts(stack: Stack, link: str) -> dict[str, object]:
    """The message page: the formatted body it shows, and the plain text one on request."""
    response = stack.service.session().get(link, timeout=30)
    assert response.status_code == 200, response.text[:500]
    page = lxml_html.fromstring(response.text)
    as_text = stack.service.session().get(link + "?view=text", timeout=30)
    assert as_text.status_code == 200, as_text.text[:500]
    return {
        "subject": page.get_element_by_id("subject").text_content(),
        "text": lxml_html.fromstring(as_text.text).get_element_by_id("text-body").text_content(),
        "html": page.get_element_by_id("html-body").text_content(),
        "attachments": page.xpath("//ul[@id='attachments']/li/a/text()"),
    }


def test_a_payslip_by_smtp_reaches_its_recipient_like_one_by_soap(
    delivering: tuple[Stack, SmtpSink], smtp_channel: SmtpChannelProcess
) -> None:
    stack, sink = delivering
    smtp_reference = by_smtp(stack, smtp_channel, "anna@example.ch")
    soap_reference = by_soap(stack, "bruno@example.ch")

    by_mail = notification(stack, sink, smtp_reference, "anna@example.ch").message
    by_api = notification(stack, sink, soap_reference, "bruno@example.ch").message
    assert by_mail["Subject"] == by_api["Subject"]
    assert by_mail["From"] == by_api["From"]
    assert by_mail.get_content_type() == by_api.get_content_type()

    from_mail = page_parts(stack, read_link(by_mail))
    from_api = page_parts(stack, read_link(by_api))
    assert from_mail == from_api
    assert from_mail["subject"] == SUBJECT
    assert from_mail["attachments"] == ["Lohn-2026-11.pdf"]
    # The recipient opened it: the SMTP sender sees so in GetStatus, by its Message-ID.
    [recipient] = stack.client.service.GetStatus(Reference=smtp_reference).Recipients.Recipient
    assert (recipient.Address, recipient.State) == ("anna@example.ch", "opened")


def test_a_registered_payslip_by_smtp_has_its_signed_submission_receipt(
    delivering: tuple[Stack, SmtpSink], smtp_channel: SmtpChannelProcess
) -> None:
    import pypdf

    stack, sink = delivering
    reference = by_smtp(stack, smtp_channel, "carla@example.ch", prefix="<r> ")
    status = stack.client.service.GetStatus(Reference=reference)
    assert status.Type == "registered"
    receipt = stack.client.service.GetReceipt(Kind="submission", Reference=reference)
    content = receipt.Content
    pdf = base64.b64decode(content) if isinstance(content, str) else content
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages)
    assert status.MessageId in text
    assert "/ByteRange" in pdf.decode("latin-1")  # signed
    notification(stack, sink, reference, "carla@example.ch")
