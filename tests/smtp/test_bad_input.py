"""Bad input on the SMTP channel: each gets its own reply with an enhanced status code,
nothing is stored, and the channel goes on serving. Real `soap-service smtp` process,
both databases."""

from __future__ import annotations

import base64
import io
import smtplib
import socket
import ssl
import struct
import time
import uuid
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.smtp.conftest import SmtpSender, reply_text, submit
from tests.support import ServiceProcess, SmtpChannelProcess, count_messages

pytestmark = pytest.mark.e2e

RECIPIENT = "anna@example.ch.secure.test"
MIB = 1024 * 1024


@pytest.fixture
def unchanged(service: ServiceProcess) -> Iterator[None]:
    """The test stores nothing."""
    before = count_messages(service.database_url)
    yield
    assert count_messages(service.database_url) == before


def mail(subject: str = "Payslip", body: str = "Your payslip.") -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@firm.example>"
    message.set_content(body)
    return message


def raw_mail(headers: str, body: str = "Your payslip.\r\n") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()


def plain_connection(channel: SmtpChannelProcess) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", channel.port, timeout=30)
    client.ehlo()
    return client


# Before TLS and authentication.


def test_mail_before_starttls_is_refused(channel: SmtpChannelProcess, unchanged: None) -> None:
    with plain_connection(channel) as client:
        assert "starttls" in client.esmtp_features
        assert "auth" not in client.esmtp_features  # AUTH is offered only over TLS
        assert reply_text(client.mail("hr@firm.example")) == (
            "530 5.7.0 Must issue a STARTTLS command first"
        )


