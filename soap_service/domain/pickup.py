"""Pickup: a recipient follows the link from the notification and reads the message.

The link's token is looked up by its hash, then checked against the token the message's
own key derives for that recipient, in constant time. A link works until the message
expires or is withdrawn.

- Confidential: whoever holds the link reads it; the first reading makes it `opened`.
- Personal: only the registered recipient, logged in. The first time, the link proves
  the address: the recipient sets a password and gives consent, once. Then `opened`.
- Registered: as personal, and the recipient first sees sender and subject and accepts
  (`accepted`, then the content) or refuses (`refused`); an account may accept every
  registered message automatically.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.model import Language, MessageType, RecipientState
from soap_service.domain.ports import (
    PickupAttachment,
    PickupRecord,
    PickupStore,
    RecipientAccount,
    RecipientAccountStore,
)
from soap_service.domain.sealing import MessageCipher
from soap_service.errors import AccountExists, SoapServiceError

# 256 bits in base64url without padding.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
# States in which the link opens the message (a mail may arrive before its `sent` is
# recorded: a crash between the server's 250 and the record).
_WAITING = frozenset({RecipientState.QUEUED, RecipientState.DEFERRED, RecipientState.SENT})
_READABLE = _WAITING | {RecipientState.OPENED, RecipientState.ACCEPTED}

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 200
# After this many wrong passwords in a row an account is locked for a while; every
# further wrong password locks it again.
MAX_FAILED_LOGINS = 5
LOGIN_LOCK = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True, kw_only=True)
class MessageAbout:
    """What the page of a genuine link that no longer opens its message says it is about:
    whose message and when it came; its subject only where the link alone showed it
    (confidential), since a personal or registered message's needed a login, and not once
    the sender withdrew it (perhaps because it went to the wrong person)."""

    organisation: str
    accepted_at: datetime
    subject: str | None


class PickupRefused(SoapServiceError):
    """The link does not show the message; `reason` says which page the recipient sees."""

    UNKNOWN = "unknown"  # no such link (mistyped, tampered with)
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"  # the recipient refused this registered message
    DELETED = "deleted"  # its content was deleted at the end of the retention period
    LOGIN = "login"  # personal or registered: log in first
    REGISTER = "register"  # personal or registered, no account yet: register first

    def __init__(
        self, reason: str, *, language: Language | None = None, about: MessageAbout | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.language = language  # the message's, when the link was genuine
        self.about = about  # withdrawn, refused, deleted or expired: which message


class RegistrationRefused(SoapServiceError):
    EXISTS = "exists"
    PASSWORD_SHORT = "password-short"
    PASSWORD_LONG = "password-long"
    PASSWORDS_DIFFER = "passwords-differ"
    NO_CONSENT = "no-consent"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SecondFactorNeeded(SoapServiceError):
    """The password was right; the account also wants a code (domain/second_factor.py)."""

    def __init__(self, account_id: int) -> None:
        super().__init__("a second factor is needed")
        self.account_id = account_id


class LoginRefused(SoapServiceError):
    WRONG = "wrong"  # a wrong password, or no account: the same answer
    LOCKED = "locked"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class AttachmentView:
    position: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, kw_only=True)
class OpenedMessage:
    message_id: str
    type: MessageType
    organisation: str
    language: Language
    subject: str
    text_body: str
    html_body: str | None
    attachments: tuple[AttachmentView, ...]
    accepted_at: datetime
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class DecisionNeeded:
    """A registered message waiting for accept or refuse: only sender and subject."""

    organisation: str
    language: Language
    subject: str
    accepted_at: datetime
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class LinkIdentity:
    """Who a genuine link is for, for the registration and login pages."""

    address: str
    organisation: str
    language: Language
    has_account: bool


@dataclass(frozen=True, kw_only=True)
class AttachmentFile:
    filename: str
    content_type: str
    content: bytes


class PickupService:
    def __init__(
        self, *, store: PickupStore, keyring: crypto.Keyring, now: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._now = now

    # Reading.

    def view(self, token: str, session: str | None = None) -> OpenedMessage | DecisionNeeded:
        """What the link shows now. Confidential and personal: the message (the first time
        makes the recipient `opened`). Registered: the decision, until it is accepted."""
        record, cipher = self._genuine(token)
        account = self._reader(record, session)
        if record.type is MessageType.REGISTERED and record.state is not RecipientState.ACCEPTED:
            if account is None or not account.auto_accept:
                return DecisionNeeded(
                    organisation=record.organisation,
                    language=record.language,
                    subject=_text(cipher.open(sealing.SUBJECT, record.texts.subject)),
                    accepted_at=record.accepted_at,
                    expires_at=record.expires_at,
                )
            if not self._store.decide(
                record.recipient_id, RecipientState.ACCEPTED, "accepted automatically", self._now()
            ):
                return self.view(token, session)  # decided, withdrawn or expired meanwhile
        elif record.state in _WAITING and not self._store.mark_opened(
            record.recipient_id, self._now()
        ):
            return self.view(token, session)  # opened, withdrawn or expired meanwhile
        return _opened(record, cipher)

    def attachment(self, token: str, position: int, session: str | None = None) -> AttachmentFile:
        """One attachment, for a reader the message page would show it to."""
        record, cipher = self._genuine(token)
        self._reader(record, session)
        if record.type is MessageType.REGISTERED and record.state is not RecipientState.ACCEPTED:
            raise PickupRefused(PickupRefused.UNKNOWN, language=record.language)
        found = next((a for a in record.attachments if a.position == position), None)
        sealed = (
            self._store.attachment_content(record.message_id, position)
            if found is not None
            else None
        )
        if found is None or sealed is None:
            raise PickupRefused(PickupRefused.UNKNOWN, language=record.language)
        if record.state in _WAITING and not self._store.mark_opened(
            record.recipient_id, self._now()
        ):
            return self.attachment(token, position, session)  # changed meanwhile: look again
        return AttachmentFile(
            filename=_text(cipher.open(sealing.attachment_name(position), found.sealed_filename)),
            content_type=found.content_type,
            content=cipher.open(sealing.attachment_content(position), sealed),
        )

    def identity(self, token: str) -> LinkIdentity:
        """Whom a genuine personal or registered link is for, and whether that address
        has an account."""
        record, _ = self._genuine(token)
        if record.type is MessageType.CONFIDENTIAL:
            raise PickupRefused(PickupRefused.UNKNOWN, language=record.language)
        address = mailbox(record.address)
        return LinkIdentity(
            address=address,
            organisation=record.organisation,
            language=record.language,
            has_account=self._store.find_recipient_account(address) is not None,
        )

    # Deciding (registered messages).

    def decide(
        self, token: str, session: str | None, *, accept: bool, always_accept: bool = False
    ) -> None:
        record, _ = self._genuine(token)
        account = self._reader(record, session)
        if record.type is not MessageType.REGISTERED or account is None:
            raise PickupRefused(PickupRefused.UNKNOWN, language=record.language)
        if accept and always_accept:
            self._store.set_auto_accept(account.id, True)
        if record.state in _WAITING:
            state = RecipientState.ACCEPTED if accept else RecipientState.REFUSED
            detail = "accepted by the recipient" if accept else "refused by the recipient"
            self._store.decide(record.recipient_id, state, detail, self._now())

    # Accounts and sessions.

    def register(self, token: str, password: str, repeated: str, *, consent: bool) -> str:
        """Create the account of the link's address (the link proves it), with consent;
        the new session's token."""
        record, _ = self._genuine(token)
        if record.type is MessageType.CONFIDENTIAL:
            # A confidential link may be passed on by design: it proves nothing about who
            # holds the mailbox, so it cannot claim the address's account.
            raise PickupRefused(PickupRefused.UNKNOWN, language=record.language)
        check_new_password(password, repeated, consent=consent)
        address = mailbox(record.address)
        if self._store.find_recipient_account(address) is not None:
            raise RegistrationRefused(RegistrationRefused.EXISTS)
        try:
            account = self._store.add_recipient_account(
                address=address, password_hash=crypto.hash_password(password), now=self._now()
            )
        except AccountExists:  # registered meanwhile, through another link
            raise RegistrationRefused(RegistrationRefused.EXISTS) from None
        return self._new_session(account)

    def login(self, token: str, password: str) -> str:
        """Log in as the link's address; the new session's token."""
        record, _ = self._genuine(token)
        return log_in(self._store, mailbox(record.address), password, self._now())

    def session_address(self, session: str) -> str | None:
        """The address logged in with this session, while it lasts."""
        account = session_account(self._store, session, self._now())
        return account.address if account is not None else None

    def logout(self, session: str) -> None:
        log_out(self._store, session)

    def _new_session(self, account: RecipientAccount) -> str:
        return new_session(self._store, account, self._now())

    # Checks.

    def _genuine(self, token: str) -> tuple[PickupRecord, MessageCipher]:
        """The recipient and message of a link that works now."""
        if not _TOKEN.fullmatch(token):
            raise PickupRefused(PickupRefused.UNKNOWN)
        record = self._store.find_pickup(sealing.token_hash(token))
        if record is None:
            raise PickupRefused(PickupRefused.UNKNOWN)
        cipher = MessageCipher.unwrap(self._keyring, record.texts.data_key, record.message_id)
        # The hash found the row; the message's key confirms the token is this one.
        if not crypto.constant_time_equal(cipher.pickup_token(record.position), token):
            raise PickupRefused(PickupRefused.UNKNOWN)
        language = record.language
        ended = None
        if record.state is RecipientState.CANCELLED:
            ended = PickupRefused.WITHDRAWN
        elif record.state is RecipientState.REFUSED:
            ended = PickupRefused.REFUSED
        elif record.content_deleted:  # said plainly, even once the message has expired
            ended = PickupRefused.DELETED
        elif record.state is RecipientState.EXPIRED or self._now() >= record.expires_at:
            ended = PickupRefused.EXPIRED
        if ended is not None:
            about = _about(record, cipher, subject=ended != PickupRefused.WITHDRAWN)
            raise PickupRefused(ended, language=language, about=about)
        if record.state not in _READABLE:
            raise PickupRefused(PickupRefused.UNKNOWN, language=language)
        return record, cipher

    def _reader(self, record: PickupRecord, session: str | None) -> RecipientAccount | None:
        """The logged-in account, where the message type asks for one (it must be the
        recipient's own); None for a confidential message."""
        if record.type is MessageType.CONFIDENTIAL:
            return None
        address = mailbox(record.address)
        account = (
            self._store.find_pickup_session(_session_hash(session), self._now())
            if session
            else None
        )
        if account is not None and account.address == address:
            return account
        has_account = self._store.find_recipient_account(address) is not None
        raise PickupRefused(
            PickupRefused.LOGIN if has_account else PickupRefused.REGISTER,
            language=record.language,
        )


