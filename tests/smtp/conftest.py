"""Fixtures of the SMTP channel's tests: the channel beside the module's running service,
a sender account, and a helper that submits raw bytes and returns every reply."""

from __future__ import annotations

import email.policy
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

import pytest
import zeep

from tests.support import ServiceProcess, SmtpChannelProcess

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class SmtpSender:
    username: str
    password: str
    client: zeep.Client  # the same account over SOAP: GetStatus

    @property
    def login(self) -> tuple[str, str]:
        return self.username, self.password


@pytest.fixture(scope="module")
def channel(service: ServiceProcess) -> Iterator[SmtpChannelProcess]:
    process = SmtpChannelProcess(service=service).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def smtp_sender(service: ServiceProcess) -> SmtpSender:
    username, password = service.add_account()
    return SmtpSender(username, password, service.client(username, password))


@dataclass(frozen=True)
class Replies:
    mail: tuple[int, bytes]
    rcpts: tuple[tuple[int, bytes], ...]
    data: tuple[int, bytes] | None  # None: DATA was not reached (no recipient taken)

    @property
    def data_reply(self) -> str:
        assert self.data is not None, self
        return f"{self.data[0]} {self.data[1].decode()}"


def submit(
    client: smtplib.SMTP,
    mail: bytes | Message,
    recipients: tuple[str, ...] = ("anna@example.ch.secure.test",),
    *,
    mail_from: str = "hr@firm.example",
    mail_options: tuple[str, ...] = (),
) -> Replies:
    """MAIL, each RCPT and DATA by hand: every reply as the server gave it. A message
    object is sent as smtplib would (CRLF line ends); bytes exactly as given."""
    raw = mail if isinstance(mail, bytes) else mail.as_bytes(policy=email.policy.SMTP)
    mail = client.mail(mail_from, list(mail_options))
    rcpts = tuple(client.rcpt(address) for address in recipients)
    if not any(code == 250 for code, _ in rcpts):
        client.rset()
        return Replies(mail, rcpts, None)
    data = client.data(raw)
    return Replies(mail, rcpts, data)


def reply_text(reply: tuple[int, bytes]) -> str:
    return f"{reply[0]} {reply[1].decode()}"
