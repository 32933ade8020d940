"""The delivery worker: claim due recipients, send their notifications, record outcomes.

Several workers, on one host or several, share the database. A claim is one atomic step
and carries a lease; a worker renews the leases of what it still holds, and what a dead
worker held becomes due again when its lease runs out. A crash between a server's 250
and the record of it sends that notification again, once, with the same Message-ID.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta

from soap_service import crypto
from soap_service.delivery.notification import Notification, NotificationWriter
from soap_service.delivery.routing import NoRoute, Router, RouteUnknown
from soap_service.delivery.smtp import Route, SmtpSession, TransportError, tls_context
from soap_service.domain import sealing
from soap_service.domain.delivery import (
    DeliveryJob,
    DeliveryResult,
    Outcome,
    OutcomeKind,
    RetryPolicy,
)
from soap_service.domain.sealing import MessageCipher
from soap_service.errors import ServiceError
from soap_service.logs import describe_exception
from soap_service.persistence.database import Database
from soap_service.settings import DeliverySettings

log = logging.getLogger(__name__)

# A connection unused this long is closed (servers drop idle clients after a minute or so).
IDLE_CONNECTION_SECONDS = 10.0
# Expired messages are looked for at most this often.
EXPIRY_SWEEP_SECONDS = 30.0
EXPIRY_BATCH = 1000


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class DeliveryWorker:
    def __init__(
        self,
        *,
        database: Database,
        keyring: crypto.Keyring,
        settings: DeliverySettings,
        now: Callable[[], datetime],
        name: str | None = None,
    ) -> None:
        self.name = name or worker_name()
        self._database = database
        self._keyring = keyring
        self._settings = settings
        self._now = now
        self._policy = RetryPolicy(
            minimum=timedelta(seconds=settings.retry_min_seconds),
            maximum=timedelta(seconds=settings.retry_max_seconds),
            give_up=timedelta(seconds=settings.give_up_seconds),
        )
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._writer = NotificationWriter(
            mail_from=settings.smtp.mail_from,
            hostname=settings.smtp.hostname,
            pickup_base_url=settings.pickup_base_url,
        )
        self._router = Router(settings.smtp.relay)
        self._tls = tls_context(settings.smtp)
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifications")
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._recording: Future[None] | None = None
        # Connections kept open between batches, by destination, with when last used.
        self._idle: dict[tuple[Route, ...], tuple[SmtpSession, float]] = {}
        self._last_sweep = -float("inf")

    def run(self, stop: threading.Event) -> None:
        log.info("delivery worker %s started", self.name)
        failures = 0
        while not stop.is_set():
            try:
                handled = self.run_once(record_in_background=True)
                if not handled:
                    self._wait_for_recording()
            except ServiceError as exc:  # the database is away: wait and try again
                if not failures:
                    log.warning("delivery paused: %s", exc.message)
                failures += 1
                stop.wait(_backoff(self._settings.poll_seconds, failures))
                continue
            except Exception as exc:
                # A bug must not stop delivery: what this batch held is retried when its
                # leases run out.
                log.error("delivery batch failed: %s", describe_exception(exc))
                failures += 1
                stop.wait(_backoff(self._settings.poll_seconds, failures))
                continue
            if failures:
                log.info("delivery resumed after %d failed tries", failures)
                failures = 0
            if not handled:
                stop.wait(self._settings.poll_seconds)
        self._wait_for_recording()
        log.info("delivery worker %s stopped", self.name)

    def close(self) -> None:
        self._close_idle_sessions(older_than=-1.0)
        self._writer_thread.shutdown(wait=True, cancel_futures=True)
        self._recorder.shutdown(wait=True)

    def _record(self, results: list[DeliveryResult]) -> None:
        store = self._database.store()
        try:
            store.record_results(self.name, results)
        finally:
            store.close()

    def _wait_for_recording(self) -> None:
        if self._recording is not None:
            recording, self._recording = self._recording, None
            try:
                recording.result()
            except Exception as exc:
                # Its recipients stay leased until the lease runs out, then are tried
                # again: at most one duplicate each, never a loss.
                log.warning("a batch was not recorded: %s", describe_exception(exc))

    def run_once(self, *, record_in_background: bool = False) -> int:
        """Expire what is due, then deliver one batch; the number of recipients handled.

        In the background, a batch's outcomes are written while the next batch is sent
        (its recipients stay leased until then); otherwise before this returns.
        """
        store = self._database.store()
        try:
            if time.monotonic() - self._last_sweep > EXPIRY_SWEEP_SECONDS:
                self._last_sweep = time.monotonic()
                expired = store.expire_due(now=self._now(), limit=EXPIRY_BATCH)
                if expired:
                    log.info("expired %d recipient(s)", expired)
            now = self._now()
            jobs = store.claim_due(
                self.name, now=now, lease_until=now + self._lease, limit=self._settings.batch_size
            )
            if not jobs:
                self._close_idle_sessions(older_than=IDLE_CONNECTION_SECONDS)
                return 0
            results = self._deliver(jobs, store.extend_leases)
            self._wait_for_recording()  # at most one batch waits to be written
            if record_in_background:
                self._recording = self._recorder.submit(self._record, results)
            else:
                store.record_results(self.name, results)
        finally:
            store.close()
        counts = Counter(result.decision.state.value for result in results)
        log.info("delivered %d: %s", len(results), ", ".join(f"{k} {v}" for k, v in counts.items()))
        return len(results)

    def _deliver(
        self, jobs: list[DeliveryJob], extend_leases: Callable[[str, list[int], datetime], None]
    ) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        # Every job of the batch stays held until the batch is recorded, sent ones too:
        # a lapsed lease would let another worker send them again.
        batch = [job.recipient_id for job in jobs]
        lease_renewed = self._now()
        for routes, group in self._by_destination(jobs, results).items():
            session = self._idle_session(routes)
            pending = list(group)
            # The next notifications are written in another thread while this one waits
            # for the server's replies (SSL reads release the GIL).
            written = self._writer_thread.map(self._notification_or_error, group)
            try:
                for notification in written:
                    now = self._now()
                    if now - lease_renewed > self._lease / 2:
                        extend_leases(self.name, batch, now + self._lease)
                        lease_renewed = now
                    job = pending.pop(0)
                    if session is None:
                        try:
                            session = self._open(list(routes))
                        except TransportError as exc:
                            # Nobody to talk to: the same answer for the whole group.
                            for waiting in (job, *pending):
                                results.append(self._result(waiting, _temporary(str(exc))))
                            break
                    outcome, session = self._send(session, job, notification)
                    results.append(self._result(job, outcome))
            finally:
                if session is not None:
                    self._idle[routes] = (session, time.monotonic())
        return results

    def _idle_session(self, routes: tuple[Route, ...]) -> SmtpSession | None:
        """A connection kept from an earlier batch, if the server still answers on it."""
        kept = self._idle.pop(routes, None)
        if kept is None:
            return None
        session, _ = kept
        if session.alive():
            return session
        session.close()
        return None

    def _close_idle_sessions(self, older_than: float) -> None:
        cutoff = time.monotonic() - older_than
        for routes, (session, last_used) in list(self._idle.items()):
            if last_used <= cutoff:
                del self._idle[routes]
                session.close()

    def _by_destination(
        self, jobs: list[DeliveryJob], results: list[DeliveryResult]
    ) -> dict[tuple[Route, ...], list[DeliveryJob]]:
        groups: dict[tuple[Route, ...], list[DeliveryJob]] = defaultdict(list)
        for job in jobs:
            try:
                groups[tuple(self._router.routes(job.address))].append(job)
            except NoRoute as exc:
                results.append(
                    self._result(job, Outcome(kind=OutcomeKind.PERMANENT, detail=str(exc)))
                )
            except RouteUnknown as exc:
                results.append(self._result(job, _temporary(str(exc))))
        return groups

    def _open(self, routes: list[Route]) -> SmtpSession:
        failures = []
        for route in routes:
            session = SmtpSession(route, self._settings.smtp, self._tls)
            try:
                session.open()
                return session
            except TransportError as exc:
                failures.append(str(exc))
        raise TransportError("; ".join(failures))

    def _send(
        self, session: SmtpSession, job: DeliveryJob, notification: Notification | None
    ) -> tuple[Outcome, SmtpSession | None]:
        if notification is None:
            return _temporary("the notification could not be written"), session
        mail_from = self._settings.smtp.mail_from
        try:
            outcome = session.send(mail_from, job.address, notification.data)
            return outcome, session if session.is_open else None
        except TransportError as exc:
            return _temporary(str(exc)), None  # the next mail opens a new connection

    def _notification_or_error(self, job: DeliveryJob) -> Notification | None:
        try:
            return self._notification(job)
        except Exception as exc:  # a missing master key, a bug: retried, never a crash
            log.error("cannot write notification: %s", describe_exception(exc))
            return None

    def _notification(self, job: DeliveryJob) -> Notification:
        cipher = MessageCipher.unwrap(self._keyring, job.data_key, job.message_id)
        subject = (
            cipher.open(sealing.SUBJECT, job.sealed_subject).decode("utf-8")
            if job.show_subject
            else None
        )
        return self._writer.write(
            job, token=cipher.pickup_token(job.position), subject=subject, now=self._now()
        )

    def _result(self, job: DeliveryJob, outcome: Outcome) -> DeliveryResult:
        now = self._now()
        decision = self._policy.decide(
            outcome, attempts=job.attempts + 1, accepted_at=job.accepted_at, now=now
        )
        return DeliveryResult(job=job, decision=decision, attempted_at=now)


def _temporary(detail: str) -> Outcome:
    return Outcome(kind=OutcomeKind.TEMPORARY, detail=detail)


def _backoff(poll_seconds: float, failures: int) -> float:
    """Waits that grow while the database stays away, up to half a minute."""
    return min(poll_seconds * 2 ** min(failures, 10), 30.0)