def _about(record: PickupRecord, cipher: MessageCipher, *, subject: bool) -> MessageAbout:
    shown = subject and record.type is MessageType.CONFIDENTIAL
    return MessageAbout(
        organisation=record.organisation,
        accepted_at=record.accepted_at,
        subject=_text(cipher.open(sealing.SUBJECT, record.texts.subject)) if shown else None,
    )


def _opened(record: PickupRecord, cipher: MessageCipher) -> OpenedMessage:
    texts = cipher.open_texts(record.texts)
    return OpenedMessage(
        message_id=record.message_id,
        type=record.type,
        organisation=record.organisation,
        language=record.language,
        subject=texts.subject,
        text_body=_text(texts.text_body),
        html_body=_text(texts.html_body) if texts.html_body is not None else None,
        attachments=tuple(_attachment_view(cipher, a) for a in record.attachments),
        accepted_at=record.accepted_at,
        expires_at=record.expires_at,
    )


def _attachment_view(cipher: MessageCipher, attachment: PickupAttachment) -> AttachmentView:
    return AttachmentView(
        position=attachment.position,
        filename=_text(
            cipher.open(sealing.attachment_name(attachment.position), attachment.sealed_filename)
        ),
        content_type=attachment.content_type,
        size=attachment.size,
    )


