"""Delivery under faults, with real processes: the gunicorn SOAP server, `soap-service worker`
processes killed with SIGKILL, a real SMTP server (aiosmtpd, STARTTLS from the test CA) that
answers what a test scripts, and a real PostgreSQL restarted under the workers.

Every test waits with a deadline on GetStatus or on what the SMTP server received, and
asserts states, replies and Message-IDs, never durations.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PostgresDatabases
from tests.e2e.stack import (
    FINAL_OR_SENT,
    LEASE_SECONDS,
    Stack,
    expected_message_id,
    message_id_of,
    new_reference,
    start_stack,
    wait_until,
)
from tests.smtp_sink import ReceivedMail, SmtpSink
from tests.support import (
    TlsFiles,
    WorkerProcess,
    count_messages,
    fault_of,
)

pytestmark = pytest.mark.e2e


def without_date(data: bytes) -> bytes:
    return b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"Date: "))


def mails_to(sink: SmtpSink, address: str) -> list[ReceivedMail]:
    return [mail for mail in list(sink.received) if mail.recipients == (address,)]


def wait_sent_once_or_twice(
    stack: Stack, sink: SmtpSink, message_id: str, addresses: tuple[str, ...]
) -> list[list[ReceivedMail]]:
    """Wait until every recipient of `message_id` is sent; the mails each address received,
    in order: one, or two where a crash or an outage lost the record of the first, all
    with the recipient's own Message-ID."""
    recipients = stack.wait_all(message_id, "sent", timeout=LEASE_SECONDS + 30)
    assert [r.Address for r in recipients] == list(addresses)
    received = []
    for position, address in enumerate(addresses, start=1):
        mails = mails_to(sink, address)
        assert 1 <= len(mails) <= 2, (address, len(mails))
        assert {mail.message_id for mail in mails} == {expected_message_id(message_id, position)}
        received.append(mails)
    return received


# 1. A worker killed in the middle of an SMTP transaction.


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_worker_killed_mid_transaction_another_worker_delivers_after_the_lease(
    backend: str, make_stack: Callable[[str], Stack], start_sink: Callable[..., SmtpSink]
) -> None:
    stack = make_stack(backend)
    sink = start_sink()
    # Every DATA is answered only after a pause: the first mail is accepted (250), and the
    # worker is killed while it waits for the answer to the second. The worker records a
    # batch's outcomes after the batch, so the first mail is sent again: a duplicate.
    sink.script.data_delay = 1.5
    addresses = tuple(f"crash-{i}@example.ch" for i in range(1, 5))
    message_id = stack.send(addresses)
    first = stack.start_worker(sink, "first")

    wait_until(
        lambda: len(sink.events) >= 2,
        "the first worker to start its second SMTP transaction",
        timeout=30,
        why=lambda: stack.describe([]),
    )
    first.kill()
    assert first.process is not None and first.process.returncode == -signal.SIGKILL
    assert [mail.recipients for mail in sink.received] == [(addresses[0],)]
    sink.script.data_delay = 0.0

    stack.start_worker(sink, "second")
    for mails in wait_sent_once_or_twice(stack, sink, message_id, addresses):
        assert all(mail.tls for mail in mails)
        # A duplicate is the same notification (same pickup link); only its Date differs.
        assert len({without_date(mail.data) for mail in mails}) == 1
    assert len(sink.received) <= 2 * len(addresses)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_worker_killed_mid_gateway_transaction_resends_at_most_the_mail_in_flight(
    backend: str,
    make_stack: Callable[[str], Stack],
    start_sink: Callable[..., SmtpSink],
    tls: TlsFiles,
) -> None:
    """The same crash safety for gateway delivery (issue 14): every recipient ends
    `delivered`, each with one or two copies of its signed mail, the same Message-ID."""
    stack = make_stack(backend)
    relay, gateway = start_sink(), start_sink()
    stack.service.cli(
        "organisation", "add", "firm", "--domain", "firm.example",
        "--gateway", f"127.0.0.1:{gateway.port}", "--gateway-ca", str(tls.ca_cert),
    )  # fmt: skip
    gateway.script.data_delay = 1.5
    addresses = tuple(f"crash-{i}@firm.example" for i in range(1, 5))
    message_id = stack.send(addresses)
    first = stack.start_worker(relay, "first")

    wait_until(
        lambda: len(gateway.events) >= 2,
        "the first worker to start its second gateway transaction",
        timeout=30,
        why=lambda: stack.describe([]),
    )
    first.kill()
    assert [mail.recipients for mail in gateway.received] == [(addresses[0],)]
    gateway.script.data_delay = 0.0

    stack.start_worker(relay, "second")
    recipients = stack.wait_all(message_id, "delivered", timeout=LEASE_SECONDS + 30)
    assert [r.Address for r in recipients] == list(addresses)
    for position, address in enumerate(addresses, start=1):
        mails = mails_to(gateway, address)
        assert 1 <= len(mails) <= 2, (address, len(mails))
        assert {mail.message_id for mail in mails} == {expected_message_id(message_id, position)}
        assert all(mail.message.get_content_type() == "multipart/signed" for mail in mails)
    assert len(gateway.received) <= len(addresses) + 1
    assert relay.received == []


