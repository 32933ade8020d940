"""Claiming a queue's due rows with a lease, in one statement (sender reports, account
mails): each row's `state`, `next_attempt_at`, `lease_owner` and `lease_until`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause

from soap_service.persistence.dialects import POSTGRESQL
from soap_service.persistence.tables import UtcDateTime

_TIMES = (bindparam("now", type_=UtcDateTime()), bindparam("until", type_=UtcDateTime()))
_DUE = """
    state = 'queued' AND next_attempt_at <= :now
    AND (lease_until IS NULL OR lease_until < :now)
"""


class LeaseClaim:
    """The claim of `table`'s due rows (and `also`, a further condition): leased to the
    worker until :until; PostgreSQL skips rows another worker is claiming."""

    def __init__(self, table: str, also: str = "TRUE") -> None:
        due = f"{_DUE} AND {also}"
        self._postgresql: TextClause = text(
            f"""
            WITH due AS (
                SELECT id FROM {table} WHERE {due}
                ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
            )
            UPDATE {table} q SET lease_owner = :worker, lease_until = :until
            FROM due WHERE q.id = due.id
            RETURNING q.id
            """
        ).bindparams(*_TIMES)
        self._sqlite: TextClause = text(
            f"""
            UPDATE {table} SET lease_owner = :worker, lease_until = :until
            WHERE id IN (SELECT id FROM {table} WHERE {due} ORDER BY id LIMIT :limit)
            RETURNING id
            """
        ).bindparams(*_TIMES)

    def __call__(self, connection: Connection, **parameters: Any) -> list[int]:
        """The claimed rows' ids (parameters: worker, now, until, limit)."""
        statement = self._postgresql if connection.dialect.name == POSTGRESQL else self._sqlite
        return list(connection.execute(statement, parameters).scalars().all())
