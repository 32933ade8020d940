"""A person's inbox on the site: after logging in with the address's account (the one a
recipient registers on a pickup page), the messages that mailbox received, newest first,
each opened through its own pickup link, as from the notification."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.login_throttle import LoginGuard
from soap_service.domain.model import MessageType, RecipientState
from soap_service.domain.pickup import LoginRefused, log_in, log_out, mailbox, session_account
from soap_service.domain.ports import InboxFilter, InboxPosition, InboxRecord, InboxStore
from soap_service.domain.sealing import MessageCipher
from soap_service.errors import ValidationError

# The messages a page of the inbox lists.
INBOX_SIZE = 50
# Messages read at most for one page when the words in the subject filter them.
MAX_SCANNED = 2000
# Rows of one CSV export at most.
MAX_EXPORT = 10_000
_CURSOR = re.compile(r"(-?\d{1,20})\.(\d{1,20})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EVERYTHING = InboxFilter()


@dataclass(frozen=True, kw_only=True)
class InboxEntry:
    message_id: str
    organisation: str
    subject: str
    type: MessageType
    state: RecipientState
    accepted_at: datetime
    # The recipient's pickup token: the entry opens the message as its link does.
    token: str


@dataclass(frozen=True, kw_only=True)
class Inbox:
    address: str
    entries: tuple[InboxEntry, ...]
    cursor: str | None = None  # the next page's; None on the last


class InboxService:
    def __init__(
        self,
        *,
        store: InboxStore,
        keyring: crypto.Keyring,
        guard: LoginGuard,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._guard = guard
        self._now = now

    def login(self, address: str, password: str, client: str | None) -> str:
        """The new session's token (LoginRefused: wrong, whether or not the address has
        an account; or locked). Here anyone may type any address: wrong passwords are
        also throttled by address typed and by client, as sender logins are
        (AuthenticationThrottled while they must wait)."""
        box = mailbox(address.strip())
        attempt = self._guard.attempt(f"person:{box}", client)
        try:
            session = log_in(self._store, box, password, self._now())
        except LoginRefused as refused:
            if refused.reason == LoginRefused.WRONG:
                attempt.failed()
            raise
        attempt.succeeded()
        return session

    def logout(self, session: str) -> None:
        log_out(self._store, session)

    def inbox(
        self,
        session: str | None,
        where: InboxFilter = EVERYTHING,
        *,
        words: str = "",
        cursor: str | None = None,
        size: int = INBOX_SIZE,
    ) -> Inbox | None:
        """The session's mailbox and a page of its messages that match, newest first;
        None without a live session. ValidationError for a cursor that cannot be read.
        The words are looked for in the subjects as read, up to MAX_SCANNED a page."""
        account = session_account(self._store, session, self._now()) if session else None
        if account is None:
            return None
        before = _position(cursor) if cursor else None
        wanted = words.casefold().split()
        found: list[InboxEntry] = []
        scanned = 0
        while True:
            records = self._store.inbox(account.address, where=where, before=before, limit=size)
            scanned += len(records)
            for record in records:
                entry = self._entry(record)
                if all(word in entry.subject.casefold() for word in wanted):
                    found.append(entry)
            before = _after(records[-1]) if len(records) == size else None
            if before is None or len(found) >= size or scanned >= MAX_SCANNED or not wanted:
                next_cursor = _cursor(before) if before else None
                return Inbox(address=account.address, entries=tuple(found), cursor=next_cursor)

    def export(
        self, session: str | None, where: InboxFilter, *, words: str = ""
    ) -> Iterator[InboxEntry] | None:
        """Every matching message, newest first, MAX_EXPORT at most; None without a session."""
        first = self.inbox(session, where, words=words, size=500)
        if first is None:
            return None
        return self._rest(session, where, words, first)

    def _rest(
        self, session: str | None, where: InboxFilter, words: str, page: Inbox
    ) -> Iterator[InboxEntry]:
        given = 0
        while True:
            for entry in page.entries[: MAX_EXPORT - given]:
                given += 1
                yield entry
            if page.cursor is None or given >= MAX_EXPORT:
                return
            following = self.inbox(session, where, words=words, cursor=page.cursor, size=500)
            if following is None:
                return
            page = following

    def _entry(self, record: InboxRecord) -> InboxEntry:
        cipher = MessageCipher.unwrap(self._keyring, record.data_key, record.message_id)
        return InboxEntry(
            message_id=record.message_id,
            organisation=record.organisation,
            subject=cipher.open(sealing.SUBJECT, record.sealed_subject).decode("utf-8"),
            type=record.type,
            state=record.state,
            accepted_at=record.accepted_at,
            token=cipher.pickup_token(record.position),
        )


def _after(record: InboxRecord) -> InboxPosition:
    return InboxPosition(accepted_at=record.accepted_at, recipient_id=record.recipient_id)


def _cursor(position: InboxPosition) -> str:
    # Not secret nor signed: it only says where in the person's own inbox to go on.
    micros = (position.accepted_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{position.recipient_id}"


def _position(cursor: str) -> InboxPosition:
    found = _CURSOR.fullmatch(cursor)
    if found is None:
        raise ValidationError("Cursor: not a cursor of this inbox")
    try:
        moment = _EPOCH + timedelta(microseconds=int(found[1]))
    except OverflowError:
        raise ValidationError("Cursor: not a cursor of this inbox") from None
    return InboxPosition(accepted_at=moment, recipient_id=int(found[2]))
