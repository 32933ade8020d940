"""SmtpSession.send against a real SMTP server: what arrives, byte for byte, and what each
answer makes of the mail and of the connection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from soap_service.delivery.smtp import (
    DestinationBusy,
    Route,
    SmtpSession,
    TlsContexts,
    dot_stuffed,
)
from soap_service.domain.delivery import OutcomeKind
from soap_service.settings import load_settings
from tests.smtp_sink import SmtpSink
from tests.support import TlsFiles

SENDER = "no-reply@service.example"


@pytest.mark.parametrize(
    ("data", "section"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\r\nb", b"a\r\nb\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.b\r\n..c\r\nd.e\r\n", b"a\r\n..b\r\n...c\r\nd.e\r\n.\r\n"),
    ],
)
def test_dot_stuffing(data: bytes, section: bytes) -> None:
    assert dot_stuffed(data) == section


@pytest.fixture
def sink(start_sink: Callable[..., SmtpSink]) -> SmtpSink:
    return start_sink()


@pytest.fixture
def session(sink: SmtpSink, tls: TlsFiles, tmp_path: Path) -> SmtpSession:
    settings = load_settings(
        {
            "SOAP_SERVICE_DATA_DIR": str(tmp_path),
            "SOAP_SERVICE_SMTP_RELAY": f"127.0.0.1:{sink.port}",
            "SOAP_SERVICE_SMTP_CA_FILE": str(tls.ca_cert),
            "SOAP_SERVICE_MAIL_FROM": SENDER,
        }
    ).delivery.smtp
    opened = SmtpSession(
        Route("127.0.0.1", sink.port, relay=True), settings, TlsContexts.from_settings(settings)
    )
    opened.open()
    yield opened
    opened.close()


def mail(number: int) -> bytes:
    return (
        f"Message-ID: <{number}@test>\r\nSubject: n{number}\r\n\r\n"
        ".a line that starts with a dot\r\n..and two\r\n.\r\nend".encode()
    )


def test_lines_starting_with_a_dot_arrive_as_written(sink: SmtpSink, session: SmtpSession) -> None:
    outcome = session.send(SENDER, "anna@example.ch", mail(1))
    assert outcome.kind is OutcomeKind.ACCEPTED
    [received] = sink.received
    assert (received.mail_from, received.recipients) == (SENDER, ("anna@example.ch",))
    assert received.data == mail(1) + b"\r\n"  # a last line always ends with CRLF
    # The server offers SIZE: the size is declared with MAIL FROM.
    assert sink.mail_options == [[f"SIZE={len(mail(1))}"]]


def test_a_refused_recipient_leaves_the_connection_to_the_next_mail(
    sink: SmtpSink, session: SmtpSession
) -> None:
    sink.script.rcpt_replies["gone@example.ch"] = "550 5.1.1 No such user"
    first = session.send(SENDER, "gone@example.ch", mail(1))
    second = session.send(SENDER, "bert@example.ch", mail(2))
    assert (first.kind, first.detail) == (OutcomeKind.PERMANENT, "550 5.1.1 No such user")
    assert second.kind is OutcomeKind.ACCEPTED
    assert [m.recipients for m in sink.received] == [("bert@example.ch",)]
    assert sink.mail_connections() == 1


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("554 5.6.0 Content rejected", OutcomeKind.PERMANENT),
        ("452 4.3.1 Full", OutcomeKind.TEMPORARY),
    ],
)
def test_an_answer_after_data_is_the_outcome_and_the_connection_goes_on(
    sink: SmtpSink, session: SmtpSession, reply: str, kind: OutcomeKind
) -> None:
    sink.script.data_replies.append(reply)
    first = session.send(SENDER, "anna@example.ch", mail(1))
    second = session.send(SENDER, "bert@example.ch", mail(2))
    assert (first.kind, first.detail) == (kind, reply)
    assert second.kind is OutcomeKind.ACCEPTED
    assert sink.message_ids() == ["<2@test>"]
    assert sink.mail_connections() == 1


def test_a_421_closes_the_session_and_says_the_destination_is_busy(
    sink: SmtpSink, session: SmtpSession
) -> None:
    sink.script.data_replies.append("421 4.3.2 Shutting down")
    with pytest.raises(DestinationBusy) as raised:
        session.send(SENDER, "anna@example.ch", mail(1))
    assert str(raised.value) == "127.0.0.1: 421 4.3.2 Shutting down"
    assert not session.is_open
    assert sink.received == []


def test_a_refused_sender_says_the_destination_is_busy(
    sink: SmtpSink, session: SmtpSession
) -> None:
    sink.script.mail_replies.append("553 5.7.1 Sender not allowed")
    with pytest.raises(DestinationBusy) as raised:
        session.send(SENDER, "anna@example.ch", mail(1))
    assert str(raised.value) == "127.0.0.1 refused the sender: 553 5.7.1 Sender not allowed"
    assert not session.is_open
    assert sink.events == [("MAIL", True)]


def test_a_mail_too_large_for_the_server_fails_alone(sink: SmtpSink, session: SmtpSession) -> None:
    sink.script.mail_replies.append("552 5.3.4 Message size exceeds fixed limit")
    first = session.send(SENDER, "anna@example.ch", mail(1))
    second = session.send(SENDER, "bert@example.ch", mail(2))
    assert (first.kind, first.detail) == (
        OutcomeKind.PERMANENT,
        "552 5.3.4 Message size exceeds fixed limit",
    )
    assert second.kind is OutcomeKind.ACCEPTED
    assert sink.mail_connections() == 1


def test_a_421_to_rset_closes_the_session(
    sink: SmtpSink, session: SmtpSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.script.rcpt_replies["gone@example.ch"] = "550 5.1.1 No such user"
    client = session._client
    assert client is not None
    monkeypatch.setattr(client, "rset", lambda: (421, b"4.3.2 Closing"))
    outcome = session.send(SENDER, "gone@example.ch", mail(1))
    assert (outcome.kind, outcome.detail) == (OutcomeKind.PERMANENT, "550 5.1.1 No such user")
    assert not session.is_open  # the next mail opens a new connection