# 2. The SOAP server killed right after it committed a message.


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_server_killed_after_commit_retry_gets_same_message_id_and_it_is_delivered(
    backend: str, make_stack: Callable[[str], Stack], start_sink: Callable[..., SmtpSink]
) -> None:
    stack = make_stack(backend)
    sink = start_sink()
    body = stack.envelope(new_reference(), ("after-crash@example.ch",))

    message_id = message_id_of(stack.service.post(body))
    stack.service.kill()  # the 200 arrived: the commit happened
    assert not stack.service.is_running()

    stack.service.start()
    assert message_id_of(stack.service.post(body)) == message_id
    assert count_messages(stack.service.database_url) == 1

    stack.start_worker(sink, "worker")
    [recipient] = stack.wait_all(message_id, "sent")
    assert recipient.Attempts == 1
    [mail] = sink.received
    assert mail.recipients == ("after-crash@example.ch",)
    assert mail.message_id == expected_message_id(message_id, 1)
    assert mail.tls


# 3. What the SMTP server answers, end to end: one worker, one server, one sink.


@dataclass
class OutcomeStack:
    stack: Stack
    sink: SmtpSink


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, tls: TlsFiles) -> Iterator[OutcomeStack]:
    folder = tmp_path_factory.mktemp("outcomes")
    sink = SmtpSink(cert_chain=tls.server_cert, key=tls.server_key).start()
    stack: Stack | None = None
    try:
        stack = start_stack(folder, f"sqlite:///{folder / 'service.sqlite3'}", tls)
        stack.start_worker(sink, "worker")
        yield OutcomeStack(stack, sink)
    finally:
        if stack is not None:
            stack.stop()
        sink.stop()


def deferred_with(reply: str) -> Callable[[list[Any]], bool]:
    return lambda rs: rs[0].State == "deferred" and rs[0].LastError == reply


@pytest.mark.parametrize(
    ("stage", "reply", "error"),
    [
        # Any answer but 250 to MAIL FROM is about the sender, not the recipient: the whole
        # destination is deferred, even for a 5xx.
        (
            "mail",
            "421 4.3.2 Service shutting down",
            "127.0.0.1 refused the sender: 421 4.3.2 Service shutting down",
        ),
        (
            "mail",
            "550 5.7.1 Sender not allowed",
            "127.0.0.1 refused the sender: 550 5.7.1 Sender not allowed",
        ),
        ("data", "421 4.3.2 Service shutting down", "127.0.0.1: 421 4.3.2 Service shutting down"),
        ("data", "451 4.3.0 Try again later", "451 4.3.0 Try again later"),
    ],
)
def test_temporary_reply_defers_then_sends(
    outcomes: OutcomeStack, stage: str, reply: str, error: str
) -> None:
    stack, sink = outcomes.stack, outcomes.sink
    address = f"temporary-{stage}-{reply[:3]}@example.ch"
    # The server keeps answering `reply` until the test has seen `deferred`, then 250.
    replies = sink.script.mail_replies if stage == "mail" else sink.script.data_replies
    replies.extend([reply] * 1000)
    try:
        message_id = stack.send((address,))
        stack.wait_for_states(message_id, deferred_with(error), f"deferred with {error!r}")
        assert mails_to(sink, address) == []
    finally:
        replies.clear()
    [recipient] = stack.wait_all(message_id, "sent")

    assert recipient.LastError is None
    assert recipient.Attempts >= 2
    [mail] = mails_to(sink, address)
    assert mail.message_id == expected_message_id(message_id, 1)
    journal = [kind for kind, _ in stack.journal(message_id, 1)]
    assert journal[0] == "queued" and journal[-1] == "sent"
    assert set(journal[1:-1]) == {"deferred"}
    assert {detail for kind, detail in stack.journal(message_id, 1) if kind == "deferred"} == {
        error
    }


