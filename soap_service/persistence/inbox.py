"""What a person's inbox lists: the messages addressed to a mailbox, newest first."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, tuple_

from soap_service.crypto import WrappedKey
from soap_service.domain.model import MessageType, RecipientState
from soap_service.domain.ports import InboxFilter, InboxPosition, InboxRecord
from soap_service.persistence.tables import UtcDateTime, accounts, messages, recipients
from soap_service.persistence.transactions import Transactions

# By the index on lower(address) (migration 0011). A mailbox is the casefolded address;
# for the ASCII of nearly every address, lower() in SQL is the same.
_INBOX = (
    select(
        recipients.c.id.label("recipient_id"),
        recipients.c.position,
        recipients.c.state,
        messages.c.id.label("message_id"),
        messages.c.type,
        messages.c.accepted_at,
        messages.c.key_id,
        messages.c.wrapped_key,
        messages.c.sealed_subject,
        accounts.c.organisation,
    )
    .join(messages, messages.c.id == recipients.c.message_id)
    .join(accounts, accounts.c.id == messages.c.account_id)
    .where(func.lower(recipients.c.address) == bindparam("mailbox"))
    .order_by(messages.c.accepted_at.desc(), recipients.c.id.desc())
)


class InboxQueries(Transactions):
    def inbox(
        self,
        mailbox: str,
        *,
        where: InboxFilter,
        before: InboxPosition | None,
        limit: int,
    ) -> list[InboxRecord]:
        query = _INBOX.limit(limit)
        if where.states is not None:
            query = query.where(recipients.c.state.in_(sorted(s.value for s in where.states)))
        if where.type is not None:
            query = query.where(messages.c.type == where.type.value)
        if where.accepted_from is not None:
            query = query.where(messages.c.accepted_at >= where.accepted_from)
        if where.accepted_before is not None:
            query = query.where(messages.c.accepted_at < where.accepted_before)
        if before is not None:
            query = query.where(
                tuple_(messages.c.accepted_at, recipients.c.id)
                < tuple_(
                    bindparam("before_at", before.accepted_at, type_=UtcDateTime()),
                    bindparam("before_id", before.recipient_id),
                )
            )
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(query, {"mailbox": mailbox}).all()
        return [
            InboxRecord(
                recipient_id=row.recipient_id,
                message_id=row.message_id,
                position=row.position,
                state=RecipientState(row.state),
                type=MessageType(row.type),
                organisation=row.organisation,
                accepted_at=row.accepted_at,
                data_key=WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key)),
                sealed_subject=bytes(row.sealed_subject),
            )
            for row in rows
        ]
