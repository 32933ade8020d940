"""Messages as their sender sees them: stored once per reference, their status, withdrawal."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.sql.elements import TextClause

from soap_service.crypto import WrappedKey
from soap_service.domain.model import (
    Language,
    MessageStatus,
    MessageType,
    RecipientState,
    RecipientStatus,
)
from soap_service.domain.ports import NewMessage, ReferenceRecord, SealedTexts
from soap_service.persistence.dialects import POSTGRESQL, row_lock
from soap_service.persistence.message_insert import (
    postgresql_insert_parameters,
    postgresql_insert_statement,
    run_sqlite_insert,
    sqlite_insert_steps,
)
from soap_service.persistence.state_changes import OPEN_STATES, change_states
from soap_service.persistence.tables import UtcDateTime, messages, recipients
from soap_service.persistence.transactions import Transactions

_FIND_REFERENCE = select(messages.c.id, messages.c.key_id, messages.c.fingerprint).where(
    messages.c.account_id == bindparam("account_id"),
    messages.c.reference == bindparam("reference"),
)

FIND_REFERENCES = select(
    messages.c.id, messages.c.reference, messages.c.key_id, messages.c.fingerprint
).where(
    messages.c.account_id == bindparam("account_id"),
    messages.c.reference.in_(bindparam("references", expanding=True)),
)
# On PostgreSQL, one lookup by (account, reference) per reference, each planned for the
# table as it is now (see find_references). As `reference IN (...)` beside the account,
# the planner weighed 50 probes of the unique index against the account's index with a
# filter, and with statistics from when the account had few messages it took the latter:
# every batch read all the account's messages (a payroll run slowed as it went: a third
# of the database's CPU at 20,000 messages).
FIND_REFERENCES_POSTGRESQL = text(
    """
    SELECT found.id, found.reference, found.key_id, found.fingerprint
    FROM unnest(CAST(:references AS text[])) AS wanted(reference)
    CROSS JOIN LATERAL (
        SELECT id, reference, key_id, fingerprint FROM messages
        WHERE account_id = :account_id AND reference = wanted.reference
        OFFSET 0
    ) AS found
    """
)


class MessageQueries(Transactions):
    def insert_message(self, message: NewMessage) -> ReferenceRecord | None:
        """Store the message, its attachments, recipients (queued) and journal events in one
        transaction; or, if the account already has a message with this reference, store
        nothing and return that message's reference record.

        The unique (account, reference) index decides between concurrent senders: the
        loser's INSERT waits for the winner's commit, then does nothing.
        """
        dialect = self._engine.dialect
        if dialect.name == POSTGRESQL:
            parameters = postgresql_insert_parameters(message, dialect)
            # One statement is one transaction: no BEGIN and COMMIT round trips.
            with self._driver_transaction(single_statement=True) as cursor:
                cursor.execute(
                    postgresql_insert_statement(len(message.attachments)), parameters, prepare=True
                )
                inserted = cursor.fetchone() is not None
        else:
            steps = sqlite_insert_steps(message, dialect)
            with self._driver_transaction() as cursor:
                inserted = run_sqlite_insert(cursor, steps)
        if inserted:
            return None
        with self._transaction(read_only=True, fresh_plans=True) as connection:
            row = connection.execute(
                _FIND_REFERENCE,
                {"account_id": message.account_id, "reference": message.reference},
            ).one()
        return ReferenceRecord(message_id=row.id, key_id=row.key_id, fingerprint=row.fingerprint)

    def find_references(
        self, account_id: int, references: Sequence[str]
    ) -> dict[str, ReferenceRecord]:
        if not references:
            return {}
        wanted = sorted(set(references))
        with self._transaction(read_only=True, fresh_plans=True) as connection:
            postgresql = connection.dialect.name == POSTGRESQL
            query = FIND_REFERENCES_POSTGRESQL if postgresql else FIND_REFERENCES
            rows = connection.execute(query, {"account_id": account_id, "references": wanted}).all()
        return {
            row.reference: ReferenceRecord(
                message_id=row.id, key_id=row.key_id, fingerprint=bytes(row.fingerprint)
            )
            for row in rows
        }

    def insert_messages(self, messages: Sequence[NewMessage]) -> list[ReferenceRecord | None]:
        """`insert_message` for each, in one transaction (SendMessages).

        The rows are inserted in reference order, whatever the batch's order: two batches
        of one account that share references then wait for each other's unique-index
        entries in the same order, and cannot deadlock.
        """
        if not messages:
            return []
        dialect = self._engine.dialect
        order = sorted(range(len(messages)), key=lambda n: messages[n].reference)
        found: dict[int, ReferenceRecord | None] = {}
        with self._driver_transaction() as cursor:
            if dialect.name == POSTGRESQL:
                inserted = _pipelined_inserts(cursor, [messages[n] for n in order], dialect)
            else:
                inserted = [
                    run_sqlite_insert(cursor, sqlite_insert_steps(messages[n], dialect))
                    for n in order
                ]
            for n, stored in zip(order, inserted, strict=True):
                # The same transaction sees a reference stored earlier in the batch.
                found[n] = None if stored else _reference_on(cursor, dialect.name, messages[n])
        return [found[n] for n in range(len(messages))]

    def message_status(
        self, account_id: int, *, message_id: str | None = None, reference: str | None = None
    ) -> MessageStatus | None:
        query = select(*STATUS_COLUMNS).where(messages.c.account_id == account_id)
        if message_id is not None:
            query = query.where(messages.c.id == message_id)
        if reference is not None:
            query = query.where(messages.c.reference == reference)
        with self._transaction(read_only=True, fresh_plans=reference is not None) as connection:
            message = connection.execute(query).first()
            if message is None:
                return None
            rows = connection.execute(
                select(recipients)
                .where(recipients.c.message_id == message.id)
                .order_by(recipients.c.position)
            ).all()
        return message_status_of(message, tuple(recipient_status(row) for row in rows))

    def cancel_message(self, message_id: str, now: datetime) -> int:
        with self._transaction() as connection:
            return change_states(
                connection,
                _cancel(connection.dialect.name),
                {"message_id": message_id, "now": now},
                RecipientState.CANCELLED,
                "withdrawn by the sender",
                now,
            )


def _pipelined_inserts(cursor: Any, messages: Sequence[NewMessage], dialect: Any) -> list[bool]:
    """Each message's insert, sent in one pipeline (one round trip for the batch instead of
    one a message); whether each stored its rows."""
    connection = cursor.connection
    cursors = []
    with connection.pipeline():
        for message in messages:
            own = connection.cursor()
            own.execute(
                postgresql_insert_statement(len(message.attachments)),
                postgresql_insert_parameters(message, dialect),
                prepare=True,
            )
            cursors.append(own)
    stored = []
    for own in cursors:
        stored.append(own.fetchone() is not None)
        own.close()
    return stored


def _reference_on(cursor: Any, dialect: str, message: NewMessage) -> ReferenceRecord:
    """The account's message with this message's reference, read on the driver's cursor."""
    mark = "%s" if dialect == POSTGRESQL else "?"
    cursor.execute(
        "SELECT id, key_id, fingerprint FROM messages "
        f"WHERE account_id = {mark} AND reference = {mark}",
        (message.account_id, message.reference),
    )
    message_id, key_id, fingerprint = cursor.fetchone()
    return ReferenceRecord(message_id=message_id, key_id=key_id, fingerprint=bytes(fingerprint))