def test_permanent_reply_fails_with_the_reason(outcomes: OutcomeStack) -> None:
    stack, sink = outcomes.stack, outcomes.sink
    address = "nobody@example.ch"
    sink.script.rcpt_replies[address] = "550 5.1.1 No such user here"
    try:
        message_id = stack.send((address,))
        [recipient] = stack.wait_for_states(
            message_id, lambda rs: rs[0].State in FINAL_OR_SENT, "a final state"
        )
    finally:
        del sink.script.rcpt_replies[address]

    assert recipient.State == "failed"
    assert recipient.LastError == "550 5.1.1 No such user here"
    assert recipient.Attempts == 1
    assert recipient.NextAttemptAt is None
    assert mails_to(sink, address) == []


def drop_after_data(sink: SmtpSink, count: int) -> None:
    """Make the sink drop the connection instead of answering the next `count` DATAs."""
    sink.script.drop_after_data = count


def test_connection_dropped_after_data_defers_then_sends(outcomes: OutcomeStack) -> None:
    stack, sink = outcomes.stack, outcomes.sink
    address = "dropped@example.ch"
    drop_after_data(sink, 1000)
    try:
        message_id = stack.send((address,))
        [recipient] = stack.wait_for_states(
            message_id,
            lambda rs: rs[0].State == "deferred" and rs[0].Attempts >= 1,
            "deferred after a dropped connection",
        )
        assert "dropped the connection" in recipient.LastError
        assert recipient.NextAttemptAt is not None
        assert mails_to(sink, address) == []
    finally:
        drop_after_data(sink, 0)
    [recipient] = stack.wait_all(message_id, "sent")
    [mail] = mails_to(sink, address)
    assert mail.message_id == expected_message_id(message_id, 1)


@pytest.mark.parametrize(
    ("stage", "error"),
    [
        ("mail", "127.0.0.1 refused the sender: 421 4.3.2 Service shutting down"),
        ("data", "127.0.0.1: 421 4.3.2 Service shutting down"),
    ],
)
def test_a_421_defers_the_whole_destination_without_a_new_connection(
    stage: str,
    error: str,
    make_stack: Callable[[str], Stack],
    start_sink: Callable[..., SmtpSink],
) -> None:
    stack = make_stack("sqlite")
    sink = start_sink()
    # Only the first answer is a 421: a new connection would have been served.
    replies = sink.script.mail_replies if stage == "mail" else sink.script.data_replies
    replies.append("421 4.3.2 Service shutting down")
    addresses = ("first-421@example.ch", "second-421@example.ch", "third-421@example.ch")
    message_id, recipients = stack.one_attempt_each(sink, addresses)

    # The server asked to be left alone: every recipient of the destination gets its 421
    # (not an error the client made up, such as "please run connect() first"), one attempt
    # counted each, and no one knocks again in this batch.
    for recipient in recipients:
        assert (recipient.State, recipient.Attempts, recipient.LastError) == (
            "deferred",
            1,
            error,
        )
        assert recipient.NextAttemptAt is not None
    for position in range(1, len(addresses) + 1):
        assert stack.journal(message_id, position)[1:] == [("deferred", error)]
    assert sink.mail_connections() == 1
    assert sink.events == [("MAIL", True)]
    assert sink.received == []
    assert list(replies) == []


def test_a_dropped_connection_defers_only_that_mail_and_the_next_gets_a_new_one(
    make_stack: Callable[[str], Stack], start_sink: Callable[..., SmtpSink]
) -> None:
    stack = make_stack("sqlite")
    sink = start_sink()
    drop_after_data(sink, 1)  # only the first DATA: the line goes dead after it
    addresses = ("first-drop@example.ch", "second-drop@example.ch", "third-drop@example.ch")
    message_id, (first, *others) = stack.one_attempt_each(sink, addresses)

    assert (first.State, first.Attempts) == ("deferred", 1)
    assert first.LastError.startswith("127.0.0.1 dropped the connection"), first.LastError
    assert first.NextAttemptAt is not None
    for recipient in others:
        assert (recipient.State, recipient.Attempts, recipient.LastError) == ("sent", 1, None)
    [dropped] = sink.dropped
    assert expected_message_id(message_id, 1).encode() in dropped
    assert [mail.recipients for mail in sink.received] == [(address,) for address in addresses[1:]]
    assert sink.message_ids() == [
        expected_message_id(message_id, 2),
        expected_message_id(message_id, 3),
    ]
    # The first connection died with the first mail; the other two shared a new one.
    assert sink.mail_connections() == 2
    assert [tls for _, tls in sink.events] == [True, True, True]


# 4. No STARTTLS, or a certificate from an unknown CA: nothing is sent, not even MAIL.


