"""The reports owed to senders (domain/sender_reports.py): a queue of its own on the
delivery workers (mail_queue.py). A failure notice goes out with an empty envelope sender
(RFC 3464: no report about a report); a receipt from the service's address."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from soap_service import crypto
from soap_service.delivery.mail_queue import LEASE, MailOutcome, MailQueue, QueueParts, Written
from soap_service.delivery.report_mail import ReportMailWriter
from soap_service.domain import sealing
from soap_service.domain.ports import DeliveryStore
from soap_service.domain.sealing import MessageCipher
from soap_service.domain.sender_reports import ReportJob, ReportKind, ReportResult

# A receipt's file name and signed PDF, for a report of a registered message.
ReceiptFile = Callable[[ReportJob], tuple[str, bytes]]


class ReportSender(MailQueue[ReportJob]):
    name = "sender reports"

    def __init__(
        self, parts: QueueParts, *, keyring: crypto.Keyring, receipt_file: ReceiptFile | None
    ) -> None:
        super().__init__(parts)
        self._keyring = keyring
        self._receipt_file = receipt_file
        smtp = parts.smtp
        self._writer = ReportMailWriter(
            mail_from=smtp.mail_from, hostname=smtp.hostname, sender_name=parts.sender_name
        )

    def _claim(self, store: DeliveryStore, now: datetime) -> ReportJob | None:
        jobs = store.claim_due_reports(self._worker, now=now, lease_until=now + LEASE, limit=1)
        return jobs[0] if jobs else None

    def _attempts(self, job: ReportJob) -> tuple[int, datetime]:
        return job.attempts, job.created_at

    def _write(self, job: ReportJob) -> Written:
        cipher = MessageCipher.unwrap(self._keyring, job.data_key, job.message_id)
        subject = cipher.open(sealing.SUBJECT, job.sealed_subject).decode("utf-8")
        now = self._now()
        if job.kind is ReportKind.FAILURE:
            data = self._writer.failure(job, subject, now)
            return Written(to=job.report_to, envelope_from="", data=data)
        assert self._receipt_file is not None, "receipts need the receipt service"
        filename, pdf = self._receipt_file(job)
        data = self._writer.receipt(job, subject, filename, pdf, now)
        return Written(to=job.report_to, envelope_from=self._parts.smtp.mail_from, data=data)

    def _record(self, store: DeliveryStore, job: ReportJob, outcome: MailOutcome) -> None:
        result = ReportResult(
            report_id=job.report_id,
            state=outcome.state,
            next_attempt_at=outcome.next_attempt_at,
            detail=outcome.detail,
            attempted_at=outcome.attempted_at,
        )
        store.record_reports(self._worker, [result])
