"""The delivery engine's queries: claims with leases, their renewal, outcomes, expiry.

A claim is one atomic step: on PostgreSQL one statement that skips the rows other workers
hold (FOR UPDATE SKIP LOCKED); on SQLite an UPDATE inside the one write transaction SQLite
allows, then a read of the claimed jobs (SQLite's RETURNING sees only the updated table).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.sql.elements import TextClause

from soap_service.crypto import WrappedKey
from soap_service.domain.delivery import DeliveryJob, DeliveryResult
from soap_service.domain.model import Language, MessageType, RecipientState
from soap_service.domain.ports import SealedAttachment, SealedContent
from soap_service.persistence.dialects import POSTGRESQL, row_lock, timestamp_format
from soap_service.persistence.messages import SEALED_TEXT_COLUMNS, sealed_texts
from soap_service.persistence.outcomes import (
    outcome_rows,
    postgresql_parameters,
    postgresql_record,
    run_sqlite_record,
)
from soap_service.persistence.state_changes import (
    OPEN_STATES,
    WAITING_STATES,
    change_states,
)
from soap_service.persistence.tables import UtcDateTime, attachments, messages, recipients
from soap_service.persistence.transactions import Transactions


class DeliveryQueries(Transactions):
    def claim_due(
        self, worker: str, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[DeliveryJob]:
        """Lease up to `limit` recipients that are due, in one atomic step."""
        parameters = {"worker": worker, "now": now, "until": lease_until, "limit": limit}
        with self._transaction() as connection:
            if connection.dialect.name == POSTGRESQL:
                rows = connection.execute(_CLAIM_POSTGRESQL, parameters).all()
            else:
                ids = connection.execute(_CLAIM_SQLITE, parameters).scalars().all()
                rows = connection.execute(_JOB_DETAILS, {"ids": list(ids)}).all() if ids else []
        return [_job(row) for row in rows]

    def extend_leases(self, worker: str, recipient_ids: list[int], until: datetime) -> set[int]:
        """Renew this worker's leases; the ids it still holds (the others were taken back:
        expired, or their lease ran out and another worker claimed them)."""
        if not recipient_ids:
            return set()
        with self._transaction() as connection:
            return set(
                connection.execute(
                    _EXTEND_LEASES, {"ids": recipient_ids, "worker": worker, "until": until}
                ).scalars()
            )

    def release_leases(self, worker: str, recipient_ids: list[int]) -> None:
        """Give back recipients claimed but not tried (the worker is stopping): due again
        at once for any worker, with no attempt counted."""
        if not recipient_ids:
            return
        with self._transaction() as connection:
            connection.execute(
                update(recipients)
                .where(recipients.c.id.in_(recipient_ids), recipients.c.lease_owner == worker)
                .values(lease_owner=None, leased_until=None)
            )

    def message_contents(self, message_ids: list[str]) -> dict[str, SealedContent]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(_CONTENT, {"ids": message_ids}).all()
            files = connection.execute(_ATTACHMENTS, {"ids": message_ids}).all()
        attached: dict[str, list[SealedAttachment]] = {}
        for file in files:
            attached.setdefault(file.message_id, []).append(
                SealedAttachment(
                    position=file.position,
                    sealed_filename=bytes(file.sealed_filename),
                    content_type=file.content_type,
                    size=file.size,
                    sealed_content=bytes(file.sealed_content),
                )
            )
        return {
            row.id: SealedContent(
                texts=sealed_texts(row), attachments=tuple(attached.get(row.id, ()))
            )
            for row in rows
            if row.content_deleted_at is None
        }

    def record_results(self, worker: str, results: list[DeliveryResult]) -> int:
        """Record each attempt; returns how many changed a recipient's state.

        A result only changes a recipient this worker still holds and that is still
        waiting for delivery: states never move backwards, and an attempt that comes late
        (the lease passed to another worker, or the message expired or was withdrawn
        meanwhile) is written to the journal only.
        """
        if not results:
            return 0
        dialect = self._engine.dialect
        rows = outcome_rows(results, timestamp_format(dialect))
        # Not durable: an outcome lost with the database host (never with a worker) only
        # sends its mail again. See outcomes.py for the statements.
        if dialect.name != POSTGRESQL:
            with self._driver_transaction(durable=False) as cursor:
                return run_sqlite_record(cursor, rows, worker)
        with self._driver_transaction(single_statement=True) as cursor:
            cursor.execute(
                postgresql_record(len(rows)), postgresql_parameters(rows, worker), prepare=True
            )
            changed: int = cursor.fetchone()[0]
            return changed

    def expire_due(self, *, now: datetime, limit: int) -> int:
        """Recipients not final when their message expires become expired; at most
        `limit` in one transaction (the caller repeats while it gets a full batch)."""
        with self._transaction() as connection:
            return change_states(
                connection,
                _expire(connection.dialect.name),
                {"now": now, "limit": limit},
                RecipientState.EXPIRED,
                "the message expired",
                now,
            )


def _job(row: Any) -> DeliveryJob:
    return DeliveryJob(
        recipient_id=row.id,
        message_id=row.message_id,
        position=row.position,
        address=row.address,
        attempts=row.attempts,
        accepted_at=row.accepted_at,
        expires_at=row.expires_at,
        type=MessageType(row.type),
        language=Language(row.language),
        organisation=row.organisation,
        show_subject=bool(row.show_subject),
        sealed_subject=bytes(row.sealed_subject),
        data_key=WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key)),
        report_to=row.report_to,
        gateway_given_up_at=row.gateway_given_up_at,
        content_bytes=row.content_bytes,
    )


# Due: waiting, its time has come, nobody holds it, not expired.
DUE_CONDITION = f"""
    r.state IN {WAITING_STATES}
    AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= :now)
    AND (r.leased_until IS NULL OR r.leased_until < :now)
    AND m.expires_at > :now