@pytest.mark.parametrize(
    ("server", "reason"),
    [("no-starttls", "does not offer STARTTLS"), ("unknown-ca", "does not verify")],
)
def test_no_verified_tls_defers_and_sends_nothing(
    server: str,
    reason: str,
    foreign_tls: TlsFiles,
    make_stack: Callable[[str], Stack],
    start_sink: Callable[..., SmtpSink],
) -> None:
    stack = make_stack("sqlite")
    if server == "no-starttls":
        sink = start_sink(cert_chain=None, key=None, starttls=False)
    else:
        sink = start_sink(cert_chain=foreign_tls.server_cert, key=foreign_tls.server_key)
    _, recipients = stack.one_attempt_each(sink, ("secret@example.ch", "other@example.ch"))
    for recipient in recipients:
        assert recipient.State == "deferred"
        assert recipient.Attempts == 1
        assert reason in recipient.LastError
        assert "nothing sent" in recipient.LastError
        assert recipient.NextAttemptAt is not None
    assert sink.events == []  # not even MAIL FROM, in plaintext or otherwise
    assert sink.received == []


# 5. PostgreSQL restarted under running workers.


def postgres_accepts_connections() -> bool:
    result = subprocess.run(
        ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False, timeout=10
    )
    return result.returncode == 0


def pg_ctlcluster(action: str, *, check: bool = True) -> None:
    """Start, stop or restart the machine's PostgreSQL cluster (the newest version)."""
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=check,
        timeout=120,
        capture_output=True,
    )


def ensure_postgresql_up() -> None:
    """Other tests share this cluster: whatever happened, leave it accepting connections."""
    if not postgres_accepts_connections():
        pg_ctlcluster("start", check=False)  # fails harmlessly if it is starting already
    wait_until(postgres_accepts_connections, "PostgreSQL accepting connections", timeout=60)


def send_until_accepted(stack: Stack, recipients: tuple[str, ...], *, timeout: float) -> str:
    """What a client does: retry the same SendMessage while the service is unavailable."""
    body = stack.envelope(new_reference(), recipients)
    answers: list[str] = []

    def attempt() -> str | None:
        response = stack.service.post(body)
        if response.status_code == 200:
            return message_id_of(response)
        code, _ = fault_of(response)
        assert code == "Server.Unavailable", code
        answers.append(code)
        return None

    return wait_until(attempt, "SendMessage accepted", timeout=timeout, why=lambda: str(answers))


def wait_for_log(worker: WorkerProcess, text: str, *, timeout: float) -> str:
    """The worker's log output once it contains `text`."""

    def logged() -> str:
        log = worker.log_text()
        return log if text in log else ""

    return wait_until(
        logged,
        f"{text!r} in the log of {worker.name}",
        timeout=timeout,
        why=worker.log_text,
    )


def test_postgresql_restart_under_running_workers_loses_nothing(
    make_stack: Callable[[str], Stack],
    start_sink: Callable[..., SmtpSink],
    postgres: PostgresDatabases,
) -> None:
    stack = make_stack("postgresql")
    sink = start_sink()
    sink.script.data_delay = 0.05  # keep deliveries in flight across the restart
    workers = [stack.start_worker(sink, f"worker-{i}") for i in (1, 2)]
    sent: dict[str, tuple[str, ...]] = {}
    for batch in range(3):
        addresses = tuple(f"before-{batch}-{i}@example.ch" for i in range(4))
        sent[stack.send(addresses)] = addresses
    try:
        pg_ctlcluster("stop")
        # Down until every worker has found it so, whether it was sending or idle: each
        # tries again and again meanwhile.
        for worker in workers:
            wait_for_log(worker, "delivery paused", timeout=30)
        # Then down a while longer: with 50 ms polls each worker tries several more times
        # (backing off 0.1, 0.2, 0.4 s ...), whatever moment the first failure came.
        time.sleep(2)
        pg_ctlcluster("start")
    finally:
        ensure_postgresql_up()
    for batch in range(3):
        addresses = tuple(f"after-{batch}-{i}@example.ch" for i in range(4))
        sent[send_until_accepted(stack, addresses, timeout=30)] = addresses

    for message_id, addresses in sent.items():
        wait_sent_once_or_twice(stack, sink, message_id, addresses)
    assert all(worker.is_running() for worker in workers), stack.describe([])
    for worker in workers:
        # Each worker said it paused once for the whole outage, however often it tried,
        # and that it resumed once the database was back (it may still be backing off).
        log = wait_for_log(worker, "delivery resumed", timeout=60)
        assert log.count("delivery paused") == 1, log
        assert log.count("delivery resumed") == 1, log
        assert log.index("delivery paused") < log.index("delivery resumed"), log
        tries = re.search(r"delivery resumed after (\d+) failed tries", log)
        # More than one failed try (the database stayed down while it started again), so
        # that "once" above is not by chance.
        assert tries and int(tries.group(1)) >= 2, log


