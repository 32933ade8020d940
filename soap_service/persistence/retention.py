"""Deleting what a message said once it is settled and its retention period is over."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select, text, update

from soap_service.domain.model import MessageType
from soap_service.domain.ports import SettledMessage
from soap_service.persistence.state_changes import OPEN_STATES
from soap_service.persistence.tables import UtcDateTime, attachments, events, messages
from soap_service.persistence.transactions import Transactions

# Settled: no recipient waits any more (then: its last change, or the expiry if that came
# first), or it expired. Content deleted already is not looked at again.
_SETTLED = (
    text(
        f"""
        SELECT id, account_id, reference, type, settled_at FROM (
            SELECT m.id, m.account_id, m.reference, m.type, m.accepted_at,
                CASE WHEN sum(CASE WHEN r.state IN {OPEN_STATES} THEN 1 ELSE 0 END) = 0
                          AND max(r.state_changed_at) < m.expires_at
                     THEN max(r.state_changed_at) ELSE m.expires_at END AS settled_at,
                sum(CASE WHEN r.state IN {OPEN_STATES} THEN 1 ELSE 0 END) AS waiting,
                m.expires_at
            FROM messages m JOIN recipients r ON r.message_id = m.id
            WHERE m.content_deleted_at IS NULL
            GROUP BY m.id, m.account_id, m.reference, m.type, m.accepted_at, m.expires_at
        ) AS settled
        WHERE settled_at < :moment AND (waiting = 0 OR expires_at <= :now)
        ORDER BY accepted_at, id
        LIMIT :limit
        """
    )
    .bindparams(bindparam("moment", type_=UtcDateTime()), bindparam("now", type_=UtcDateTime()))
    .columns(settled_at=UtcDateTime())
)


class RetentionQueries(Transactions):
    def settled_before(
        self, moment: datetime, *, now: datetime, limit: int
    ) -> list[SettledMessage]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(
                _SETTLED, {"moment": moment, "now": now, "limit": limit}
            ).all()
        return [
            SettledMessage(
                message_id=row.id,
                account_id=row.account_id,
                reference=row.reference,
                type=MessageType(row.type),
                settled_at=row.settled_at,
            )
            for row in rows
        ]

    def delete_content(self, message_id: str, now: datetime) -> bool:
        with self._transaction() as connection:
            marked = connection.execute(
                update(messages)
                .where(messages.c.id == message_id, messages.c.content_deleted_at.is_(None))
                .values(sealed_text_body=b"", sealed_html_body=None, content_deleted_at=now)
            ).rowcount
            if not marked:
                return False
            files = connection.execute(
                select(attachments.c.id).where(attachments.c.message_id == message_id)
            ).all()
            connection.execute(delete(attachments).where(attachments.c.message_id == message_id))
            connection.execute(
                insert(events).values(
                    message_id=message_id,
                    recipient_id=None,
                    at=now,
                    kind="content-deleted",
                    detail=f"the bodies and {len(files)} attachment(s) were deleted at the end "
                    "of the retention period",
                )
            )
        return True
