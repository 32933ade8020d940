"""A real Postfix (Debian's) relays an organisation's mail to the SMTP channel, as an
organisation's mail server would: relayhost pointing at the service, TLS enforced
(`smtp_tls_security_level = encrypt`) and the organisation's registered client
certificate. A mail given to Postfix's `sendmail` becomes a secure message whose
notification reaches the test mail sink; a refused one bounces with the channel's reason."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from tests import postfix
from tests.e2e.stack import Stack, wait_until
from tests.smtp_sink import SmtpSink
from tests.support import SmtpChannelProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(postfix.available() is not None, reason=str(postfix.available())),
]

PDF = b"%PDF-1.4\n" + b"payslip " * 2000 + b"\n%%EOF\n"


@pytest.fixture
def relaying(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> Iterator[tuple[Stack, SmtpSink, postfix.PrivatePostfix]]:
    """The stack, its SMTP channel, the organisation `firm` (the stack's account)
    registered with the client certificate of its Postfix, and that Postfix running."""
    stack, sink = delivering
    ca = trustme.CA(organization_name="Firm internal CA")
    leaf = ca.issue_cert("mail.firm.example")
    certificate, key = tmp_path / "postfix-cert.pem", tmp_path / "postfix-key.pem"
    certificate.write_bytes(leaf.cert_chain_pems[0].bytes())
    key.write_bytes(leaf.private_key_pem.bytes())
    key.chmod(0o600)
    stack.service.cli(
        "organisation",
        "add",
        "firm",
        "--domain",
        "firm.example",
        "--client-cert",
        str(certificate),
        "--account",  # the stack's account: its client follows the messages
        stack.username,
    )
    channel = SmtpChannelProcess(service=stack.service).start()
    server = postfix.PrivatePostfix(
        relay=("127.0.0.1", channel.port),
        ca_file=stack.tls.ca_cert,
        client_cert=certificate,
        client_key=key,
    )
    try:
        server.start()
        yield stack, sink, server
    finally:
        server.stop()
        channel.stop()


def payslip(attachment_name: str = "Lohn-2026-11.pdf") -> bytes:
    mail = EmailMessage()
    mail["From"] = "Lohnbüro Firm <hr@firm.example>"
    mail["To"] = "anna@example.ch" + SmtpChannelProcess.SUFFIX
    mail["Subject"] = "<p> Lohnabrechnung November"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@firm.example>"
    mail.set_content("Guten Tag\nIhre Lohnabrechnung liegt bei.")
    mail.add_attachment(PDF, maintype="application", subtype="pdf", filename=attachment_name)
    return mail.as_bytes()


def test_a_mail_relayed_by_postfix_becomes_a_secure_message_and_its_notification_goes_out(
    relaying: tuple[Stack, SmtpSink, postfix.PrivatePostfix],
) -> None:
    stack, sink, server = relaying
    server.sendmail(payslip(), "hr@firm.example", ["anna@example.ch" + SmtpChannelProcess.SUFFIX])
    sent = server.wait_for_log(
        r"status=sent \(250 2\.0\.0 Ok: stored as secure message ([0-9a-f-]{36})\)"
    )
    message_id = sent.group(1)
    # Postfix verified nothing but encryption (encrypt level) and showed its certificate.
    assert re.search(
        r"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: TLSv1\.[23]",
        server.log_text(),
    )

    [recipient] = stack.wait_all(message_id, "sent")
    assert recipient.Address == "anna@example.ch"
    status = stack.client.service.GetStatus(MessageId=message_id)
    assert status.Type == "personal"
    mails = wait_until(
        lambda: [m for m in sink.received if m.recipients == ("anna@example.ch",)],
        "the notification at the sink",
        timeout=30,
    )
    assert mails[0].message_id.startswith(f"<{message_id}.")


def test_a_refused_mail_bounces_with_the_channels_reason(
    relaying: tuple[Stack, SmtpSink, postfix.PrivatePostfix],
) -> None:
    _, _, server = relaying
    server.sendmail(payslip("setup.exe"), "hr@firm.example", ["bob@example.ch"])
    server.wait_for_log(
        r"status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 554 5\.7\.1 The attachment "
        r'"setup\.exe" is refused: files of type \.exe are not allowed \(in reply to end of '
        r"DATA command\)\)"
    )


def test_a_mail_from_another_domain_is_refused_to_the_certificate(
    relaying: tuple[Stack, SmtpSink, postfix.PrivatePostfix],
) -> None:
    _, _, server = relaying
    server.sendmail(payslip(), "ceo@other.example", ["bob@example.ch"])
    server.wait_for_log(
        r"status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.7\.1 The sender "
        r"address is not in the domains registered for this client certificate"
    )
