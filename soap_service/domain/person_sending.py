"""A person sends a secure message from the site: the same path as SendMessage (the
MessageService: validation, the attachment policy, sealing, one transaction), under a
sender account of the person's own, made at their first message. Recipients see the
person's address as the sender. That account has a password nobody knows and a username
no operator can give (it starts with "@"): it sends from the site only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from soap_service import crypto
from soap_service.domain.messages import MessageService
from soap_service.domain.model import Account, MessageDraft, MessageStatus
from soap_service.domain.pickup import session_account
from soap_service.domain.ports import NewAccount, PersonSenderStore, RecipientAccount
from soap_service.errors import AccountExists, InternalError


def person_username(person_id: int) -> str:
    return f"@person-{person_id}"


class PersonSending:
    def __init__(
        self,
        *,
        store: PersonSenderStore,
        messages: MessageService,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._messages = messages
        self._now = now

    def person(self, session: str | None) -> RecipientAccount | None:
        """The person logged in with this session, while it lasts."""
        return session_account(self._store, session, self._now()) if session else None

    def send(self, person: RecipientAccount, draft: MessageDraft) -> MessageStatus:
        """Accept the person's message (the draft's Reference makes a form sent twice one
        message); ValidationError and its kinds as for SendMessage."""
        return self._messages.send(self.sender(person), draft)

    def existing_sender(self, person: RecipientAccount) -> Account | None:
        """The person's sender account, if they sent a message before."""
        return self._store.person_sender(person.id)

    def sender(self, person: RecipientAccount) -> Account:
        """The person's sender account, made now if they have none."""
        found = self._store.person_sender(person.id)
        if found is not None:
            return found
        username = person_username(person.id)
        try:
            account = self._store.add_account(
                NewAccount(
                    username=username,
                    organisation=person.address,
                    password_hash=crypto.hash_password(crypto.generate_password()),
                    digest_secret=None,
                    created_at=self._now(),
                )
            )
        except AccountExists:  # made meanwhile by the person's other request
            record = self._store.find_account(username)
            if record is None:
                raise InternalError("a person's sender account vanished") from None
            account = record.account
        self._store.link_person_sender(person.id, account.id)
        return account
