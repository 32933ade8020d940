"""The account's journal: every recipient state change since a cursor (GetStatusChanges),
and the account's messages, newest first (ListMessages). Both page with signed cursors
(cursors.py), so a caller can stop, crash or come back days later and go on."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from soap_service import crypto
from soap_service.domain.cursors import CursorCodec
from soap_service.domain.model import (
    Account,
    MessageState,
    MessageStatus,
    MessageType,
    RecipientState,
)
from soap_service.errors import ValidationError

MAX_CHANGES_PAGE = 1000
MAX_MESSAGES_PAGE = 500
DEFAULT_MESSAGES_PAGE = 100


@dataclass(frozen=True, kw_only=True)
class JournalPosition:
    """Where an event stands in the journal's order: its transaction (0 on SQLite), then
    its id. The store returns only events whose place can no longer be taken by another."""

    xact: int
    event_id: int


@dataclass(frozen=True, kw_only=True)
class StatusChange:
    position: JournalPosition
    message_id: str
    reference: str
    recipient: str
    state: RecipientState
    at: datetime
    detail: str | None


@dataclass(frozen=True, kw_only=True)
class StatusChangeBatch:
    """What the store found after a position: changes, and how far it looked."""

    changes: list[StatusChange]
    # The journal position to go on from: after the last change, or after events of
    # other accounts (or other kinds) looked at beyond it.
    last: JournalPosition
    # Whether more events may follow.
    more: bool


@dataclass(frozen=True, kw_only=True)
class StatusChangePage:
    changes: tuple[StatusChange, ...]
    # Where to go on from: after the last change here, or after the other events looked
    # at (or where the caller was).
    cursor: str
    # Whether more changes may be waiting: call again at once. A page may hold fewer
    # changes than asked for (even none) and still say so.
    more: bool


@dataclass(frozen=True, kw_only=True)
class MessageFilter:
    state: MessageState | None = None
    type: MessageType | None = None
    accepted_from: datetime | None = None  # inclusive
    accepted_before: datetime | None = None  # exclusive
    reference_prefix: str | None = None


@dataclass(frozen=True, kw_only=True)
class ListingPosition:
    """A message's place in the newest-first listing: after it come older ones."""

    accepted_at: datetime
    message_id: str


@dataclass(frozen=True, kw_only=True)
class MessagePage:
    messages: tuple[MessageStatus, ...]
    cursor: str | None  # None: this was the last page


class JournalStore(Protocol):
    def status_changes(
        self, account_id: int, *, after: JournalPosition, limit: int
    ) -> StatusChangeBatch:
        """Up to `limit` recipient state changes of the account's messages after `after`,
        in journal order, of transactions that can no longer add events before them. It
        may look at a bounded number of events only: then fewer, and `more`."""
        ...

    def list_messages(
        self,
        account_ids: Sequence[int],
        *,
        where: MessageFilter,
        before: ListingPosition | None,
        limit: int,
    ) -> list[MessageStatus]:
        """Up to `limit` of the accounts' messages that match, newest first (accepted_at,
        then id), older than `before`."""
        ...


_CHANGES = struct.Struct(">QQ")
_LISTING = struct.Struct(">q16s")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Journal:
    def __init__(self, *, store: JournalStore, keyring: crypto.Keyring) -> None:
        self._store = store
        self._change_cursors = CursorCodec(keyring, b"status-changes")
        self._listing_cursors = CursorCodec(keyring, b"message-listing")
        # A team's logbook: the messages of its sender accounts, its cursors its own.
        self._team_cursors = CursorCodec(keyring, b"team-listing")

    def status_changes(
        self, account: Account, *, cursor: str | None, page_size: int | None
    ) -> StatusChangePage:
        """The recipient state changes after the cursor (from the start without one),
        oldest first, and the cursor to go on from. Polling with the returned cursor
        shows each change exactly once."""
        limit = _page_size(page_size, MAX_CHANGES_PAGE, MAX_CHANGES_PAGE)
        after = JournalPosition(xact=0, event_id=0)
        if cursor is not None:
            xact, event_id = _CHANGES.unpack(
                _exact(self._change_cursors.decode(account.id, cursor), _CHANGES.size)
            )
            after = JournalPosition(xact=xact, event_id=event_id)
        found = self._store.status_changes(account.id, after=after, limit=limit)
        last = found.last
        return StatusChangePage(
            changes=tuple(found.changes),
            cursor=self._change_cursors.encode(account.id, _CHANGES.pack(last.xact, last.event_id)),
            more=found.more,
        )

    def list_messages(
        self,
        account: Account,
        *,
        where: MessageFilter,
        cursor: str | None,
        page_size: int | None,
    ) -> MessagePage:
        """The account's messages that match, newest first, a page at a time. Messages
        that arrive while the caller pages come before its first page: the pages go on
        where they were."""
        return self._listing(
            (account.id,), self._listing_cursors, account.id, where, cursor, page_size
        )

    def list_team_messages(
        self,
        team_id: int,
        account_ids: Sequence[int],
        *,
        where: MessageFilter,
        cursor: str | None,
        page_size: int | None,
    ) -> MessagePage:
        """As list_messages, over a team's sender accounts; the cursors are the team's."""
        return self._listing(account_ids, self._team_cursors, team_id, where, cursor, page_size)

    def _listing(
        self,
        account_ids: Sequence[int],
        cursors: CursorCodec,
        owner: int,
        where: MessageFilter,
        cursor: str | None,
        page_size: int | None,
    ) -> MessagePage:
        limit = _page_size(page_size, MAX_MESSAGES_PAGE, DEFAULT_MESSAGES_PAGE)
        _check_filter(where)
        before = None
        if cursor is not None:
            micros, raw_id = _LISTING.unpack(_exact(cursors.decode(owner, cursor), _LISTING.size))
            before = ListingPosition(
                accepted_at=_EPOCH + timedelta(microseconds=micros),
                message_id=str(uuid.UUID(bytes=raw_id)),
            )
        found = self._store.list_messages(account_ids, where=where, before=before, limit=limit + 1)
        page = found[:limit]
        next_cursor = None
        if len(found) > limit:
            last = page[-1]
            micros = (last.accepted_at - _EPOCH) // timedelta(microseconds=1)
            next_cursor = cursors.encode(
                owner, _LISTING.pack(micros, uuid.UUID(last.message_id).bytes)
            )
        return MessagePage(messages=tuple(page), cursor=next_cursor)


def _page_size(size: int | None, most: int, default: int) -> int:
    if size is None:
        return default
    if not 1 <= size <= most:
        raise ValidationError(f"PageSize: must be 1 to {most}")
    return size


def _exact(position: bytes, size: int) -> bytes:
    if len(position) != size:  # signed by us for another layout: cannot happen unless
        raise ValidationError("Cursor: not a cursor of this call")  # a key was reused
    return position


def _check_filter(where: MessageFilter) -> None:
    for name, moment in (
        ("AcceptedFrom", where.accepted_from),
        ("AcceptedBefore", where.accepted_before),
    ):
        if moment is not None and moment.tzinfo is None:
            raise ValidationError(f"{name}: give a time zone (e.g. Z or +01:00)")
    if (
        where.accepted_from is not None
        and where.accepted_before is not None
        and where.accepted_from >= where.accepted_before
    ):
        raise ValidationError("AcceptedFrom must be before AcceptedBefore")
    if where.reference_prefix is not None and not where.reference_prefix:
        raise ValidationError("ReferencePrefix: give at least one character, or leave it out")
