"""A mail submitted over the SMTP channel becomes the same secure message a SOAP client
would send: found by its Message-ID with GetStatus, its parts stored as sent; the
Message-ID makes a resend after a lost 250 harmless. Real `soap-service smtp` process,
Python's smtplib as the client, both databases."""

from __future__ import annotations

import email.policy
import uuid
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from tests.smtp.conftest import SmtpSender, reply_text, submit
from tests.support import (
    ServiceProcess,
    SmtpChannelProcess,
    count_messages,
    stored_attachments,
)

pytestmark = pytest.mark.e2e

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 200 + b"\n%%EOF\n"


def new_message_id() -> str:
    return f"<{uuid.uuid4().hex}@payroll.firm.example>"


def payslip(message_id: str, subject: str = "<r> Lohnabrechnung März 2026") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Lohnbüro <hr@firm.example>"
    mail["To"] = "anna@example.ch.secure.test"
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    mail.set_content("Bonjour Anna,\nvotre fiche de salaire.\n")
    mail.add_alternative("<p>Bonjour Anna,<br>votre <b>fiche de salaire</b>.</p>", subtype="html")
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename="Lohn März.pdf")
    mail["Content-Language"] = "fr-CH"  # after the parts: building them moves Content-*
    return mail


def test_a_mail_becomes_a_secure_message_found_by_its_message_id(
    service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    message_id = new_message_id()
    with channel.connect(login=smtp_sender.login) as client:
        replies = submit(
            client,
            payslip(message_id),
            ("anna@example.ch.secure.test", "Bob@Example.CH", "anna@example.ch.SECURE.test"),
        )
    assert [reply_text(reply) for reply in replies.rcpts] == ["250 2.1.5 Recipient ok"] * 3
    assert replies.data_reply.startswith("250 2.0.0 Ok: stored as secure message ")
    stored_id = replies.data_reply.rsplit(" ", 1)[1]

    status = smtp_sender.client.service.GetStatus(Reference=message_id.strip("<>"))
    assert status.MessageId == stored_id
    assert status.Type == "registered"  # from the subject's <r>
    assert status.Language == "fr"  # from Content-Language fr-CH
    assert status.State == "queued"
    # The suffix is gone, the same mailbox named twice is one recipient, in a fixed order.
    assert [r.Address for r in status.Recipients.Recipient] == [
        "anna@example.ch",
        "Bob@example.ch",
    ]
    assert stored_attachments(service, stored_id) == [("Lohn März.pdf", PDF)]


def test_the_same_message_id_sent_again_is_one_message(
    service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    """An MTA that lost the 250 sends the same mail again, on a new connection."""
    raw = payslip(new_message_id())
    before = count_messages(service.database_url)
    answers = []
    for _ in range(2):
        with channel.connect(login=smtp_sender.login) as client:
            answers.append(submit(client, raw).data_reply)
    assert answers[0] == answers[1]
    assert answers[0].startswith("250 2.0.0 ")
    assert count_messages(service.database_url) == before + 1


def test_the_same_message_id_with_other_content_is_refused(
    service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    message_id = new_message_id()
    with channel.connect(login=smtp_sender.login) as client:
        assert submit(client, payslip(message_id)).data_reply.startswith("250 ")
        before = count_messages(service.database_url)
        other = payslip(message_id, subject="<r> Lohnabrechnung April 2026")
        assert submit(client, other).data_reply == (
            "554 5.6.0 this Message-ID was already used for a message with different "
            "content; give a new message a new Message-ID"
        )
    assert count_messages(service.database_url) == before


def test_one_connection_submits_many_messages(
    service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    """A payroll run keeps its connection: each mail its own message, with its own type."""
    before = count_messages(service.database_url)
    subjects = ["Lohn 1", "<c> Lohn 2", "<p> Lohn 3", "<R>Lohn 4"]
    ids = [new_message_id() for _ in subjects]
    with channel.connect(login=smtp_sender.login) as client:
        for message_id, subject in zip(ids, subjects, strict=True):
            assert submit(client, payslip(message_id, subject)).data_reply.startswith("250 2.0.0 ")
    assert count_messages(service.database_url) == before + 4
    types = [
        smtp_sender.client.service.GetStatus(Reference=message_id.strip("<>")).Type
        for message_id in ids
    ]
    assert types == ["confidential", "confidential", "personal", "registered"]


def test_a_mail_without_message_id_is_idempotent_by_its_bytes(
    service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    outer = MIMEMultipart()
    outer["Subject"] = "Payslip"
    outer.attach(MIMEText("See the attachment.", "plain", "utf-8"))
    outer.attach(MIMEApplication(PDF, "pdf", Name="payslip.pdf"))
    raw = outer.as_bytes(policy=email.policy.SMTP)
    before = count_messages(service.database_url)
    with channel.connect(login=smtp_sender.login) as client:
        first = submit(client, raw).data_reply
        second = submit(client, raw).data_reply
    assert first == second and first.startswith("250 2.0.0 ")
    assert count_messages(service.database_url) == before + 1


def test_language_and_expiry_come_from_the_account_unless_the_mail_says(
    service: ServiceProcess, channel: SmtpChannelProcess
) -> None:
    name = f"fr-sender-{uuid.uuid4().hex[:6]}"
    output = service.cli("account", "add", name, "--language", "it", "--expiry-days", "14").stdout
    password = output.split("password: ", 1)[1].split()[0]
    plain = MIMEText("Buongiorno.", "plain", "utf-8")
    plain["Subject"] = "Busta paga"
    plain["Message-ID"] = new_message_id()
    told = MIMEText("Bonjour.", "plain", "utf-8")
    told["Subject"] = "Fiche de salaire"
    told["Message-ID"] = new_message_id()
    told["Content-Language"] = "fr"
    told["X-Expiry-Days"] = "3"
    with channel.connect(login=(name, password)) as client:
        for mail in (plain, told):
            assert submit(client, mail).data_reply.startswith("250 2.0.0 ")
    soap = service.client(name, password)
    by_default = soap.service.GetStatus(Reference=plain["Message-ID"].strip("<>"))
    assert by_default.Language == "it"
    assert (by_default.ExpiresAt - by_default.AcceptedAt).days == 14
    by_headers = soap.service.GetStatus(Reference=told["Message-ID"].strip("<>"))
    assert by_headers.Language == "fr"
    assert (by_headers.ExpiresAt - by_headers.AcceptedAt).days == 3
    # The account's defaults hold for its SOAP messages too.
    soap.service.SendMessage(
        Message={
            "Reference": "soap-defaults",
            "Type": "confidential",
            "Recipients": {"Recipient": [{"Address": "anna@example.ch"}]},
            "Subject": "Busta paga",
            "TextBody": "Buongiorno.",
        }
    )
    by_soap = soap.service.GetStatus(Reference="soap-defaults")
    assert (by_soap.Language, (by_soap.ExpiresAt - by_soap.AcceptedAt).days) == ("it", 14)
    bad = service.cli("account", "add", f"x{name}", "--expiry-days", "31", check=False)
    assert (bad.returncode, bad.stderr.strip()) == (2, "soap-service: the expiry is 1 to 30 days")


def test_auth_login_works_like_plain(channel: SmtpChannelProcess, smtp_sender: SmtpSender) -> None:
    with channel.connect() as client:
        client.user, client.password = smtp_sender.login
        code, answer = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert (code, answer) == (235, b"2.7.0 Authentication successful")
        assert submit(client, payslip(new_message_id())).data_reply.startswith("250 2.0.0 ")


def test_two_channel_processes_share_one_port(
    service: ServiceProcess, smtp_sender: SmtpSender
) -> None:
    """On one host several channel processes share the port (SO_REUSEPORT); the kernel
    spreads the connections, and each process stores what it takes."""
    first = SmtpChannelProcess(service=service, name="smtp-a")
    second = SmtpChannelProcess(service=service, name="smtp-b", port=first.port)
    try:  # started inside: a second that fails to start leaves no first behind
        first.start()
        second.start()
        before = count_messages(service.database_url)
        for _ in range(24):
            with first.connect(login=smtp_sender.login) as client:
                assert submit(client, payslip(new_message_id())).data_reply.startswith("250 ")
        assert count_messages(service.database_url) == before + 24
        for process in (first, second):
            assert "accepted from account" in process.log_text(), process.name
    finally:
        first.stop()
        second.stop()
