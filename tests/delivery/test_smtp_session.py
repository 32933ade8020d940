"""SmtpSession.send against a real SMTP server: what arrives, byte for byte, and what each
answer makes of the mail and of the connection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


@pytest.fixture(params=[False, True], ids=["one-command-at-a-time", "pipelining"])
def sink(start_sink: Callable[..., SmtpSink], request: pytest.FixtureRequest) -> SmtpSink:
    """Every test against a server without PIPELINING and one with it: the answers must
    mean the same either way."""
    return start_sink(pipelining=request.param)


def open_session(sink: SmtpSink, tls: TlsFiles, folder: Path) -> SmtpSession:
    settings = load_settings(
        {
            "SOAP_SERVICE_DATA_DIR": str(folder),
            "SOAP_SERVICE_SMTP_RELAY": f"127.0.0.1:{sink.port}",
            "SOAP_SERVICE_SMTP_CA_FILE": str(tls.ca_cert),
            "SOAP_SERVICE_MAIL_FROM": SENDER,
        }
    ).delivery.smtp
    opened = SmtpSession(
        Route("127.0.0.1", sink.port, relay=True), settings, TlsContexts.from_settings(settings)
    )
    opened.open()
    return opened


@pytest.fixture
def session(sink: SmtpSink, tls: TlsFiles, tmp_path: Path) -> Iterator[SmtpSession]:
    opened = open_session(sink, tls, tmp_path)
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


@pytest.mark.parametrize("reply", ["553 5.7.1 Sender not allowed", "421 4.3.2 Shutting down"])
def test_a_refused_sender_says_the_destination_is_busy(
    sink: SmtpSink, session: SmtpSession, reply: str
) -> None:
    sink.script.mail_replies.append(reply)
    with pytest.raises(DestinationBusy) as raised:
        session.send(SENDER, "anna@example.ch", mail(1))
    assert str(raised.value) == f"127.0.0.1 refused the sender: {reply}"
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


def test_a_server_offering_pipelining_gets_the_envelope_in_one_write(
    sink: SmtpSink, session: SmtpSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = session._client
    assert client is not None
    writes: list[str | bytes] = []
    send = client.send
    monkeypatch.setattr(client, "send", lambda data: (writes.append(data), send(data))[1])

    outcome = session.send(SENDER, "anna@example.ch", mail(1))

    assert outcome.kind is OutcomeKind.ACCEPTED
    envelope = [
        f"MAIL FROM:<{SENDER}> SIZE={len(mail(1))}\r\n",
        "RCPT TO:<anna@example.ch>\r\n",
        "DATA\r\n",
    ]
    assert writes == (
        ["".join(envelope), dot_stuffed(mail(1))]
        if sink.pipelining
        else [*envelope, dot_stuffed(mail(1))]
    )


def test_a_line_break_in_an_address_sends_nothing(sink: SmtpSink, session: SmtpSession) -> None:
    with pytest.raises(ValueError, match="prohibited newline"):
        session.send(SENDER, "anna@example.ch>\r\nRCPT TO:<eve@example.ch", mail(1))
    assert sink.events == []


def test_data_taken_after_a_refused_recipient_is_ended_with_an_empty_mail(
    start_sink: Callable[..., SmtpSink], tls: TlsFiles, tmp_path: Path
) -> None:
    """RFC 2920 3.1: a pipelining client must read DATA's reply even when every RCPT was
    refused; if the server took DATA anyway, a lone dot ends it, and the mail is not sent."""
    sink = start_sink(pipelining=True)
    sink.script.rcpt_replies["gone@example.ch"] = "550 5.1.1 No such user"
    sink.script.data_after_refused_rcpt = True
    session = open_session(sink, tls, tmp_path)
    try:
        first = session.send(SENDER, "gone@example.ch", mail(1))
        second = session.send(SENDER, "bert@example.ch", mail(2))
    finally:
        session.close()
    assert (first.kind, first.detail) == (OutcomeKind.PERMANENT, "550 5.1.1 No such user")
    assert second.kind is OutcomeKind.ACCEPTED
    assert [(m.recipients, m.data[:20]) for m in sink.received] == [
        (("gone@example.ch",), b""),
        (("bert@example.ch",), b"Message-ID: <2@test>"),
    ]
    assert sink.mail_connections() == 1