# A person's account and sessions, on the pickup pages and on the site alike.


def check_new_password(password: str, repeated: str, *, consent: bool) -> None:
    """A new password's rules (RegistrationRefused), and the consent that goes with it."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise RegistrationRefused(RegistrationRefused.PASSWORD_SHORT)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise RegistrationRefused(RegistrationRefused.PASSWORD_LONG)
    if not crypto.constant_time_equal(password, repeated):
        raise RegistrationRefused(RegistrationRefused.PASSWORDS_DIFFER)
    if not consent:
        raise RegistrationRefused(RegistrationRefused.NO_CONSENT)


def log_in(store: RecipientAccountStore, address: str, password: str, now: datetime) -> str:
    """Log in as `address` (a mailbox); the new session's token. A wrong password and an
    address without an account get the same answer, in the same time. SecondFactorNeeded
    if the password was right and the account wants a code too."""
    account = check_password(store, address, password, now)
    if account.second_factor:
        raise SecondFactorNeeded(account.id)
    return new_session(store, account, now)


def check_password(
    store: RecipientAccountStore, address: str, password: str, now: datetime
) -> RecipientAccount:
    """The account of `address` if `password` is its password (LoginRefused if not),
    counted towards its lock like every login."""
    found = store.find_recipient_account(address)
    if found is None:
        crypto.verify_password(password, crypto.dummy_password_hash())  # same time
        raise LoginRefused(LoginRefused.WRONG)
    # Every attempt counts as a failure until the password is found right, in one
    # statement: guesses sent in parallel cannot all slip past the lock.
    if not store.login_attempt(
        found.account.id, now=now, lock_after=MAX_FAILED_LOGINS, lock_until=now + LOGIN_LOCK
    ):
        raise LoginRefused(LoginRefused.LOCKED)
    if len(password) > MAX_PASSWORD_LENGTH or not crypto.verify_password(
        password, found.password_hash
    ):
        raise LoginRefused(LoginRefused.WRONG)
    store.login_succeeded(found.account.id)
    return found.account


def new_session(store: RecipientAccountStore, account: RecipientAccount, now: datetime) -> str:
    return session_for(store, account.id, now)


def session_for(store: RecipientAccountStore, account_id: int, now: datetime) -> str:
    session = crypto.new_secret_token()
    store.add_pickup_session(
        _session_hash(session), account_id, now=now, expires_at=now + SESSION_LIFETIME
    )
    return session


def session_account(
    store: RecipientAccountStore, session: str, now: datetime
) -> RecipientAccount | None:
    """The account logged in with this session, while it lasts."""
    return store.find_pickup_session(_session_hash(session), now)


def log_out(store: RecipientAccountStore, session: str) -> None:
    store.delete_pickup_session(_session_hash(session))


def mailbox(address: str) -> str:
    """One account per mailbox however a sender spells it (casefold, as duplicate
    recipients are folded)."""
    return address.casefold()


def _session_hash(session: str) -> bytes:
    return crypto.sha256(session.encode("utf-8"))


def _text(data: bytes) -> str:
    return data.decode("utf-8")
