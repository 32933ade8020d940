"""DeliveryWorker.run_once against a real SMTP server (aiosmtpd, STARTTLS, scripted
answers), on a clock the test moves: what the server got, and what GetStatus says."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import update

from soap_service import crypto
from soap_service.domain.model import MessageType, RecipientState, RecipientStatus
from soap_service.persistence.tables import RecipientRow
from tests.delivery.conftest import Env, SmtpSink, worker_for
from tests.smtp_sink import ReceivedMail
from tests.support import TlsFiles

PICKUP = "https://pickup.example.ch/m/"
LINK = re.compile(re.escape(PICKUP) + r"([A-Za-z0-9_-]{43})\b")


@pytest.fixture
def env(database_url: str, env_factory: Callable[..., Env]) -> Env:
    return env_factory(database_url)


@pytest.fixture(params=[False, True], ids=["one-command-at-a-time", "pipelining"])
def sink(
    start_sink: Callable[..., SmtpSink], tls: TlsFiles, request: pytest.FixtureRequest
) -> SmtpSink:
    """A server without PIPELINING and one with it: the same outcomes either way."""
    return start_sink(cert_chain=tls.server_cert, key=tls.server_key, pipelining=request.param)


def recipient(env: Env, message_id: str, position: int = 1) -> RecipientStatus:
    return env.status(message_id).recipients[position - 1]


def leaves(mail: ReceivedMail) -> list[EmailMessage]:
    return [part for part in mail.message.walk() if not part.is_multipart()]  # type: ignore[misc]


def pickup_tokens(mail: ReceivedMail) -> set[str]:
    found: set[str] = set()
    for part in leaves(mail):
        found.update(LINK.findall(part.get_content()))
    return found


@pytest.mark.parametrize("reply", ["451 4.3.0 Try again later", "421 4.7.0 Too busy, closing"])
def test_a_temporary_answer_at_mail_defers_then_the_next_run_sends(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path, reply: str
) -> None:
    status = env.send("anna@example.ch")
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)
    sink.script.mail_replies.append(reply)
    attempted = env.clock()

    assert worker.run_once() == 1
    deferred = recipient(env, status.message_id)
    assert deferred.state is RecipientState.DEFERRED
    assert deferred.attempts == 1
    assert deferred.last_attempt_at == attempted
    assert deferred.next_attempt_at == attempted + timedelta(seconds=300)
    assert deferred.last_error is not None
    assert reply in deferred.last_error
    assert sink.received == []
    assert sink.events == [("MAIL", True)]

    # Not due yet: nothing happens.
    env.clock.advance(seconds=299)
    assert worker.run_once() == 0
    assert recipient(env, status.message_id).state is RecipientState.DEFERRED

    env.clock.advance(seconds=1)
    assert worker.run_once() == 1
    sent = recipient(env, status.message_id)
    assert sent.state is RecipientState.SENT
    assert sent.attempts == 2
    assert sent.last_error is None
    assert sent.next_attempt_at is None
    [mail] = sink.received
    assert mail.recipients == ("anna@example.ch",)
    assert mail.tls
    assert mail.message_id == f"<{status.message_id}.1@localhost>"
    [recipient_id] = env.recipient_ids(status.message_id)
    assert [kind for kind, _ in env.journal(recipient_id)] == ["queued", "deferred", "sent"]


def test_a_550_at_rcpt_fails_with_the_servers_reason(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("ghost@example.ch")
    sink.script.rcpt_replies["ghost@example.ch"] = "550 5.1.1 <ghost@example.ch>: no such user"
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 1
    failed = recipient(env, status.message_id)
    assert failed.state is RecipientState.FAILED
    assert failed.attempts == 1
    assert failed.next_attempt_at is None
    assert failed.last_error == "550 5.1.1 <ghost@example.ch>: no such user"
    assert sink.received == []
    # Final: a later run does not try again.
    env.clock.advance(days=1)
    assert worker.run_once() == 0
    assert sink.events == [("MAIL", True)]


def test_a_5xx_after_data_fails_with_the_reply(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch")
    sink.script.data_replies.append("554 5.7.1 Message rejected as spam")
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)
    assert worker.run_once() == 1
    failed = recipient(env, status.message_id)
    assert failed.state is RecipientState.FAILED
    assert failed.last_error == "554 5.7.1 Message rejected as spam"


def test_a_connection_dropped_after_data_is_deferred(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch")
    sink.script.drop_after_data = 1
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 1
    deferred = recipient(env, status.message_id)
    assert deferred.state is RecipientState.DEFERRED
    assert deferred.attempts == 1
    assert deferred.next_attempt_at == env.clock() + timedelta(seconds=300)
    assert deferred.last_error is not None
    assert "127.0.0.1" in deferred.last_error
    assert sink.received == []

    env.clock.advance(seconds=300)
    assert worker.run_once() == 1
    assert recipient(env, status.message_id).state is RecipientState.SENT
    # The server may have kept the first copy: the second is the same notification.
    [dropped] = sink.dropped
    [mail] = sink.received
    first = email.message_from_bytes(dropped, policy=email.policy.default)
    assert first["Message-ID"] == mail.message_id == f"<{status.message_id}.1@localhost>"
    [token] = pickup_tokens(mail)
    for part in first.walk():
        if not part.is_multipart():
            assert set(LINK.findall(part.get_content())) == {token}


def test_a_server_without_starttls_gets_nothing(
    env: Env, start_sink: Callable[..., SmtpSink], tls: TlsFiles, tmp_path: Path
) -> None:
    sink = start_sink(starttls=False, cert_chain=None, key=None)
    status = env.send("anna@example.ch", "bert@example.ch")
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 2
    for position in (1, 2):
        deferred = recipient(env, status.message_id, position)
        assert deferred.state is RecipientState.DEFERRED
        assert deferred.attempts == 1
        assert deferred.next_attempt_at == env.clock() + timedelta(seconds=300)
        assert deferred.last_error is not None
        assert "STARTTLS" in deferred.last_error
    assert sink.events == []
    assert sink.received == []


def test_a_server_with_a_certificate_from_an_unknown_ca_gets_nothing(
    env: Env,
    start_sink: Callable[..., SmtpSink],
    tls: TlsFiles,
    foreign_tls: TlsFiles,
    tmp_path: Path,
) -> None:
    sink = start_sink(cert_chain=foreign_tls.server_cert, key=foreign_tls.server_key)
    status = env.send("anna@example.ch")
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 1
    deferred = recipient(env, status.message_id)
    assert deferred.state is RecipientState.DEFERRED
    assert deferred.attempts == 1
    assert deferred.last_error is not None
    assert "does not verify" in deferred.last_error
    assert sink.events == []
    assert sink.received == []


def test_a_host_named_insecure_is_sent_to_despite_an_unknown_ca(
    env: Env,
    start_sink: Callable[..., SmtpSink],
    tls: TlsFiles,
    foreign_tls: TlsFiles,
    tmp_path: Path,
) -> None:
    sink = start_sink(cert_chain=foreign_tls.server_cert, key=foreign_tls.server_key)
    status = env.send("anna@example.ch")
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert, SMTP_INSECURE_HOSTS="127.0.0.1")

    assert worker.run_once() == 1
    assert recipient(env, status.message_id).state is RecipientState.SENT
    [mail] = sink.received
    assert mail.tls  # still encrypted, only the certificate is not checked
    assert mail.recipients == ("anna@example.ch",)


def test_one_refused_recipient_in_a_batch_leaves_the_others_sent_on_one_connection(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch", "ghost@example.ch", "carla@example.ch")
    sink.script.rcpt_replies["ghost@example.ch"] = "550 5.1.1 no such user"
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 3
    anna, ghost, carla = env.status(status.message_id).recipients
    assert (anna.state, carla.state) == (RecipientState.SENT, RecipientState.SENT)
    assert ghost.state is RecipientState.FAILED
    assert ghost.last_error == "550 5.1.1 no such user"
    assert [mail.recipients for mail in sink.received] == [
        ("anna@example.ch",),
        ("carla@example.ch",),
    ]
    assert sink.message_ids() == [
        f"<{status.message_id}.1@localhost>",
        f"<{status.message_id}.3@localhost>",
    ]
    assert sink.events == [("MAIL", True)] * 3
    assert sink.mail_connections() == 1


def test_after_a_421_the_rest_of_the_group_is_deferred_without_knocking_again(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch", "bert@example.ch", "carla@example.ch")
    sink.script.mail_replies.append("421 4.7.0 Too busy, closing")
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 3
    recipients = env.status(status.message_id).recipients
    assert [r.state for r in recipients] == [RecipientState.DEFERRED] * 3
    assert [r.attempts for r in recipients] == [1, 1, 1]
    for deferred in recipients:
        assert deferred.last_error is not None
        assert "421 4.7.0 Too busy, closing" in deferred.last_error
    assert sink.events == [("MAIL", True)]
    assert sink.mail_connections() == 1
    assert sink.received == []


def test_a_refused_sender_defers_the_group_and_fails_nobody(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    """A 5xx at MAIL FROM is about us, not the recipient: nobody fails for it."""
    status = env.send("anna@example.ch", "bert@example.ch")
    sink.script.mail_replies.append("553 5.7.1 Sender address rejected")
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 2
    recipients = env.status(status.message_id).recipients
    assert [r.state for r in recipients] == [RecipientState.DEFERRED] * 2
    for deferred in recipients:
        assert deferred.last_error is not None
        assert "refused the sender: 553 5.7.1 Sender address rejected" in deferred.last_error
    assert sink.events == [("MAIL", True)]


def test_a_long_batch_keeps_every_recipient_it_holds_until_it_records_them(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    """Each mail takes 0.8 s of the worker's clock, the lease is 1 s: the worker must renew
    its leases (sent ones too, until recorded), and nothing of its batch may become
    claimable by another worker."""
    status = env.send("anna@example.ch", "bert@example.ch", "carla@example.ch")
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)
    stolen: list[list[str]] = []

    def slow_server(mail_number: int) -> None:
        env.clock.advance(seconds=0.8)
        # Real time for the worker's lease keeper, which renews every third of a lease.
        time.sleep(1.0)
        store = env.database.store()
        try:
            now = env.clock()
            jobs = store.claim_due("worker-2", now=now, lease_until=now, limit=10)
        finally:
            store.close()
        stolen.append([job.address for job in jobs])

    sink.on_mail = slow_server
    assert worker.run_once() == 3
    assert stolen == [[], [], []]
    assert [r.state for r in env.status(status.message_id).recipients] == [RecipientState.SENT] * 3


def test_an_expired_message_is_expired_not_sent(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch", expiry_days=1)
    ids = env.recipient_ids(status.message_id)
    env.clock.advance(days=1, seconds=1)
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 0
    expired = recipient(env, status.message_id)
    assert expired.state is RecipientState.EXPIRED
    assert expired.attempts == 0
    assert env.journal(ids[0])[-1] == ("expired", "the message expired")
    assert sink.events == []
    assert sink.received == []


def test_a_withdrawn_message_is_not_sent(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch", "bert@example.ch")
    env.service.cancel(env.account, message_id=status.message_id)
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 0
    assert [r.state for r in env.status(status.message_id).recipients] == [
        RecipientState.CANCELLED
    ] * 2
    assert sink.events == []


def test_the_notification_links_to_the_token_whose_hash_is_stored(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch", "bert@example.ch", type=MessageType.REGISTERED)
    ids = env.recipient_ids(status.message_id)
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 2
    tokens = []
    for mail, recipient_id in zip(sink.received, ids, strict=True):
        [token] = pickup_tokens(mail)
        assert len(crypto.sha256(token.encode("ascii"))) == 32
        assert crypto.sha256(token.encode("ascii")) == env.recipient_row(recipient_id).token_hash
        # The link appears in the text, in the HTML and in the attachment.
        assert sum(PICKUP + token in part.get_content() for part in leaves(mail)) == 3
        tokens.append(token)
    assert tokens[0] != tokens[1]


def test_the_notification_holds_no_content_and_the_subject_only_if_allowed(
    env_factory: Callable[..., Env], sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    hidden = env_factory()
    status = hidden.send("anna@example.ch", subject="Lohn Mai", text_body="Nettolohn 6543.21")
    assert worker_for(hidden, sink, tmp_path, ca=tls.ca_cert).run_once() == 1
    [mail] = sink.received
    assert str(mail.message["Subject"]) == (
        "Sichere Nachricht von ACME Treuhand AG (Gesichert durch soap-service)"
    )
    for part in leaves(mail):
        content = part.get_content()
        assert "Nettolohn" not in content
        assert "6543.21" not in content
        assert "Lohn Mai" not in content
    assert b"Nettolohn" not in mail.data
    assert recipient(hidden, status.message_id).state is RecipientState.SENT

    shown = env_factory(f"sqlite:///{tmp_path / 'shown.sqlite3'}", show_subject=True)
    shown.send("bert@example.ch", subject="Lohn Mai", text_body="Nettolohn 6543.21")
    assert worker_for(shown, sink, tmp_path, ca=tls.ca_cert).run_once() == 1
    mail = sink.received[1]
    assert str(mail.message["Subject"]) == (
        "Sichere Nachricht von ACME Treuhand AG: Lohn Mai (Gesichert durch soap-service)"
    )
    assert all("Nettolohn" not in part.get_content() for part in leaves(mail))


def test_an_international_domain_is_addressed_in_idna(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@müller.ch")
    assert worker_for(env, sink, tmp_path, ca=tls.ca_cert).run_once() == 1
    [mail] = sink.received
    assert mail.recipients == ("anna@xn--mller-kva.ch",)
    assert str(mail.message["To"]) == "anna@xn--mller-kva.ch"
    assert recipient(env, status.message_id).state is RecipientState.SENT


def test_a_recipient_deferred_for_days_does_not_break_its_batch(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    """With the defaults a recipient deferred for about 1.7 days has 39 attempts."""
    status = env.send("anna@example.ch", "slow@example.ch")
    slow_id = env.recipient_ids(status.message_id)[1]
    recipients = RecipientRow.__table__
    with env.database.engine.begin() as connection:
        connection.execute(
            update(recipients)
            .where(recipients.c.id == slow_id)
            .values(state="deferred", attempts=39, last_error="451 4.3.0 try later")
        )
    sink.script.rcpt_replies["slow@example.ch"] = "451 4.3.0 try later"
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    assert worker.run_once() == 2
    anna, slow = env.status(status.message_id).recipients
    assert anna.state is RecipientState.SENT
    assert (slow.state, slow.attempts) == (RecipientState.DEFERRED, 40)
