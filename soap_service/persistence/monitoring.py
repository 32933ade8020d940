"""What an operator's monitoring reads: the delivery queue (metrics.py, `soap-service
status`). Two counts on the recipients' state index, when a scrape asks."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, bindparam, text

from soap_service.domain.delivery import QueueSummary
from soap_service.persistence.delivery import DUE_CONDITION
from soap_service.persistence.state_changes import WAITING_STATES
from soap_service.persistence.tables import UtcDateTime
from soap_service.persistence.transactions import Transactions

_WAITING = text(f"SELECT count(*) FROM recipients r WHERE r.state IN {WAITING_STATES}")
_DUE = (
    text(
        f"""
        SELECT count(*) AS due, min(coalesce(r.next_attempt_at, m.accepted_at)) AS since
        FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE {DUE_CONDITION}
        """
    )
    .bindparams(bindparam("now", type_=UtcDateTime()))
    .columns(due=Integer(), since=UtcDateTime())
)


class MonitoringQueries(Transactions):
    def delivery_queue(self, now: datetime) -> QueueSummary:
        with self._transaction(read_only=True) as connection:
            waiting = connection.execute(_WAITING).scalar_one()
            due = connection.execute(_DUE, {"now": now}).one()
        return QueueSummary(waiting=waiting, due=due.due, oldest_due_since=due.since)
