"""What a logbook reads besides the journal's listing: the listed messages'
sealed subjects, with the keys that open them."""

from __future__ import annotations

from sqlalchemy import select

from soap_service.crypto import WrappedKey
from soap_service.domain.ports import SealedSubject
from soap_service.persistence.tables import accounts, messages
from soap_service.persistence.transactions import Transactions


class LogbookQueries(Transactions):
    def sealed_subjects(
        self, account_ids: list[int], message_ids: list[str]
    ) -> dict[str, SealedSubject]:
        if not message_ids or not account_ids:
            return {}
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(
                select(
                    messages.c.id,
                    messages.c.sealed_subject,
                    messages.c.key_id,
                    messages.c.wrapped_key,
                    accounts.c.organisation,
                )
                .join(accounts, accounts.c.id == messages.c.account_id)
                .where(messages.c.account_id.in_(account_ids), messages.c.id.in_(message_ids))
            ).all()
        return {
            row.id: SealedSubject(
                sealed=bytes(row.sealed_subject),
                data_key=WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key)),
                sender=row.organisation,
            )
            for row in rows
        }
