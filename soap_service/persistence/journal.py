"""The account's journal read back: recipient state changes in journal order
(GetStatusChanges) and the account's messages newest first (ListMessages)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import groupby

from sqlalchemy import and_, bindparam, exists, func, not_, select, text, tuple_
from sqlalchemy.sql.elements import ColumnElement, TextClause
from sqlalchemy.sql.selectable import TextualSelect

from soap_service.domain.journal import (
    JournalPosition,
    ListingPosition,
    MessageFilter,
    StatusChange,
    StatusChangeBatch,
)
from soap_service.domain.model import (
    FINAL_STATES,
    MessageState,
    MessageStatus,
    RecipientState,
)
from soap_service.persistence.dialects import POSTGRESQL
from soap_service.persistence.messages import (
    STATUS_COLUMNS,
    message_status_of,
    recipient_status,
)
from soap_service.persistence.tables import UtcDateTime, messages, recipients
from soap_service.persistence.transactions import Transactions

_STATES = "(" + ", ".join(f"'{state.value}'" for state in RecipientState) + ")"


# Events of every account looked at per page: twice a page's changes, so that a page of
# one account's payroll run (its changes and its messages' "accepted" events) is full.
SCAN_FACTOR = 2


@functools.cache
def _journal_sql(dialect: str) -> tuple[TextualSelect, TextClause]:
    """The page's changes among the next events of the journal, and where those events
    end. Both walk the journal's index in order and stop after `scan` events, and look up
    each event's message and recipient by key: a page costs the same however long the
    journal and however large the account. (With the plan left to PostgreSQL's statistics,
    on tables not analysed since a payroll run filled them, a page took seconds.)"""
    if dialect == POSTGRESQL:
        # Only events of transactions older than every one still running: those are all
        # visible now or never will be, so no later commit can land before the cursor.
        xact = "e.xact::text::bigint"
        after = "(e.xact, e.id) > (CAST(CAST(:xact AS text) AS xid8), :event_id)"
        settled = "AND e.xact < pg_snapshot_xmin(pg_current_snapshot())"
        materialized = "MATERIALIZED"
        # OFFSET 0 keeps each lookup a lookup (a nested loop on the key), not a join the
        # planner may turn into a scan of all the account's messages.
        lookups = """
        CROSS JOIN LATERAL (
            SELECT m.id, m.reference FROM messages m
            WHERE m.id = c.message_id AND m.account_id = :account_id OFFSET 0
        ) AS m
        CROSS JOIN LATERAL (
            SELECT r.address FROM recipients r WHERE r.id = c.recipient_id OFFSET 0
        ) AS r"""
    else:  # one writer at a time: ids are in commit order; SQLite's plans are these
        xact, after, settled, materialized = "0", "e.id > :event_id", "", ""
        lookups = """
        JOIN messages m ON m.id = c.message_id AND m.account_id = :account_id
        JOIN recipients r ON r.id = c.recipient_id"""
    chunk = f"""
        WITH chunk AS {materialized} (
            SELECT {xact} AS xact, e.xact AS position, e.id AS event_id, e.at, e.kind,
                   e.detail, e.message_id, e.recipient_id
            FROM events e
            WHERE {after} {settled}
            ORDER BY e.xact, e.id
            LIMIT :scan
        )"""
    changes = text(
        f"""{chunk}
        SELECT c.xact, c.event_id, c.at, c.kind, c.detail, m.id AS message_id, m.reference,
               r.address
        FROM chunk c {lookups}
        WHERE c.kind IN {_STATES}
        ORDER BY c.position, c.event_id
        LIMIT :limit
        """
    ).columns(at=UtcDateTime())
    end = text(
        f"""{chunk}
        SELECT c.xact, c.event_id, (SELECT count(*) FROM chunk) AS events
        FROM chunk c ORDER BY c.position DESC, c.event_id DESC LIMIT 1
        """
    )
    return changes, end


class JournalQueries(Transactions):
    def status_changes(
        self, account_id: int, *, after: JournalPosition, limit: int
    ) -> StatusChangeBatch:
        changes, end = _journal_sql(self._dialect)
        parameters = {
            "account_id": account_id,
            "xact": after.xact,
            "event_id": after.event_id,
            "limit": limit + 1,
            "scan": limit * SCAN_FACTOR,
        }
        with self._transaction(read_only=True) as connection:
            if self._dialect == POSTGRESQL:
                # One snapshot for both statements: with a newer one, the events' end
                # could lie past changes the first did not see, and the cursor skip them.
                # (A SQLite read transaction keeps one snapshot anyway.) Then walk the
                # index in order and stop: with statistics that think the range small,
                # PostgreSQL would rather read all of it and sort.
                connection.exec_driver_sql(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;"
                    " SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"
                )
            rows = connection.execute(changes, parameters).all()
            last, more = None, len(rows) > limit
            if not more:
                # Every change among the events looked at is on this page: the next one
                # starts after the last of those events, whosever it was.
                chunk_end = connection.execute(end, parameters).first()
                if chunk_end is not None:
                    last = JournalPosition(xact=chunk_end.xact, event_id=chunk_end.event_id)
                    more = chunk_end.events == parameters["scan"]
        found = [
            StatusChange(
                position=JournalPosition(xact=row.xact, event_id=row.event_id),
                message_id=row.message_id,
                reference=row.reference,
                recipient=row.address,
                state=RecipientState(row.kind),
                at=row.at,
                detail=row.detail,
            )
            for row in rows[:limit]
        ]
        if last is None:
            last = found[-1].position if found else after
        return StatusChangeBatch(changes=found, last=last, more=more)

    def list_messages(
        self,
        account_ids: Sequence[int],
        *,
        where: MessageFilter,
        before: ListingPosition | None,
        limit: int,
    ) -> list[MessageStatus]:
        query = (
            select(*STATUS_COLUMNS)
            .where(_of_accounts(account_ids), *_conditions(where))
            .order_by(messages.c.accepted_at.desc(), messages.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(
                tuple_(messages.c.accepted_at, messages.c.id)
                < tuple_(
                    bindparam("before_at", before.accepted_at, type_=UtcDateTime()),
                    bindparam("before_id", before.message_id),
                )
            )
        with self._transaction(read_only=True) as connection:
            found = connection.execute(query).all()
            rows = connection.execute(
                select(recipients)
                .where(recipients.c.message_id.in_([row.id for row in found]))
                .order_by(recipients.c.message_id, recipients.c.position)
            ).all()
        by_message = {
            message_id: tuple(recipient_status(row) for row in group)
            for message_id, group in groupby(rows, key=lambda row: row.message_id)
        }
        return [message_status_of(row, by_message.get(row.id, ())) for row in found]


def _conditions(where: MessageFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.type is not None:
        conditions.append(messages.c.type == where.type.value)
    if where.accepted_from is not None:
        conditions.append(messages.c.accepted_at >= where.accepted_from)
    if where.accepted_before is not None:
        conditions.append(messages.c.accepted_at < where.accepted_before)
    if where.reference_prefix is not None:
        # Not LIKE: SQLite's ignores case, and the prefix may hold % and _.
        prefix = where.reference_prefix
        conditions.append(func.substr(messages.c.reference, 1, len(prefix)) == prefix)
    if where.state is not None:
        conditions.append(_state_condition(where.state))
    return conditions


def _any_recipient(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(recipients.c.message_id == messages.c.id, condition)


def _state_condition(state: MessageState) -> ColumnElement[bool]:
    """MessageState.derive, in SQL."""
    final = [s.value for s in FINAL_STATES]
    not_cancelled = _any_recipient(recipients.c.state != RecipientState.CANCELLED.value)
    not_queued = _any_recipient(recipients.c.state != RecipientState.QUEUED.value)
    open_ = _any_recipient(recipients.c.state.not_in(final))
    if state is MessageState.CANCELLED:
        return not_(not_cancelled)
    if state is MessageState.QUEUED:
        return not_(not_queued)
    if state is MessageState.COMPLETED:
        return and_(not_(open_), not_cancelled)
    return and_(open_, not_queued)


def _of_accounts(account_ids: Sequence[int]) -> ColumnElement[bool]:
    # One account (ListMessages, a person's logbook) as `=`: the index's plain case.
    if len(account_ids) == 1:
        return messages.c.account_id == account_ids[0]
    return messages.c.account_id.in_(list(account_ids))
