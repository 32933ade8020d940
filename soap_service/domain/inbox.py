"""A person's inbox on the site: after logging in with the address's account (the one a
recipient registers on a pickup page), the messages that mailbox received, newest first,
each opened through its own pickup link, as from the notification."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.login_throttle import LoginGuard
from soap_service.domain.model import MessageType, RecipientState
from soap_service.domain.pickup import LoginRefused, log_in, log_out, mailbox, session_account
from soap_service.domain.ports import InboxRecord, InboxStore
from soap_service.domain.sealing import MessageCipher

# The messages an inbox lists at most (the newest).
INBOX_SIZE = 100


@dataclass(frozen=True, kw_only=True)
class InboxEntry:
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

    def inbox(self, session: str | None) -> Inbox | None:
        """The session's mailbox and its messages; None without a live session."""
        account = session_account(self._store, session, self._now()) if session else None
        if account is None:
            return None
        records = self._store.inbox(account.address, limit=INBOX_SIZE)
        return Inbox(address=account.address, entries=tuple(map(self._entry, records)))

    def _entry(self, record: InboxRecord) -> InboxEntry:
        cipher = MessageCipher.unwrap(self._keyring, record.data_key, record.message_id)
        return InboxEntry(
            organisation=record.organisation,
            subject=cipher.open(sealing.SUBJECT, record.sealed_subject).decode("utf-8"),
            type=record.type,
            state=record.state,
            accepted_at=record.accepted_at,
            token=cipher.pickup_token(record.position),
        )
