"""Recipient state changes and their journal, shared by the query modules.

A state change is one statement that moves recipients and returns (id, message_id) of each
one it moved, and one journal event per moved recipient, in the same transaction. States
never move backwards: every statement names the states it may move a recipient from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause

from soap_service.domain.model import RecipientState
from soap_service.persistence.tables import events

# Waiting for the delivery engine.
WAITING_STATES = "('queued', 'deferred')"
# Not final: a recipient in these may still expire, be withdrawn, opened or decide.
OPEN_STATES = "('queued', 'deferred', 'sent')"


def change_states(
    connection: Connection,
    statement: TextClause,
    parameters: Mapping[str, Any],
    state: RecipientState,
    detail: str,
    now: datetime,
) -> int:
    """Run a state change and journal each recipient it moved; how many it moved."""
    rows = connection.execute(statement, parameters).all()
    journal(connection, rows, state, detail, now)
    return len(rows)


def journal(
    connection: Connection, rows: Sequence[Any], state: RecipientState, detail: str, at: datetime
) -> None:
    """One journal event for each recipient row (id, message_id) that just took `state`."""
    if rows:
        connection.execute(
            insert(events),
            [
                {
                    "message_id": row.message_id,
                    "recipient_id": row.id,
                    "at": at,
                    "kind": state.value,
                    "detail": detail,
                }
                for row in rows
            ],
        )


def storable(detail: str) -> str:
    """A detail fit for a text column: PostgreSQL refuses NUL characters."""
    return detail.replace("\x00", "")[:1000]
