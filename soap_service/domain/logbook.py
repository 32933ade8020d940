"""A person's logbook of the messages they sent from the site: each recipient's state and
times, filters, pages, withdrawing, the receipts of registered messages.

It reads the journal's listing (domain/journal.py: filters by state, type and time, pages
by a signed cursor) of the person's sender account, and opens each listed message's
subject with its own key: subjects are sealed, so the filter by words in the subject is
applied to the messages read, up to a bound, and never in the database. A message of
another account answers exactly as one that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.journal import Journal, MessageFilter
from soap_service.domain.messages import MessageService
from soap_service.domain.model import Account, MessageStatus
from soap_service.domain.person_sending import PersonSending
from soap_service.domain.ports import RecipientAccount, SubjectStore
from soap_service.domain.receipts import Receipt, ReceiptKind, ReceiptService
from soap_service.domain.sealing import MessageCipher
from soap_service.errors import NotFound

PAGE_SIZE = 50
# Messages read at most for one page when the words in the subject filter them.
MAX_SCANNED = 2000
# Rows of one CSV export at most.
MAX_EXPORT = 10_000


@dataclass(frozen=True, kw_only=True)
class LogbookEntry:
    subject: str
    status: MessageStatus


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
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._journal = journal
        self._messages = messages
        self._receipts = receipts
        self._sending = sending

    def page(
        self,
        person: RecipientAccount,
        where: MessageFilter,
        *,
        words: str = "",
        cursor: str | None = None,
        size: int = PAGE_SIZE,
    ) -> LogbookPage:
        """The person's sent messages that match, newest first, `size` at most.
        ValidationError for a cursor that is not this logbook's."""
        found: list[LogbookEntry] = []
        scanned = 0
        account = self._sending.existing_sender(person)
        if account is None:  # nothing sent yet
            return LogbookPage(entries=(), cursor=None)
        while True:
            listed = self._journal.list_messages(
                account, where=where, cursor=cursor, page_size=size
            )
            scanned += len(listed.messages)
            found += self._matching(account, listed.messages, words)
            cursor = listed.cursor
            if len(found) >= size or cursor is None or scanned >= MAX_SCANNED or not words:
                return LogbookPage(entries=tuple(found), cursor=cursor)

    def export(
        self, person: RecipientAccount, where: MessageFilter, *, words: str = ""
    ) -> Iterator[LogbookEntry]:
        """Every matching message, newest first, MAX_EXPORT at most."""
        cursor: str | None = None
        given = 0
        while given < MAX_EXPORT:
            page = self.page(person, where, words=words, cursor=cursor, size=500)
            for entry in page.entries[: MAX_EXPORT - given]:
                given += 1
                yield entry
            if page.cursor is None:
                return
            cursor = page.cursor

    def message(self, person: RecipientAccount, message_id: str) -> LogbookEntry:
        """NotFound if the person did not send it."""
        account = self._account(person)
        status = self._messages.status(account, message_id=message_id)
        return self._matching(account, (status,), "")[0]

    def withdraw(self, person: RecipientAccount, message_id: str) -> MessageStatus:
        return self._messages.cancel(self._account(person), message_id=message_id)

    def receipt(
        self,
        person: RecipientAccount,
        message_id: str,
        kind: ReceiptKind,
        recipient: str | None,
    ) -> Receipt:
        account = self._account(person)
        return self._receipts.receipt(account, kind, message_id=message_id, recipient=recipient)

    def _account(self, person: RecipientAccount) -> Account:
        account = self._sending.existing_sender(person)
        if account is None:
            raise NotFound("no message with this MessageId")
        return account

    def _matching(
        self, account: Account, statuses: tuple[MessageStatus, ...], words: str
    ) -> list[LogbookEntry]:
        subjects = self._store.sealed_subjects(account.id, [s.message_id for s in statuses])
        wanted = words.casefold().split()
        entries = []
        for status in statuses:
            sealed = subjects[status.message_id]
            cipher = MessageCipher.unwrap(self._keyring, sealed.data_key, status.message_id)
            subject = cipher.open(sealing.SUBJECT, sealed.sealed).decode("utf-8")
            folded = subject.casefold()
            if all(word in folded for word in wanted):
                entries.append(LogbookEntry(subject=subject, status=status))
        return entries