def test_auth_before_starttls_is_refused(
    channel: SmtpChannelProcess, smtp_sender: SmtpSender, unchanged: None
) -> None:
    plain = base64.b64encode(f"\0{smtp_sender.username}\0{smtp_sender.password}".encode())
    with plain_connection(channel) as client:
        assert reply_text(client.docmd("AUTH", "PLAIN " + plain.decode())) == (
            "530 5.7.0 Must issue a STARTTLS command first"
        )


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_below_1_2_is_refused(channel: SmtpChannelProcess) -> None:
    context = ssl.create_default_context(cafile=str(channel.service.tls.ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with plain_connection(channel) as client, pytest.raises((ssl.SSLError, OSError)):
        client.starttls(context=context)


def test_mail_without_auth_is_refused(channel: SmtpChannelProcess, unchanged: None) -> None:
    with channel.connect() as client:
        assert reply_text(client.mail("hr@firm.example")) == "530 5.7.0 Authentication required"
        assert reply_text(client.docmd("DATA")) == "530 5.7.0 Authentication required"


def test_wrong_passwords_are_throttled_and_do_not_tell_whether_the_account_exists(
    service: ServiceProcess, channel: SmtpChannelProcess, unchanged: None
) -> None:
    username, _ = service.add_account()
    answers: dict[str, list[str]] = {}
    for name in (username, f"nobody-{uuid.uuid4().hex[:8]}"):
        plain = base64.b64encode(f"\0{name}\0wrong password".encode()).decode()
        with channel.connect() as client:
            answers[name] = [reply_text(client.docmd("AUTH", f"PLAIN {plain}")) for _ in range(6)]
    for replies in answers.values():
        assert replies[:5] == ["535 5.7.8 Authentication credentials invalid"] * 5
        assert replies[5].startswith(
            "454 4.7.0 too many failed logins for this username or from this address; try again in "
        )


# Envelope.


def test_each_bad_recipient_gets_its_own_reply_and_the_others_go_on(
    service: ServiceProcess,
    channel: SmtpChannelProcess,
    smtp_sender: SmtpSender,
) -> None:
    before = count_messages(service.database_url)
    with channel.connect(login=smtp_sender.login) as client:
        replies = submit(
            client,
            mail(),
            (RECIPIENT, "anna@localhost", "a@b@c.ch", "bob@example.ch.secure.test"),
        )
    assert [reply_text(reply) for reply in replies.rcpts] == [
        "250 2.1.5 Recipient ok",
        "550 5.1.3 The part after the @-sign is not valid. It should have a period",
        "553 5.1.3 Error: malformed address",
        "250 2.1.5 Recipient ok",
    ]
    assert replies.data_reply.startswith("250 2.0.0 ")
    assert count_messages(service.database_url) == before + 1


def test_a_null_sender_is_refused_with_its_reason(
    channel: SmtpChannelProcess, smtp_sender: SmtpSender, unchanged: None
) -> None:
    with channel.connect(login=smtp_sender.login) as client:
        assert reply_text(client.docmd("MAIL", "FROM:<>")) == (
            "550 5.1.7 A secure message needs a sender address: failures and receipts go there"
        )
        assert reply_text(client.docmd("MAIL", "FROM:<not an address>")) == (
            "553 5.1.7 The sender address is not valid: An email address must have an @-sign"
        )
        assert reply_text(client.mail("hr@localhost")) == (
            "553 5.1.7 The sender address is not valid: The part after the @-sign is not "
            "valid. It should have a period"
        )


def test_the_101st_recipient_is_refused(
    channel: SmtpChannelProcess, smtp_sender: SmtpSender, unchanged: None
) -> None:
    with channel.connect(login=smtp_sender.login) as client:
        client.mail("hr@firm.example")
        replies = [reply_text(client.rcpt(f"r{n}@example.ch")) for n in range(101)]
        client.rset()
    assert replies[:100] == ["250 2.1.5 Recipient ok"] * 100
    assert replies[100] == "452 4.5.3 Too many recipients: a secure message has at most 100"


def test_size_is_advertised_and_a_bigger_size_refused_before_data(
    channel: SmtpChannelProcess, smtp_sender: SmtpSender, unchanged: None
) -> None:
    with channel.connect(login=smtp_sender.login) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == str(48 * MIB)
        assert reply_text(client.mail("hr@firm.example", [f"SIZE={48 * MIB + 1}"])) == (
            f"552 5.3.4 Message too big: the limit is {48 * MIB} bytes"
        )


# Content, each refused whole after DATA.


def attachment_mail(content: bytes, filename: str, subtype: str = "octet-stream") -> EmailMessage:
    message = mail()
    message.add_attachment(content, maintype="application", subtype=subtype, filename=filename)
    return message


def windows_executable() -> bytes:
    return b"MZ" + b"\0" * 0x3A + struct.pack("<I", 0x40) + b"PE\0\0" + b"\0" * 200


def macro_document() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/vbaProject.bin", b"\0" * 64)
    return buffer.getvalue()


def smime_encrypted() -> bytes:
    return raw_mail(
        """
Subject: Payslip
Message-ID: <smime-1@firm.example>
MIME-Version: 1.0
Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename=smime.p7m
""",
        base64.encodebytes(b"\x30\x80" + b"\x01" * 300).decode().replace("\n", "\r\n"),
    )


def pgp_mime() -> bytes:
    return raw_mail(
        """
Subject: Payslip
Message-ID: <pgp-1@firm.example>
MIME-Version: 1.0
Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b1"
""",
        "--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        "--b1\r\nContent-Type: application/octet-stream\r\n\r\n"
        "-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n--b1--\r\n",
    )


CONTENT_CASES = {
    "executable by name": (
        attachment_mail(b"%PDF-1.4 harmless", "tool.exe"),
        '554 5.7.1 The attachment "tool.exe" is refused: files of type .exe are not allowed',
    ),
    "executable by content": (
        attachment_mail(windows_executable(), "payslip.pdf", "pdf"),
        '554 5.7.1 The attachment "payslip.pdf" is refused: its content is a Windows executable',
    ),
    "macro document": (
        attachment_mail(macro_document(), "report.docx"),
        '554 5.7.1 The attachment "report.docx" is refused: '
        "its content is an Office document with macros",
    ),
    "multipart without boundary": (
        raw_mail(
            """
Subject: Payslip
Message-ID: <nb-1@firm.example>
MIME-Version: 1.0
Content-Type: multipart/mixed
""",
            "--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n",
        ),
        "554 5.6.0 the MIME structure is broken: a multipart has no boundary",
    ),
    "8-bit header without SMTPUTF8": (
        "Subject: Lohnabrechnung März\r\nMessage-ID: <8bit-1@x>\r\n\r\nHallo\r\n".encode(),
        "554 5.6.7 the message has 8-bit characters in its headers without SMTPUTF8; "
        "encode them (RFC 2047) or announce SMTPUTF8 in MAIL FROM",
    ),
    "CRLF injected in the subject": (
        raw_mail(
            """
Subject: =?utf-8?q?Payslip=0D=0ABcc:_eve@evil.example?=
Message-ID: <crlf-1@firm.example>
"""
        ),
        "554 5.6.0 Subject must not contain line breaks or control characters",
    ),
    "bare LF in the headers": (
        b"Subject: Payslip\nBcc: eve@evil.example\r\nMessage-ID: <lf-1@firm.example>\r\n\r\nHi\r\n",
        "554 5.6.0 a header line contains a bare CR or LF; lines end with CRLF",
    ),
    "no body": (
        raw_mail("Subject: Payslip\nMessage-ID: <nobody-1@firm.example>", ""),
        "554 5.6.0 the message has no body and no attachment",
    ),
    "no subject": (
        raw_mail("Message-ID: <nosubject-1@firm.example>"),
        "554 5.6.0 Subject must not be empty",
    ),
    "S/MIME encrypted": (
        smime_encrypted(),
        "554 5.6.1 the message is encrypted (S/MIME or PGP); the service cannot read it. "
        "Send it unencrypted: the connection is TLS and the service encrypts what it stores",
    ),
    "PGP/MIME": (
        pgp_mime(),
        "554 5.6.1 the message is encrypted (S/MIME or PGP); the service cannot read it. "
        "Send it unencrypted: the connection is TLS and the service encrypts what it stores",
    ),
    "inline PGP": (
        mail(body="-----BEGIN PGP MESSAGE-----\nhQEMA\n-----END PGP MESSAGE-----\n"),
        "554 5.6.1 the message body is PGP-encrypted; the service cannot read it",
    ),
    "expiry header not a number": (
        raw_mail("Subject: Payslip\nMessage-ID: <exp-1@firm.example>\nX-Expiry-Days: soon"),
        "554 5.6.0 X-Expiry-Days must be a whole number of days",
    ),
    "expiry out of range": (
        raw_mail("Subject: Payslip\nMessage-ID: <exp-2@firm.example>\nX-Expiry-Days: 31"),
        "554 5.6.0 ExpiryDays must be between 1 and 30 days",
    ),
    "Message-ID too long": (
        raw_mail(f"Subject: Payslip\nMessage-ID: <{'x' * 120}@firm.example>"),
        "554 5.6.0 the Message-ID is longer than 100 characters; it is the message's Reference",
    ),
}


@pytest.mark.parametrize("case", list(CONTENT_CASES))
def test_bad_content_is_refused_whole_with_its_reason(
    case: str, service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    content, expected = CONTENT_CASES[case]
    before = count_messages(service.database_url)
    with channel.connect(login=smtp_sender.login) as client:
        assert submit(client, content).data_reply == expected
        assert count_messages(service.database_url) == before
        # The session goes on: the next mail on the same connection is taken.
        assert submit(client, mail()).data_reply.startswith("250 2.0.0 ")


def test_8bit_headers_are_taken_with_smtputf8(
    service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    raw = "Subject: Lohnabrechnung März\r\nMessage-ID: <u8-1@firm.example>\r\n\r\nHallo\r\n"
    with channel.connect(login=smtp_sender.login) as client:
        replies = submit(client, raw.encode(), mail_options=("SMTPUTF8",))
    assert replies.data_reply.startswith("250 2.0.0 ")


def test_attachments_over_30_mib_are_refused_and_30_mib_taken(
    service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    before = count_messages(service.database_url)
    with channel.connect(login=smtp_sender.login) as client:
        over = submit(client, attachment_mail(b"%PDF" + b"a" * (30 * MIB - 3), "big.pdf", "pdf"))
        assert over.data_reply == (
            "552 5.3.4 the attachments are 31457281 bytes in total; the limit is "
            "31457280 bytes (30 MiB)"
        )
        assert count_messages(service.database_url) == before
        exact = submit(client, attachment_mail(b"%PDF" + b"a" * (30 * MIB - 4), "big.pdf", "pdf"))
        assert exact.data_reply.startswith("250 2.0.0 ")
    assert count_messages(service.database_url) == before + 1


# The line.


def test_pipelined_commands_are_answered_in_order(
    service: ServiceProcess, channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    before = count_messages(service.database_url)
    with channel.connect(login=smtp_sender.login) as client:
        assert "pipelining" in client.esmtp_features
        assert client.sock is not None
        client.sock.sendall(
            b"MAIL FROM:<hr@firm.example>\r\n"
            b"RCPT TO:<anna@example.ch.secure.test>\r\n"
            b"RCPT TO:<nobody@localhost>\r\n"
            b"RCPT TO:<bob@example.ch>\r\n"
            b"DATA\r\n"
        )
        replies = [reply_text(client.getreply()) for _ in range(5)]
        client.sock.sendall(
            b"Subject: Pipelined\r\nMessage-ID: <pipe-" + uuid.uuid4().hex.encode() + b"@x>\r\n"
            b"\r\nHello\r\n.\r\nNOOP\r\n"
        )
        replies += [reply_text(client.getreply()) for _ in range(2)]
    assert replies[:5] == [
        "250 2.1.0 Sender ok",
        "250 2.1.5 Recipient ok",
        "550 5.1.3 The part after the @-sign is not valid. It should have a period",
        "250 2.1.5 Recipient ok",
        "354 End data with <CR><LF>.<CR><LF>",
    ]
    assert replies[5].startswith("250 2.0.0 Ok: stored as secure message ")
    assert replies[6] == "250 2.0.0 OK"
    assert count_messages(service.database_url) == before + 1


def test_a_connection_dropped_in_the_middle_of_data_stores_nothing(
    channel: SmtpChannelProcess, smtp_sender: SmtpSender, unchanged: None
) -> None:
    client = channel.connect(login=smtp_sender.login)
    client.mail("hr@firm.example")
    client.rcpt(RECIPIENT)
    assert client.docmd("DATA")[0] == 354
    assert client.sock is not None
    client.sock.sendall(b"Subject: Cut\r\nMessage-ID: <cut-1@firm.example>\r\n\r\nHalf a")
    client.sock.close()
    time.sleep(0.5)
    # The channel goes on serving.
    with channel.connect(login=smtp_sender.login) as again:
        assert reply_text(again.noop()) == "250 2.0.0 OK"


@pytest.fixture
def strict_channel(service: ServiceProcess) -> Iterator[SmtpChannelProcess]:
    """A second channel process on the same database with a 2 s idle timeout and a
    100 kB SIZE: what a stalling or oversized client meets, quickly."""
    process = SmtpChannelProcess(
        service=service,
        name="smtp-strict",
        extra_env={
            "SOAP_SERVICE_SMTP_CHANNEL_TIMEOUT": "2",
            "SOAP_SERVICE_SMTP_MAX_MESSAGE_BYTES": "100000",
        },
    ).start()
    yield process
    process.stop()


def test_a_client_that_stalls_hears_421_and_is_disconnected(
    strict_channel: SmtpChannelProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", strict_channel.port), timeout=10) as sock:
        greeting = sock.recv(1000)
        assert greeting.startswith(b"220 ")
        rest = b""
        while chunk := sock.recv(1000):  # the server closes the line: recv gives b""
            rest += chunk
        assert rest == b"421 4.4.2 Idle for too long; closing the connection\r\n"


def test_data_beyond_size_is_refused_after_the_end_of_data(
    service: ServiceProcess, strict_channel: SmtpChannelProcess, smtp_sender: SmtpSender
) -> None:
    before = count_messages(service.database_url)
    with strict_channel.connect(login=smtp_sender.login) as client:
        too_big = attachment_mail(b"%PDF" + b"a" * 120_000, "big.pdf", "pdf")
        assert submit(client, too_big).data_reply == (
            "552 5.3.4 Message too big: the limit is 100000 bytes"
        )
        assert count_messages(service.database_url) == before
        assert submit(client, mail()).data_reply.startswith("250 2.0.0 ")


def test_a_line_over_1000_characters_is_refused(
    channel: SmtpChannelProcess, smtp_sender: SmtpSender, unchanged: None
) -> None:
    raw = raw_mail("Subject: Long\nMessage-ID: <long-1@firm.example>", "x" * 2000 + "\r\n")
    with channel.connect(login=smtp_sender.login) as client:
        assert submit(client, raw).data_reply == (
            "500 5.5.2 Line too long: at most 998 characters (RFC 5322)"
        )
