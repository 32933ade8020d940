"""What a person's inbox lists: the messages addressed to a mailbox, newest first."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select

from soap_service.crypto import WrappedKey
from soap_service.domain.model import MessageType, RecipientState
from soap_service.domain.ports import InboxRecord
from soap_service.persistence.tables import accounts, messages, recipients
from soap_service.persistence.transactions import Transactions

# By the index on lower(address) (migration 0011). A mailbox is the casefolded address;
# for the ASCII of nearly every address, lower() in SQL is the same.
_INBOX = (
    select(
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
    .limit(bindparam("limit"))
)


class InboxQueries(Transactions):
    def inbox(self, mailbox: str, *, limit: int) -> list[InboxRecord]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(_INBOX, {"mailbox": mailbox, "limit": limit}).all()
        return [
            InboxRecord(
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
