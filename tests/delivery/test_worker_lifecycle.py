"""The worker around the sending: leases taken back mid-batch, a stop mid-batch,
connections kept between batches, recording in the background and when it fails, and a
hostile server's reply. Against a real SMTP server and both databases."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from soap_service.domain.model import RecipientState
from soap_service.errors import InternalError
from soap_service.persistence.store import SqlStore
from soap_service.persistence.tables import RecipientRow
from tests.delivery.conftest import Env, SmtpSink, worker_for
from tests.support import TlsFiles


@pytest.fixture
def env(database_url: str, env_factory: Callable[..., Env]) -> Env:
    return env_factory(database_url)


@pytest.fixture
def sink(start_sink: Callable[..., SmtpSink], tls: TlsFiles) -> SmtpSink:
    return start_sink(cert_chain=tls.server_cert, key=tls.server_key)


def states(env: Env, message_id: str) -> list[RecipientState]:
    return [r.state for r in env.status(message_id).recipients]


def take_over(env: Env, recipient_ids: list[int], worker: str) -> None:
    """What another worker's claim does once a lease has run out."""
    recipients = RecipientRow.__table__
    with env.database.engine.begin() as connection:
        connection.execute(
            update(recipients)
            .where(recipients.c.id.in_(recipient_ids))
            .values(lease_owner=worker, leased_until=env.clock().replace(year=2100))
        )


def run_in_thread(worker: object, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=worker.run, args=(stop,))  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_a_recipient_whose_lease_was_taken_back_mid_batch_is_not_sent(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch", "bert@example.ch", "carla@example.ch")
    ids = env.recipient_ids(status.message_id)
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)

    def stalled_then_taken_over(mail_number: int) -> None:
        if mail_number == 1:
            take_over(env, ids[1:], "worker-2")
            time.sleep(1.0)  # the lease keeper renews every third of the 1 s lease

    sink.on_mail = stalled_then_taken_over
    assert worker.run_once() == 1
    assert [mail.recipients for mail in sink.received] == [("anna@example.ch",)]
    assert states(env, status.message_id) == [
        RecipientState.SENT,
        RecipientState.QUEUED,
        RecipientState.QUEUED,
    ]
    for recipient_id in ids[1:]:
        row = env.recipient_row(recipient_id)
        assert (row.lease_owner, row.attempts) == ("worker-2", 0)
        assert [kind for kind, _ in env.journal(recipient_id)] == ["queued"]
    worker.close()


def test_a_worker_stopped_mid_batch_gives_back_what_it_did_not_try(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    status = env.send("anna@example.ch", "bert@example.ch", "carla@example.ch")
    ids = env.recipient_ids(status.message_id)
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)
    stop = threading.Event()
    sink.on_mail = lambda mail_number: stop.set()

    thread = run_in_thread(worker, stop)
    thread.join(timeout=30)
    assert not thread.is_alive()
    worker.close()

    assert [mail.recipients for mail in sink.received] == [("anna@example.ch",)]
    # The one sent is recorded before the worker ends; the others are free at once, with
    # no attempt counted, for the next worker to take without waiting for a lease.
    assert states(env, status.message_id) == [
        RecipientState.SENT,
        RecipientState.QUEUED,
        RecipientState.QUEUED,
    ]
    for recipient_id in ids[1:]:
        row = env.recipient_row(recipient_id)
        assert (row.lease_owner, row.leased_until, row.attempts) == (None, None, 0)
    sink.on_mail = None
    assert worker_for(env, sink, tmp_path, ca=tls.ca_cert, name="worker-2").run_once() == 2
    assert states(env, status.message_id) == [RecipientState.SENT] * 3


def test_connections_are_kept_between_batches(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)
    first = env.send("anna@example.ch")
    assert worker.run_once() == 1
    second = env.send("bert@example.ch")
    assert worker.run_once() == 1
    assert states(env, first.message_id) == states(env, second.message_id) == [RecipientState.SENT]
    assert len(sink.received) == 2
    assert sink.mail_connections() == 1
    worker.close()


def test_the_run_loop_records_every_batch_in_the_background(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    statuses = [env.send(f"r{n}-a@example.ch", f"r{n}-b@example.ch") for n in range(5)]
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert, WORKER_BATCH="3")
    stop = threading.Event()
    thread = run_in_thread(worker, stop)
    deadline = time.monotonic() + 30
    while len(sink.received) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=30)
    worker.close()
    assert len(sink.received) == 10
    for status in statuses:
        assert states(env, status.message_id) == [RecipientState.SENT] * 2
    assert len({mail.message_id for mail in sink.received}) == 10


def test_a_batch_the_database_refuses_is_recorded_one_result_at_a_time(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = env.send("anna@example.ch", "bert@example.ch", "carla@example.ch")
    record_results = SqlStore.record_results
    calls: list[int] = []

    def refuse_batches(self: SqlStore, worker: str, results: list) -> int:  # type: ignore[type-arg]
        calls.append(len(results))
        if len(results) > 1:
            raise InternalError("a storage error occurred")
        return record_results(self, worker, results)

    monkeypatch.setattr(SqlStore, "record_results", refuse_batches)
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)
    assert worker.run_once() == 3
    assert calls == [3, 1, 1, 1]
    assert states(env, status.message_id) == [RecipientState.SENT] * 3
    worker.close()


def test_a_batch_that_cannot_be_recorded_is_left_to_its_leases(
    env: Env,
    sink: SmtpSink,
    tls: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    status = env.send("anna@example.ch", "bert@example.ch")
    ids = env.recipient_ids(status.message_id)

    def refuse(self: SqlStore, worker: str, results: list) -> int:  # type: ignore[type-arg]
        raise InternalError("a storage error occurred")

    monkeypatch.setattr(SqlStore, "record_results", refuse)
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)
    stop = threading.Event()
    sink.on_mail = lambda mail_number: mail_number == 2 and stop.set()
    with caplog.at_level(logging.WARNING, logger="soap_service.delivery.worker"):
        thread = run_in_thread(worker, stop)
        thread.join(timeout=30)
    worker.close()
    assert len(sink.received) == 2
    assert "a batch was not recorded: 2 of 2 outcomes were not recorded" in caplog.text
    # Still leased to this worker: due again for anyone when the lease runs out, and then
    # sent once more (at most one duplicate, never a loss).
    for recipient_id in ids:
        row = env.recipient_row(recipient_id)
        assert (row.state, row.lease_owner, row.attempts) == ("queued", "worker-1", 0)
    monkeypatch.undo()
    env.clock.advance(seconds=2)
    assert worker_for(env, sink, tmp_path, ca=tls.ca_cert, name="worker-2").run_once() == 2
    assert states(env, status.message_id) == [RecipientState.SENT] * 2


def test_a_reply_with_control_characters_is_stored_clean(
    env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path
) -> None:
    """A NUL would make PostgreSQL refuse the whole batch's record."""
    status = env.send("ghost@example.ch", "anna@example.ch")
    sink.script.rcpt_replies["ghost@example.ch"] = "550 5.1.1 no\x00such\x1b[31m user"
    worker = worker_for(env, sink, tmp_path, ca=tls.ca_cert)
    assert worker.run_once() == 2
    ghost, anna = env.status(status.message_id).recipients
    assert ghost.state is RecipientState.FAILED
    assert ghost.last_error == "550 5.1.1 no such [31m user"
    assert anna.state is RecipientState.SENT
    worker.close()
