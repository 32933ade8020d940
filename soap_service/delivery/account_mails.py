"""The mails about people's accounts (domain/person_accounts.py): a queue of its own on
the delivery workers (mail_queue.py), from the service's address. A code or link that
expired before its mail could go is not sent any more (the claim skips it); a day after
it was used or expired, its row is deleted."""

from __future__ import annotations

import logging
import threading
from contextlib import closing
from datetime import datetime, timedelta

from soap_service import crypto
from soap_service.delivery.account_mail import AccountMailWriter
from soap_service.delivery.mail_queue import LEASE, MailOutcome, MailQueue, QueueParts, Written
from soap_service.domain.account_mails import AccountMailJob, AccountMailResult
from soap_service.domain.person_accounts import open_mail_secret
from soap_service.domain.ports import DeliveryStore

log = logging.getLogger(__name__)

# A used or expired code or link is kept this long (to tell what happened), then deleted.
KEEP_SPENT = timedelta(days=1)
SWEEP_EVERY = timedelta(hours=1)


class AccountMailSender(MailQueue[AccountMailJob]):
    name = "account mails"

    def __init__(self, parts: QueueParts, *, keyring: crypto.Keyring, site_url: str) -> None:
        super().__init__(parts)
        self._keyring = keyring
        self._writer = AccountMailWriter(
            mail_from=parts.smtp.mail_from,
            hostname=parts.smtp.hostname,
            site_url=site_url,
            sender_name=parts.sender_name,
        )
        self._last_sweep: datetime | None = None

    def run_once(self, stop: threading.Event | None = None) -> int:
        """A round of the mails due; now and then, first forget the spent ones."""
        now = self._now()
        if self._last_sweep is None or now - self._last_sweep >= SWEEP_EVERY:
            self._last_sweep = now
            with closing(self._stores()) as store:
                forgotten = store.forget_account_mails(before=now - KEEP_SPENT)
            if forgotten:
                log.info("forgot %d spent account mail(s)", forgotten)
        return super().run_once(stop)

    def _claim(self, store: DeliveryStore, now: datetime) -> AccountMailJob | None:
        jobs = store.claim_due_account_mails(
            self._worker, now=now, lease_until=now + LEASE, limit=1
        )
        return jobs[0] if jobs else None

    def _attempts(self, job: AccountMailJob) -> tuple[int, datetime]:
        return job.attempts, job.created_at

    def _write(self, job: AccountMailJob) -> Written:
        data = self._writer.mail(job, open_mail_secret(self._keyring, job), self._now())
        return Written(to=job.address, envelope_from=self._parts.smtp.mail_from, data=data)

    def _record(self, store: DeliveryStore, job: AccountMailJob, outcome: MailOutcome) -> None:
        result = AccountMailResult(
            mail_id=job.mail_id,
            state=outcome.state,
            next_attempt_at=outcome.next_attempt_at,
            detail=outcome.detail,
            attempted_at=outcome.attempted_at,
        )
        store.record_account_mails(self._worker, [result])
