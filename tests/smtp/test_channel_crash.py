"""The SMTP channel SIGKILLed while four clients submit: every mail answered 250 is stored,
and the mails sent again after the restart (as an MTA does when it got no answer) are
stored once each. Real process, both databases."""

from __future__ import annotations

import smtplib
import threading
import uuid
from email.mime.text import MIMEText

import pytest
from sqlalchemy import create_engine, text

from tests.smtp.conftest import SmtpSender, submit
from tests.support import ServiceProcess, SmtpChannelProcess

pytestmark = pytest.mark.e2e

CLIENTS = 4
MAILS_EACH = 60


def payslip(message_id: str) -> MIMEText:
    mail = MIMEText("Your payslip. " * 200, "plain", "utf-8")
    mail["Subject"] = "Payslip"
    mail["Message-ID"] = f"<{message_id}>"
    return mail


def stored_references(service: ServiceProcess, prefix: str) -> list[str]:
    engine = create_engine(service.database_url)
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    text("SELECT reference FROM messages WHERE reference LIKE :p"),
                    {"p": prefix + "%"},
                ).scalars()
            )
    finally:
        engine.dispose()


def test_a_killed_channel_loses_no_answered_mail_and_stores_resent_ones_once(
    service: ServiceProcess, smtp_sender: SmtpSender
) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:8]}-"
    ids = [[f"{prefix}{c}-{n}@firm.example" for n in range(MAILS_EACH)] for c in range(CLIENTS)]
    answered: set[str] = set()
    lock = threading.Lock()
    enough = threading.Event()
    channel = SmtpChannelProcess(service=service, name="smtp-crash").start()

    def client(mine: list[str]) -> None:
        try:
            with channel.connect(login=smtp_sender.login, timeout=30) as connection:
                for message_id in mine:
                    reply = submit(connection, payslip(message_id)).data_reply
                    assert reply.startswith("250 2.0.0 "), reply
                    with lock:
                        answered.add(message_id)
                        if len(answered) >= CLIENTS * MAILS_EACH // 3:
                            enough.set()
        except (smtplib.SMTPException, OSError):
            pass  # the server went away: what got no 250 is sent again below

    threads = [threading.Thread(target=client, args=(mine,)) for mine in ids]
    for thread in threads:
        thread.start()
    assert enough.wait(120), "the clients did not get going"
    channel.kill()  # mid-stream: some mails in DATA, some committing, some answered
    for thread in threads:
        thread.join(60)
    everything = {message_id for mine in ids for message_id in mine}
    assert 0 < len(answered) < len(everything)

    stored = stored_references(service, prefix)
    assert len(stored) == len(set(stored))  # none twice
    assert answered <= set(stored)  # nothing that got 250 is lost

    # The MTA's retry: everything not answered, and a few answered ones again.
    channel = SmtpChannelProcess(service=service, name="smtp-crash", port=channel.port).start()
    try:
        again = sorted(everything - answered) + sorted(answered)[:10]
        with channel.connect(login=smtp_sender.login) as connection:
            for message_id in again:
                assert submit(connection, payslip(message_id)).data_reply.startswith("250 2.0.0 ")
    finally:
        channel.stop()
    stored = stored_references(service, prefix)
    assert sorted(stored) == sorted(everything)  # each exactly once
