"""Delivery outcomes, in each driver's own SQL: the delivery engine's hot path.

A worker records each outcome as soon as its mail is answered (delivery/recording.py), a
transaction each, while it sends the next mail. Through SQLAlchemy that cost about 0.5 ms
of CPU, more than sending the mail; on the driver's cursor it is one statement on
PostgreSQL and three on SQLite.

A result changes only a recipient this worker still holds and that is still waiting for
delivery (locked on PostgreSQL, in id order as every writer of these rows locks them, so
that no claim takes it meanwhile); states never move backwards, and an attempt that comes
late (the lease passed to another worker, or the message expired or was withdrawn) goes
to the journal only, as "late-attempt". One journal event per result, in their order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from soap_service.domain.delivery import DeliveryResult
from soap_service.domain.model import RecipientState
from soap_service.persistence.state_changes import WAITING_STATES, storable

_LATE = "late-attempt"
# Handed over: no error to show.
_DONE = frozenset({RecipientState.SENT, RecipientState.DELIVERED})


def outcome_rows(
    results: list[DeliveryResult], timestamp: Callable[[datetime], Any]
) -> list[tuple[Any, ...]]:
    """(recipient id, message id, state, at, next attempt at, error, detail, gateway given
    up) per result."""
    rows = []
    for result in results:
        decision = result.decision
        detail = storable(decision.detail)
        rows.append(
            (
                result.job.recipient_id,
                result.job.message_id,
                decision.state.value,
                timestamp(result.attempted_at),
                timestamp(decision.next_attempt_at) if decision.next_attempt_at else None,
                None if decision.state in _DONE else detail,
                detail,
                decision.fall_back,
            )
        )
    return rows


# PostgreSQL: the whole group in one statement, its own transaction (one round trip). Data-
# modifying CTEs run once each, to the end, whatever the main query reads of them. Its
# commit does not wait for the WAL to reach the disk (synchronous_commit off, for this
# transaction only): an outcome lost with the database host, never with a worker, only
# sends its mail again.
#
# The held rows are looked up one by one by id (a lateral join, in id order), never by
# state: the statement is prepared, and a generic plan made while the table was small (at a
# run's start) would otherwise read every waiting recipient, and every row version a run
# leaves behind, for each outcome: 0.5 ms an outcome at a payroll run's start, 4 ms after
# 10,000 (tests/unit/test_delivery_plans.py).


@functools.cache
def postgresql_record(results: int) -> bytes:
    rows = ", ".join(
        f"({n}, %s::bigint, %s::text, %s::text, %s::timestamptz, %s::timestamptz, %s::text, "
        "%s::text, %s::boolean)"
        for n in range(results)
    )
    return f"""
WITH outcome(n, id, message_id, state, at, next, error, detail, fall_back) AS (VALUES {rows}),
held AS (
    SELECT h.id FROM (SELECT id FROM outcome ORDER BY id) AS o CROSS JOIN LATERAL (
        SELECT r.id FROM recipients r
        WHERE r.id = o.id AND r.lease_owner = %s AND r.state IN {WAITING_STATES}
        FOR UPDATE OF r
    ) AS h
),
updated AS (
    UPDATE recipients r SET
        state_changed_at = CASE WHEN r.state = o.state THEN r.state_changed_at ELSE o.at END,
        state = o.state, attempts = r.attempts + 1, last_attempt_at = o.at,
        next_attempt_at = o.next, last_error = o.error,
        lease_owner = NULL, leased_until = NULL,
        gateway_given_up_at = CASE WHEN o.fall_back THEN o.at ELSE r.gateway_given_up_at END
    FROM outcome o
    WHERE r.id = o.id AND r.id IN (SELECT id FROM held)
    RETURNING r.id
),
journal AS (
    INSERT INTO events (message_id, recipient_id, at, kind, detail)
    SELECT o.message_id, o.id, o.at,
           CASE WHEN o.id IN (SELECT id FROM held) THEN o.state ELSE '{_LATE}' END, o.detail
    FROM outcome o ORDER BY o.n
)
SELECT count(*), set_config('synchronous_commit', 'off', true) FROM updated
""".encode()


def postgresql_parameters(rows: list[tuple[Any, ...]], worker: str) -> list[Any]:
    return [value for row in rows for value in row] + [worker]


# SQLite: three statements in the one write transaction SQLite allows, which no claim can
# enter meanwhile.

_SQLITE_UPDATE = """
UPDATE recipients SET
    state_changed_at = CASE WHEN state = ? THEN state_changed_at ELSE ? END,
    state = ?, attempts = attempts + 1, last_attempt_at = ?,
    next_attempt_at = ?, last_error = ?, lease_owner = NULL, leased_until = NULL,
    gateway_given_up_at = CASE WHEN ? THEN ? ELSE gateway_given_up_at END
WHERE id = ?
"""
_SQLITE_JOURNAL = (
    "INSERT INTO events (message_id, recipient_id, at, kind, detail) VALUES (?, ?, ?, ?, ?)"
)


def run_sqlite_record(cursor: Any, rows: list[tuple[Any, ...]], worker: str) -> int:
    ids = [row[0] for row in rows]
    held = {
        found
        for (found,) in cursor.execute(
            f"SELECT id FROM recipients WHERE id IN ({', '.join('?' for _ in ids)}) "
            f"AND lease_owner = ? AND state IN {WAITING_STATES}",
            (*ids, worker),
        )
    }
    updates = [
        (state, at, state, at, next_at, error, fall_back, at, recipient)
        for recipient, _, state, at, next_at, error, _, fall_back in rows
        if recipient in held
    ]
    if updates:
        cursor.executemany(_SQLITE_UPDATE, updates)
    cursor.executemany(
        _SQLITE_JOURNAL,
        [
            (message, recipient, at, state if recipient in held else _LATE, detail)
            for recipient, message, state, at, _, _, detail, _ in rows
        ],
    )
    return len(updates)
