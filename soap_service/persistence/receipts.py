"""Receipts of registered messages: what they state (sealed) and the signed PDFs kept."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from soap_service.domain.model import Language
from soap_service.domain.ports import ReceiptContent, SealedFile
from soap_service.persistence.messages import sealed_texts
from soap_service.persistence.tables import accounts, attachments, messages, receipts
from soap_service.persistence.transactions import Transactions


class ReceiptQueries(Transactions):
    def receipt_content(self, message_id: str) -> ReceiptContent:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(messages, accounts.c.organisation, accounts.c.username)
                .join(accounts, accounts.c.id == messages.c.account_id)
                .where(messages.c.id == message_id)
            ).one()
            files = connection.execute(
                select(attachments)
                .where(attachments.c.message_id == message_id)
                .order_by(attachments.c.position)
            ).all()
        return ReceiptContent(
            message_id=row.id,
            reference=row.reference,
            organisation=row.organisation,
            username=row.username,
            accepted_at=row.accepted_at,
            expires_at=row.expires_at,
            texts=sealed_texts(row),
            language=Language(row.language),
            content_deleted=row.content_deleted_at is not None,
            attachments=tuple(
                SealedFile(
                    position=file.position,
                    sealed_filename=bytes(file.sealed_filename),
                    size=file.size,
                    sealed_content=bytes(file.sealed_content),
                )
                for file in files
            ),
        )

    def find_receipt(
        self, message_id: str, position: int, kind: str
    ) -> tuple[datetime, bytes] | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(receipts.c.issued_at, receipts.c.pdf).where(
                    receipts.c.message_id == message_id,
                    receipts.c.position == position,
                    receipts.c.kind == kind,
                )
            ).first()
        return (row.issued_at, bytes(row.pdf)) if row is not None else None

    def add_receipt(
        self, message_id: str, position: int, kind: str, *, issued_at: datetime, pdf: bytes
    ) -> tuple[datetime, bytes]:
        try:
            with self._transaction() as connection:
                connection.execute(
                    insert(receipts).values(
                        message_id=message_id,
                        position=position,
                        kind=kind,
                        issued_at=issued_at,
                        pdf=pdf,
                    )
                )
        except IntegrityError:
            pass  # kept by another request meanwhile: that one counts
        kept = self.find_receipt(message_id, position, kind)
        assert kept is not None
        return kept
