"""The logbook of sent messages: a person's own (sent from the site), or a team's (sent by
its sender accounts, such as a payroll program's): each recipient's state and times,
filters, pages, withdrawing, the receipts of registered messages.

It reads the journal's listing (domain/journal.py: filters by state, type and time, pages
by a signed cursor) of the shelf's accounts, and opens each listed message's subject with
its own key: subjects are sealed, so the filter by words in the subject is applied to the
messages read, up to a bound, and never in the database. A message on no shelf of the
person's, and a team they are not in, answer exactly as ones that do not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.journal import Journal, MessageFilter, MessagePage
from soap_service.domain.messages import MessageService
from soap_service.domain.model import Account, MessageStatus
from soap_service.domain.person_sending import PersonSending
from soap_service.domain.ports import RecipientAccount, SubjectStore
from soap_service.domain.receipts import Receipt, ReceiptKind, ReceiptService
from soap_service.domain.sealing import MessageCipher
from soap_service.domain.teams import Teams
from soap_service.errors import NotFound

PAGE_SIZE = 50
# Messages read at most for one page when the words in the subject filter them.
MAX_SCANNED = 2000
# Rows of one CSV export at most.
MAX_EXPORT = 10_000


@dataclass(frozen=True, kw_only=True)
class Shelf:
    """Whose sent messages a logbook shows: a person's own account, or a team's."""

    accounts: tuple[Account, ...]
    team_id: int | None = None
    team_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class LogbookEntry:
    subject: str
    status: MessageStatus
    sender: str  # the account's name as recipients see it


@dataclass(frozen=True, kw_only=True)
class LogbookPage:
    entries: tuple[LogbookEntry, ...]
    cursor: str | None  # the next page's, None on the last


class Logbook:
    def __init__(
        self,
        *,
        store: SubjectStore,
        keyring: crypto.Keyring,
        journal: Journal,
        messages: MessageService,
        receipts: ReceiptService,
        sending: PersonSending,
        teams: Teams,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._journal = journal
        self._messages = messages
        self._receipts = receipts
        self._sending = sending
        self._teams = teams

    def shelf(self, person: RecipientAccount, team_id: int | None = None) -> Shelf:
        """The person's own shelf, or a team's they are in (NotFound otherwise)."""
        if team_id is None:
            own = self._sending.existing_sender(person)
            return Shelf(accounts=(own,) if own is not None else ())
        membership = self._teams.membership(person, team_id)
        return Shelf(
            accounts=tuple(self._teams.accounts(person, team_id)),
            team_id=team_id,
            team_name=membership.team.name,
        )

    def page(
        self,
        shelf: Shelf,
        where: MessageFilter,
        *,
        words: str = "",
        cursor: str | None = None,
        size: int = PAGE_SIZE,
    ) -> LogbookPage:
        """The shelf's messages that match, newest first, about `size`. ValidationError
        for a cursor that is not this shelf's."""
        if not shelf.accounts:  # nothing sent yet
            return LogbookPage(entries=(), cursor=None)
        found: list[LogbookEntry] = []
        scanned = 0
        while True:
            listed = self._list(shelf, where, cursor, size)
            scanned += len(listed.messages)
            found += self._opened(shelf, listed.messages, words)
            cursor = listed.cursor
            if len(found) >= size or cursor is None or scanned >= MAX_SCANNED or not words:
                return LogbookPage(entries=tuple(found), cursor=cursor)

    def export(
        self, shelf: Shelf, where: MessageFilter, *, words: str = ""
    ) -> Iterator[LogbookEntry]:
        """Every matching message, newest first, MAX_EXPORT at most."""
        cursor: str | None = None
        given = 0
        while given < MAX_EXPORT:
            page = self.page(shelf, where, words=words, cursor=cursor, size=500)
            for entry in page.entries[: MAX_EXPORT - given]:
                given += 1
                yield entry
            if page.cursor is None:
                return
            cursor = page.cursor

    def message(self, shelf: Shelf, message_id: str) -> LogbookEntry:
        """NotFound if the message is not on the shelf."""
        _, status = self._owned(shelf, message_id)
        return self._opened(shelf, (status,), "")[0]

    def withdraw(self, shelf: Shelf, message_id: str) -> MessageStatus:
        account, _ = self._owned(shelf, message_id)
        return self._messages.cancel(account, message_id=message_id)

    def receipt(
        self, shelf: Shelf, message_id: str, kind: ReceiptKind, recipient: str | None
    ) -> Receipt:
        account, _ = self._owned(shelf, message_id)
        return self._receipts.receipt(account, kind, message_id=message_id, recipient=recipient)

    def _list(
        self, shelf: Shelf, where: MessageFilter, cursor: str | None, size: int
    ) -> MessagePage:
        if shelf.team_id is None:
            return self._journal.list_messages(
                shelf.accounts[0], where=where, cursor=cursor, page_size=size
            )
        return self._journal.list_team_messages(
            shelf.team_id,
            [account.id for account in shelf.accounts],
            where=where,
            cursor=cursor,
            page_size=size,
        )

    def _owned(self, shelf: Shelf, message_id: str) -> tuple[Account, MessageStatus]:
        for account in shelf.accounts:  # a team has a few accounts
            try:
                return account, self._messages.status(account, message_id=message_id)
            except NotFound:
                continue
        raise NotFound("no message with this MessageId")

    def _opened(
        self, shelf: Shelf, statuses: tuple[MessageStatus, ...], words: str
    ) -> list[LogbookEntry]:
        subjects = self._store.sealed_subjects(
            [account.id for account in shelf.accounts], [s.message_id for s in statuses]
        )
        wanted = words.casefold().split()
        entries = []
        for status in statuses:
            sealed = subjects[status.message_id]
            cipher = MessageCipher.unwrap(self._keyring, sealed.data_key, status.message_id)
            subject = cipher.open(sealing.SUBJECT, sealed.sealed).decode("utf-8")
            folded = subject.casefold()
            if all(word in folded for word in wanted):
                entries.append(LogbookEntry(subject=subject, status=status, sender=sealed.sender))
        return entries
