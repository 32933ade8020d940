"""What the pickup pages read and change: a recipient found by its link, the message's
attachments, and the recipient's own state (opened, accepted, refused)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select, text

from soap_service.domain.model import Language, MessageType, RecipientState
from soap_service.domain.ports import PickupAttachment, PickupRecord
from soap_service.persistence.messages import SEALED_TEXT_COLUMNS, sealed_texts
from soap_service.persistence.state_changes import OPEN_STATES, change_states
from soap_service.persistence.tables import (
    UtcDateTime,
    accounts,
    attachments,
    messages,
    recipients,
)
from soap_service.persistence.transactions import Transactions

_FIND_PICKUP = (
    select(
        recipients.c.id.label("recipient_id"),
        recipients.c.position,
        recipients.c.address,
        recipients.c.state,
        messages.c.id.label("message_id"),
        messages.c.type,
        messages.c.language,
        messages.c.accepted_at,
        messages.c.expires_at,
        *SEALED_TEXT_COLUMNS,
        accounts.c.organisation,
    )
    .join(messages, messages.c.id == recipients.c.message_id)
    .join(accounts, accounts.c.id == messages.c.account_id)
    .where(recipients.c.token_hash == bindparam("token_hash"))
)
_ATTACHMENT_LIST = (
    select(
        attachments.c.position,
        attachments.c.sealed_filename,
        attachments.c.content_type,
        attachments.c.size,
    )
    .where(attachments.c.message_id == bindparam("message_id"))
    .order_by(attachments.c.position)
)
# The recipient's own decision: only from a state that is not final.
_MOVE_RECIPIENT = text(
    f"""
    UPDATE recipients SET state = :state, state_changed_at = :now,
        lease_owner = NULL, leased_until = NULL
    WHERE id = :id AND state IN {OPEN_STATES}
    RETURNING id, message_id
    """
).bindparams(bindparam("now", type_=UtcDateTime()))


class PickupQueries(Transactions):
    def find_pickup(self, token_hash: bytes) -> PickupRecord | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(_FIND_PICKUP, {"token_hash": token_hash}).first()
            if row is None:
                return None
            files = connection.execute(_ATTACHMENT_LIST, {"message_id": row.message_id}).all()
        return PickupRecord(
            recipient_id=row.recipient_id,
            message_id=row.message_id,
            position=row.position,
            address=row.address,
            state=RecipientState(row.state),
            type=MessageType(row.type),
            language=Language(row.language),
            organisation=row.organisation,
            accepted_at=row.accepted_at,
            expires_at=row.expires_at,
            texts=sealed_texts(row),
            content_deleted=row.content_deleted_at is not None,
            attachments=tuple(
                PickupAttachment(
                    position=file.position,
                    sealed_filename=bytes(file.sealed_filename),
                    content_type=file.content_type,
                    size=file.size,
                )
                for file in files
            ),
        )

    def attachment_content(self, message_id: str, position: int) -> bytes | None:
        with self._transaction(read_only=True) as connection:
            content = connection.execute(
                select(attachments.c.sealed_content).where(
                    attachments.c.message_id == message_id, attachments.c.position == position
                )
            ).scalar()
        return bytes(content) if content is not None else None

    def mark_opened(self, recipient_id: int, now: datetime) -> bool:
        return self.decide(recipient_id, RecipientState.OPENED, "opened on the pickup page", now)

    def decide(self, recipient_id: int, state: RecipientState, detail: str, now: datetime) -> bool:
        with self._transaction() as connection:
            moved = change_states(
                connection,
                _MOVE_RECIPIENT,
                {"id": recipient_id, "state": state.value, "now": now},
                state,
                detail,
                now,
            )
        return bool(moved)
