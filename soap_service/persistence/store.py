"""Every query of the service. Driver errors are translated here, at the boundary.

One `SqlStore` wraps one session (one per request); each public method is one
transaction and commits before it returns.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from soap_service.crypto import WrappedKey
from soap_service.domain.model import (
    Account,
    Language,
    MessageStatus,
    MessageType,
    RecipientState,
    RecipientStatus,
)
from soap_service.domain.ports import AccountRecord, NewAccount, NewMessage, ReferenceRecord
from soap_service.errors import (
    AccountExists,
    InternalError,
    ReferenceTaken,
    SoapServiceError,
    Unavailable,
)
from soap_service.persistence.tables import (
    AccountRow,
    AttachmentRow,
    EventRow,
    MessageRow,
    RecipientRow,
    UsedNonceRow,
)

# Forget old nonces on about one call in this many: cheap, and the table stays small.
NONCE_PRUNE_ONE_IN = 50


class SqlStore:
    def __init__(self, session: Session) -> None:
        self._session = session

    @contextmanager
    def _transaction(self, *, read_only: bool = False) -> Iterator[Session]:
        try:
            with self._session.begin():
                if read_only:
                    # SQLite: a reader need not take the write lock (see database.py).
                    self._session.connection(execution_options={"sqlite_begin": "DEFERRED"})
                yield self._session
        except (SoapServiceError, IntegrityError):
            raise
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            raise Unavailable("the database is unavailable; retry later") from exc
        except SQLAlchemyError as exc:
            raise InternalError("a storage error occurred") from exc

    # Accounts and authentication.

    def find_account(self, username: str) -> AccountRecord | None:
        with self._transaction(read_only=True) as session:
            row = session.scalars(select(AccountRow).where(AccountRow.username == username)).first()
            if row is None:
                return None
            return AccountRecord(
                account=Account(id=row.id, username=row.username, organisation=row.organisation),
                password_hash=row.password_hash,
                digest_secret=(
                    WrappedKey(key_id=row.digest_key_id, wrapped=row.digest_secret)
                    if row.digest_secret is not None and row.digest_key_id is not None
                    else None
                ),
                disabled=row.disabled,
            )

    def add_account(self, account: NewAccount) -> Account:
        row = AccountRow(
            username=account.username,
            organisation=account.organisation,
            password_hash=account.password_hash,
            digest_key_id=account.digest_secret.key_id if account.digest_secret else None,
            digest_secret=account.digest_secret.wrapped if account.digest_secret else None,
            disabled=False,
            created_at=account.created_at,
        )
        try:
            with self._transaction() as session:
                session.add(row)
        except IntegrityError as exc:
            raise AccountExists(f"an account named {account.username!r} exists") from exc
        return Account(id=row.id, username=row.username, organisation=row.organisation)

    def remember_nonce(
        self, account_id: int, nonce_digest: bytes, created_at: datetime, forget_before: datetime
    ) -> bool:
        with self._transaction() as session:
            if random.randrange(NONCE_PRUNE_ONE_IN) == 0:
                session.execute(delete(UsedNonceRow).where(UsedNonceRow.created_at < forget_before))
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            result = session.execute(
                insert(UsedNonceRow)
                .values(account_id=account_id, nonce_digest=nonce_digest, created_at=created_at)
                .on_conflict_do_nothing()
                .returning(UsedNonceRow.account_id)
            )
            return result.first() is not None  # nothing returned: the row existed

    # Messages.

    def find_reference(self, account_id: int, reference: str) -> ReferenceRecord | None:
        with self._transaction(read_only=True) as session:
            row = session.execute(
                select(MessageRow.id, MessageRow.key_id, MessageRow.fingerprint).where(
                    MessageRow.account_id == account_id, MessageRow.reference == reference
                )
            ).first()
        if row is None:
            return None
        return ReferenceRecord(message_id=row.id, key_id=row.key_id, fingerprint=row.fingerprint)

    def insert_message(self, message: NewMessage) -> None:
        try:
            with self._transaction() as session:
                session.add(
                    MessageRow(
                        id=message.message_id,
                        account_id=message.account_id,
                        reference=message.reference,
                        type=message.type.value,
                        language=message.language.value,
                        accepted_at=message.accepted_at,
                        expires_at=message.expires_at,
                        key_id=message.data_key.key_id,
                        wrapped_key=message.data_key.wrapped,
                        fingerprint=message.fingerprint,
                        sealed_subject=message.sealed_subject,
                        sealed_text_body=message.sealed_text_body,
                        sealed_html_body=message.sealed_html_body,
                        content_bytes=message.content_bytes,
                    )
                )
                # The message row first: its unique reference decides who wins a race.
                session.flush()
                session.add_all(
                    AttachmentRow(
                        message_id=message.message_id,
                        position=attachment.position,
                        sealed_filename=attachment.sealed_filename,
                        content_type=attachment.content_type,
                        size=attachment.size,
                        sealed_content=attachment.sealed_content,
                    )
                    for attachment in message.attachments
                )
                recipients = [
                    RecipientRow(
                        message_id=message.message_id,
                        position=position,
                        address=address,
                        state=RecipientState.QUEUED.value,
                        attempts=0,
                        state_changed_at=message.accepted_at,
                    )
                    for position, address in enumerate(message.recipients, start=1)
                ]
                session.add_all(recipients)
                session.flush()
                session.add(
                    EventRow(
                        message_id=message.message_id,
                        at=message.accepted_at,
                        kind="accepted",
                        detail=(
                            f"{len(message.recipients)} recipient(s), "
                            f"{len(message.attachments)} attachment(s), "
                            f"{message.content_bytes} bytes"
                        ),
                    )
                )
                session.add_all(
                    EventRow(
                        message_id=message.message_id,
                        recipient_id=recipient.id,
                        at=message.accepted_at,
                        kind=RecipientState.QUEUED.value,
                        detail="waiting for delivery",
                    )
                    for recipient in recipients
                )
        except IntegrityError as exc:
            raise ReferenceTaken(message.reference) from exc

    def message_status(
        self, account_id: int, *, message_id: str | None = None, reference: str | None = None
    ) -> MessageStatus | None:
        query = select(
            MessageRow.id,
            MessageRow.reference,
            MessageRow.type,
            MessageRow.language,
            MessageRow.accepted_at,
            MessageRow.expires_at,
        ).where(MessageRow.account_id == account_id)
        if message_id is not None:
            query = query.where(MessageRow.id == message_id)
        if reference is not None:
            query = query.where(MessageRow.reference == reference)
        with self._transaction(read_only=True) as session:
            message = session.execute(query).first()
            if message is None:
                return None
            recipients = session.scalars(
                select(RecipientRow)
                .where(RecipientRow.message_id == message.id)
                .order_by(RecipientRow.position)
            ).all()
            return MessageStatus(
                message_id=message.id,
                reference=message.reference,
                type=MessageType(message.type),
                language=Language(message.language),
                accepted_at=message.accepted_at,
                expires_at=message.expires_at,
                recipients=tuple(
                    RecipientStatus(
                        address=row.address,
                        state=RecipientState(row.state),
                        attempts=row.attempts,
                        state_changed_at=row.state_changed_at,
                        last_attempt_at=row.last_attempt_at,
                        next_attempt_at=row.next_attempt_at,
                        last_error=row.last_error,
                    )
                    for row in recipients
                ),
            )

    def close(self) -> None:
        self._session.close()