"""
_JOB_COLUMNS = """
    r.id, r.message_id, r.position, r.address, r.attempts, m.accepted_at, m.expires_at,
    m.type, m.language, a.organisation, a.show_subject, m.sealed_subject, m.key_id,
    m.wrapped_key, m.report_to, r.gateway_given_up_at, m.content_bytes
"""
_TIMES = (
    bindparam("now", type_=UtcDateTime()),
    bindparam("until", type_=UtcDateTime()),
)
_JOB_TYPES = {
    "accepted_at": UtcDateTime(),
    "expires_at": UtcDateTime(),
    "gateway_given_up_at": UtcDateTime(),
}

_CLAIM_POSTGRESQL = (
    text(
        f"""
        WITH due AS (
            SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id
            WHERE {DUE_CONDITION}
            ORDER BY r.id
            LIMIT :limit
            FOR UPDATE OF r SKIP LOCKED
        )
        UPDATE recipients r SET lease_owner = :worker, leased_until = :until
        FROM due, messages m, accounts a
        WHERE r.id = due.id AND m.id = r.message_id AND a.id = m.account_id
        RETURNING {_JOB_COLUMNS}
        """
    )
    .bindparams(*_TIMES)
    .columns(**_JOB_TYPES)
)
_CLAIM_SQLITE = text(
    f"""
    UPDATE recipients SET lease_owner = :worker, leased_until = :until
    WHERE id IN (
        SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE {DUE_CONDITION}
        ORDER BY r.id
        LIMIT :limit
    )
    RETURNING id
    """
).bindparams(*_TIMES)
_JOB_DETAILS = (
    text(
        f"""
        SELECT {_JOB_COLUMNS}
        FROM recipients r JOIN messages m ON m.id = r.message_id
        JOIN accounts a ON a.id = m.account_id
        WHERE r.id IN :ids ORDER BY r.id
        """
    )
    .bindparams(bindparam("ids", expanding=True))
    .columns(**_JOB_TYPES)
)
_CONTENT = select(messages.c.id, *SEALED_TEXT_COLUMNS).where(
    messages.c.id.in_(bindparam("ids", expanding=True))
)
_ATTACHMENTS = (
    select(
        attachments.c.message_id,
        attachments.c.position,
        attachments.c.sealed_filename,
        attachments.c.content_type,
        attachments.c.size,
        attachments.c.sealed_content,
    )
    .where(attachments.c.message_id.in_(bindparam("ids", expanding=True)))
    .order_by(attachments.c.message_id, attachments.c.position)
)
_EXTEND_LEASES = text(
    f"""
    UPDATE recipients SET leased_until = :until
    WHERE id IN :ids AND lease_owner = :worker AND state IN {WAITING_STATES}
    RETURNING id
    """
).bindparams(bindparam("ids", expanding=True), bindparam("until", type_=UtcDateTime()))


@functools.cache
def _expire(dialect: str) -> TextClause:
    # The outer state test matters: on PostgreSQL a row the subquery chose may have been
    # changed (read, withdrawn) by a commit the UPDATE waited for; it is checked again
    # then. Rows a worker is recording are skipped, not waited for: the next sweep takes
    # them.
    return text(
        f"""
        UPDATE recipients SET state = 'expired', state_changed_at = :now,
            lease_owner = NULL, leased_until = NULL
        WHERE state IN {OPEN_STATES} AND id IN (
            SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id
            WHERE r.state IN {OPEN_STATES} AND m.expires_at <= :now
            ORDER BY r.id
            LIMIT :limit
            {row_lock(dialect, "FOR UPDATE OF r SKIP LOCKED")}
        )
        RETURNING id, message_id
        """
    ).bindparams(bindparam("now", type_=UtcDateTime()))