# 6. Two workers, 2,000 recipients, PostgreSQL: each sent exactly once.


def test_two_workers_send_each_of_2000_recipients_exactly_once(
    make_stack: Callable[[str], Stack], start_sink: Callable[..., SmtpSink]
) -> None:
    stack = make_stack("postgresql")
    sink = start_sink()
    workers = [stack.start_worker(sink, f"worker-{i}", WORKER_BATCH="50") for i in (1, 2)]
    expected: dict[str, str] = {}  # Message-ID -> address
    message_ids = []
    for batch in range(20):
        addresses = tuple(f"employee-{batch:02d}-{i:03d}@example.ch" for i in range(100))
        message_id = stack.send(addresses)
        message_ids.append(message_id)
        for position, address in enumerate(addresses, start=1):
            expected[expected_message_id(message_id, position)] = address

    wait_until(
        lambda: len(sink.received) >= 2000,
        "2,000 mails at the SMTP server",
        timeout=120,
        why=lambda: f"{len(sink.received)} received\n{stack.describe([])}",
    )
    for message_id in message_ids:
        recipients = stack.wait_all(message_id, "sent", timeout=30)
        assert [r.Attempts for r in recipients] == [1] * 100

    counts = Counter(mail.message_id for mail in sink.received)
    assert [mid for mid, n in counts.items() if n > 1] == []
    assert set(counts) == set(expected)
    assert len(sink.received) == 2000
    assert all(mail.recipients == (expected[mail.message_id],) for mail in sink.received)
    assert stack.journal_kinds() == {"accepted": 20, "queued": 2000, "sent": 2000}
    for worker in workers:  # both took part: the claims really competed
        assert worker.is_running()
        assert re.search(r"delivered \d+", worker.log_text()), f"{worker.name} sent nothing"


# 7. A kill storm: two workers, 2,000 recipients, 20 SIGKILLs at random moments, each
#    worker started again at once. Nothing is lost, and each outcome is recorded as soon
#    as it is known, so a kill sends again only the mail on its way: at most one extra
#    mail per kill in all.

KILLS = 20


def test_a_kill_storm_loses_nothing_and_sends_at_most_one_extra_mail_per_kill(
    make_stack: Callable[[str], Stack],
    start_sink: Callable[..., SmtpSink],
    record_property: Callable[[str, object], None],
) -> None:
    stack = make_stack("postgresql")
    sink = start_sink()
    # A server that takes a few ms to accept each sender, as busy ones do: the storm's
    # kills fall while there is work, and mostly before a mail is handed over. At 10 ms
    # the work was sometimes done after 9 of the 20 kills (a CI run); 20 ms makes it last
    # the whole storm.
    sink.script.mail_delay = 0.02
    expected: dict[str, str] = {}  # Message-ID -> address
    for batch in range(20):
        addresses = tuple(f"storm-{batch:02d}-{i:03d}@example.ch" for i in range(100))
        message_id = stack.send(addresses)
        for position, address in enumerate(addresses, start=1):
            expected[expected_message_id(message_id, position)] = address
    workers = [stack.start_worker(sink, f"storm-{i}") for i in (1, 2)]

    chance = random.Random(20261206)  # the same storm on every run
    during_work = 0
    for _ in range(KILLS):
        time.sleep(chance.uniform(0.05, 0.5))
        victim = workers[chance.randrange(len(workers))]
        during_work += len({m.message_id for m in sink.received}) < len(expected)
        victim.kill()
        victim.start()

    wait_until(
        lambda: set(expected) <= {mail.message_id for mail in sink.received},
        "every recipient's notification at the SMTP server",
        timeout=180,
        why=lambda: f"{len(sink.received)} received\n{stack.describe([])}",
    )
    extra = len(sink.received) - len(expected)
    record_property("kills_while_working", during_work)
    record_property("extra_mails", extra)
    print(f"kill storm: {during_work} of {KILLS} kills while there was work, {extra} extra mails")
    assert during_work >= KILLS // 2, "the storm must hit the workers while they work"
    assert extra <= KILLS
    counts = Counter(mail.message_id for mail in sink.received)
    assert set(counts) == set(expected)  # nothing lost, nothing unexpected
    assert all(mail.recipients == (expected[mail.message_id],) for mail in sink.received)
