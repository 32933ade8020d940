"""Reports owed to senders by mail (failure notices, receipts): claimed with a lease like
recipients (delivery.py), and their outcomes. Triggers on messages and on the journal queue
them (migration 0006)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text, update

from soap_service.crypto import WrappedKey
from soap_service.domain.model import Language, MessageType
from soap_service.domain.sender_reports import ReportJob, ReportKind, ReportResult
from soap_service.persistence.queues import LeaseClaim
from soap_service.persistence.state_changes import storable
from soap_service.persistence.tables import UtcDateTime, sender_reports
from soap_service.persistence.transactions import Transactions


class SenderReportQueries(Transactions):
    def claim_due_reports(
        self, worker: str, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[ReportJob]:
        parameters = {"worker": worker, "now": now, "until": lease_until, "limit": limit}
        with self._transaction() as connection:
            ids = _CLAIM(connection, **parameters)
            rows = connection.execute(_REPORT_DETAILS, {"ids": list(ids)}).all() if ids else []
        return [_job(row) for row in rows]

    def record_reports(self, worker: str, results: list[ReportResult]) -> None:
        """Each attempt's outcome, for reports this worker still holds."""
        if not results:
            return
        with self._transaction() as connection:
            for result in results:
                connection.execute(
                    update(sender_reports)
                    .where(
                        sender_reports.c.id == result.report_id,
                        sender_reports.c.lease_owner == worker,
                        sender_reports.c.state == "queued",
                    )
                    .values(
                        state=result.state,
                        attempts=sender_reports.c.attempts + 1,
                        next_attempt_at=result.next_attempt_at or result.attempted_at,
                        sent_at=result.attempted_at if result.state == "sent" else None,
                        last_error=None if result.state == "sent" else storable(result.detail),
                        lease_owner=None,
                        lease_until=None,
                    )
                )


def _job(row: Any) -> ReportJob:
    return ReportJob(
        report_id=row.id,
        kind=ReportKind(row.kind),
        attempts=row.attempts,
        created_at=row.created_at,
        report_to=row.report_to,
        account_id=row.account_id,
        organisation=row.organisation,
        message_id=row.message_id,
        reference=row.reference,
        type=MessageType(row.type),
        language=Language(row.language),
        accepted_at=row.accepted_at,
        sealed_subject=bytes(row.sealed_subject),
        data_key=WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key)),
        recipient=row.address,
        recipient_changed_at=row.state_changed_at,
        recipient_error=row.last_error,
    )


_CLAIM = LeaseClaim("sender_reports")
_REPORT_DETAILS = (
    text(
        """
        SELECT s.id, s.kind, s.attempts, s.created_at, m.report_to, m.account_id,
               a.organisation, m.id AS message_id, m.reference, m.type, m.language,
               m.accepted_at, m.sealed_subject, m.key_id, m.wrapped_key,
               r.address, r.state_changed_at, r.last_error
        FROM sender_reports s JOIN messages m ON m.id = s.message_id
        JOIN accounts a ON a.id = m.account_id
        LEFT JOIN recipients r ON r.message_id = s.message_id AND r.position = s.position
        WHERE s.id IN :ids ORDER BY s.id
        """
    )
    .bindparams(bindparam("ids", expanding=True))
    .columns(created_at=UtcDateTime(), accepted_at=UtcDateTime(), state_changed_at=UtcDateTime())
)
