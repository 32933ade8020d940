"""Sending the reports owed to senders (domain/sender_reports.py), in a thread of the
delivery worker of its own, so that a sender's unreachable mail server never holds up
notifications. One report at a time: claimed with a lease longer than sending it can take,
written, sent to the sender's mail server like a notification (verified STARTTLS, the
relay or the MX), and its outcome recorded at once, with the delivery retry policy. A
failure notice goes out with an empty envelope sender (RFC 3464: no report about a
report); a receipt from the service's address."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta

from soap_service import crypto
from soap_service.delivery.report_mail import ReportMailWriter
from soap_service.delivery.routing import NoRoute, Router, RouteUnknown
from soap_service.delivery.smtp import SmtpSession, TlsContexts, TransportError
from soap_service.domain import sealing
from soap_service.domain.delivery import Outcome, OutcomeKind, RetryPolicy
from soap_service.domain.ports import DeliveryStore
from soap_service.domain.sealing import MessageCipher
from soap_service.domain.sender_reports import ReportJob, ReportKind, ReportResult
from soap_service.logs import describe_exception
from soap_service.settings import SmtpSettings

log = logging.getLogger(__name__)

# Reports sent in one round before the thread looks at its stop event again.
REPORT_BATCH = 20
# A claimed report's lease: longer than sending one can take (every server of its
# destination, each with its timeout), so that no other worker sends it meanwhile.
REPORT_LEASE = timedelta(minutes=10)

# A receipt's file name and signed PDF, for a report of a registered message.
ReceiptFile = Callable[[ReportJob], tuple[str, bytes]]


class ReportSender:
    def __init__(
        self,
        *,
        stores: Callable[[], DeliveryStore],
        keyring: crypto.Keyring,
        smtp: SmtpSettings,
        router: Router,
        tls: TlsContexts,
        policy: RetryPolicy,
        poll_seconds: float,
        worker: str,
        receipt_file: ReceiptFile | None,
        now: Callable[[], datetime],
    ) -> None:
        self._stores = stores
        self._keyring = keyring
        self._smtp = smtp
        self._router = router
        self._tls = tls
        self._policy = policy
        self._poll_seconds = poll_seconds
        self._worker = worker
        self._receipt_file = receipt_file
        self._now = now
        self._writer = ReportMailWriter(mail_from=smtp.mail_from, hostname=smtp.hostname)

    def run(self, stop: threading.Event) -> None:
        """Send reports as they fall due, until `stop` is set."""
        failures = 0
        while not stop.is_set():
            try:
                tried = self.run_once(stop)
            except Exception as exc:  # the database away, a bug: wait and try again
                failures += 1
                if failures == 1:
                    log.warning("sender reports paused: %s", describe_exception(exc))
                stop.wait(min(self._poll_seconds * (1 << min(failures, 6)), 30.0))
                continue
            failures = 0
            if not tried:
                stop.wait(self._poll_seconds)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Send the reports that are due, one by one (a round); how many were tried."""
        tried = 0
        while tried < REPORT_BATCH and not (stop is not None and stop.is_set()):
            with closing(self._stores()) as store:
                now = self._now()
                jobs = store.claim_due_reports(
                    self._worker, now=now, lease_until=now + REPORT_LEASE, limit=1
                )
            if not jobs:
                break
            result = self._send(jobs[0])
            with closing(self._stores()) as store:
                store.record_reports(self._worker, [result])
            tried += 1
            log.info("sender report %s: %s", jobs[0].kind.value, result.state)
        return tried

    def _send(self, job: ReportJob) -> ReportResult:
        try:
            data = self._mail(job)
        except Exception as exc:  # a receipt that cannot be made now, a missing key
            log.error("cannot write a sender report: %s", describe_exception(exc))
            return self._result(job, Outcome(kind=OutcomeKind.TEMPORARY, detail="not written"))
        envelope_from = "" if job.kind is ReportKind.FAILURE else self._smtp.mail_from
        return self._result(job, self._deliver(job.report_to, envelope_from, data))

    def _mail(self, job: ReportJob) -> bytes:
        cipher = MessageCipher.unwrap(self._keyring, job.data_key, job.message_id)
        subject = cipher.open(sealing.SUBJECT, job.sealed_subject).decode("utf-8")
        now = self._now()
        if job.kind is ReportKind.FAILURE:
            return self._writer.failure(job, subject, now)
        assert self._receipt_file is not None, "receipts need the receipt service"
        filename, pdf = self._receipt_file(job)
        return self._writer.receipt(job, subject, filename, pdf, now)

    def _deliver(self, address: str, envelope_from: str, data: bytes) -> Outcome:
        try:
            routes = self._router.routes(address)
        except NoRoute as exc:
            return Outcome(kind=OutcomeKind.PERMANENT, detail=str(exc))
        except RouteUnknown as exc:
            return Outcome(kind=OutcomeKind.TEMPORARY, detail=str(exc))
        failures = []
        for route in routes:
            session = SmtpSession(route, self._smtp, self._tls)
            try:
                session.open()
                return session.send(envelope_from, address, data)
            except TransportError as exc:
                failures.append(str(exc))
            finally:
                session.close()
        return Outcome(kind=OutcomeKind.TEMPORARY, detail="; ".join(failures))

    def _result(self, job: ReportJob, outcome: Outcome) -> ReportResult:
        now = self._now()
        decision = self._policy.decide(
            outcome, attempts=job.attempts + 1, since=job.created_at, now=now
        )
        state = {"sent": "sent", "deferred": "queued"}.get(decision.state.value, "failed")
        if state == "failed":
            log.warning("a sender report was given up: %s", decision.detail)
        return ReportResult(
            report_id=job.report_id,
            state=state,
            next_attempt_at=decision.next_attempt_at,
            detail=decision.detail,
            attempted_at=now,
        )