@functools.cache
def _cancel(dialect: str) -> TextClause:
    # Locked in id order, as the worker's recording locks them: no deadlock. PostgreSQL
    # checks the state again on a row it waited for (a worker recording it).
    return text(
        f"""
        UPDATE recipients SET state = 'cancelled', state_changed_at = :now,
            lease_owner = NULL, leased_until = NULL
        WHERE state IN {OPEN_STATES} AND id IN (
            SELECT id FROM recipients
            WHERE message_id = :message_id AND state IN {OPEN_STATES}
            ORDER BY id {row_lock(dialect, "FOR UPDATE")}
        )
        RETURNING id, message_id
        """
    ).bindparams(bindparam("now", type_=UtcDateTime()))


# What message_status_of() reads of a messages row.
STATUS_COLUMNS = (
    messages.c.id,
    messages.c.reference,
    messages.c.type,
    messages.c.language,
    messages.c.accepted_at,
    messages.c.expires_at,
)


def message_status_of(row: Any, recipients: tuple[RecipientStatus, ...]) -> MessageStatus:
    """A message's status from its row (STATUS_COLUMNS) and its recipients'."""
    return MessageStatus(
        message_id=row.id,
        reference=row.reference,
        type=MessageType(row.type),
        language=Language(row.language),
        accepted_at=row.accepted_at,
        expires_at=row.expires_at,
        recipients=recipients,
    )


def recipient_status(row: Any) -> RecipientStatus:
    return RecipientStatus(
        address=row.address,
        state=RecipientState(row.state),
        attempts=row.attempts,
        state_changed_at=row.state_changed_at,
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
    )


# What sealed_texts() reads of a messages row.
SEALED_TEXT_COLUMNS = (
    messages.c.key_id,
    messages.c.wrapped_key,
    messages.c.sealed_subject,
    messages.c.sealed_text_body,
    messages.c.sealed_html_body,
    messages.c.content_deleted_at,
)


def sealed_texts(row: Any) -> SealedTexts:
    """A messages row's key and sealed texts (selected with SEALED_TEXT_COLUMNS)."""
    return SealedTexts(
        data_key=WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key)),
        subject=bytes(row.sealed_subject),
        text_body=bytes(row.sealed_text_body),
        html_body=bytes(row.sealed_html_body) if row.sealed_html_body is not None else None,
    )
