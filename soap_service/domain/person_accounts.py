"""A person's account on the site, without a message's link: sign up with a code sent to
the mailbox (which proves it), reset a forgotten password with a link sent to it, change
the password once logged in.

No answer says whether an address has an account. A sign-up for an address that has one
sends it word of that (with the way to reset the password) instead of a code, and the
page says the same either way; a reset for an address without one sends nothing, and the
page says the same. Each request sends a mail, so they are throttled by address and by
client (3 an hour for an address, 10 from a client, then waits growing to an hour), and
each code takes 5 wrong tries at most.

The account is the one a recipient registers on a pickup page (one per mailbox): whoever
signs up here reads their personal messages with it, and the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import available_timezones

from soap_service import crypto
from soap_service.crypto import WrappedKey
from soap_service.domain.account_mails import (
    AccountMailJob,
    AccountMailKind,
    NewAccountMail,
    mail_secret_context,
)
from soap_service.domain.login_throttle import LoginGuard, LoginThrottle
from soap_service.domain.model import Language
from soap_service.domain.pickup import (
    LoginRefused,
    RegistrationRefused,
    SecondFactorNeeded,
    check_new_password,
    check_password,
    mailbox,
    new_session,
    session_account,
)
from soap_service.domain.ports import (
    AccountMailStore,
    PendingSecret,
    RecipientAccount,
    SecondFactorStore,
)
from soap_service.domain.validation import normalise_address
from soap_service.errors import AccountExists, SoapServiceError

# The zones a person may choose for the times on their pages.
TIME_ZONES = frozenset(available_timezones())
CODE_DIGITS = 8
CODE_LIFETIME = timedelta(minutes=30)
RESET_LIFETIME = timedelta(hours=1)
MAX_CODE_TRIES = 5
# Mails a person may ask for: the LoginGuard's counts, with waits in minutes, not seconds.
MAIL_THROTTLE = LoginThrottle(
    free_username_failures=3,
    free_address_failures=10,
    first_wait=timedelta(minutes=1),
    longest_username_wait=timedelta(hours=1),
    longest_address_wait=timedelta(hours=1),
    forget_after=timedelta(hours=1),
)


class SignupRefused(SoapServiceError):
    """A code or link that does not work: wrong, used, expired or out of tries (the same
    answer for each)."""

    def __init__(self) -> None:
        super().__init__("the code or link is wrong or no longer valid")


class PasswordChangeRefused(SoapServiceError):
    WRONG = "wrong"  # the current password

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PersonStore(AccountMailStore, SecondFactorStore, Protocol):
    """What the person's account pages use."""


class PersonAccounts:
    def __init__(
        self,
        *,
        store: PersonStore,
        keyring: crypto.Keyring,
        mail_guard: LoginGuard,
        login_guard: LoginGuard,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._mail_guard = mail_guard
        self._login_guard = login_guard
        self._now = now

    # Sign-up.

    def request_signup(self, address: str, language: Language, client: str | None) -> str:
        """Send the address a code (or, if it has an account, word of it); its mailbox.
        InvalidAddress if it is not an address; AuthenticationThrottled while too many were
        asked for."""
        box = mailbox(normalise_address(address))
        self._count_mail(box, client)
        now = self._now()
        if self._store.find_recipient_account(box) is not None:
            self._queue(AccountMailKind.EXISTS, box, language, None, None, now, RESET_LIFETIME)
            return box
        code = crypto.new_code(CODE_DIGITS)
        self._queue(AccountMailKind.ACTIVATION, box, language, code, None, now, CODE_LIFETIME)
        return box

    def activate(
        self,
        address: str,
        code: str,
        password: str,
        repeated: str,
        *,
        consent: bool,
        client: str | None,
    ) -> str:
        """Create the account whose code this is; the new session's token. SignupRefused
        for a wrong code; RegistrationRefused for the password or consent."""
        box = mailbox(address.strip())
        check_new_password(password, repeated, consent=consent)
        attempt = self._login_guard.attempt(f"code:{box}", client)
        now = self._now()
        pending = self._store.pending_code(box, now)
        typed = "".join(code.split())
        if pending is None or pending.failed_codes >= MAX_CODE_TRIES:
            attempt.failed()
            raise SignupRefused()
        expected = self._open(AccountMailKind.ACTIVATION, box, pending.secret)
        if not crypto.constant_time_equal(typed, expected):
            self._store.code_failed(pending.mail_id)
            attempt.failed()
            raise SignupRefused()
        attempt.succeeded()
        try:
            account = self._store.activate_account(
                pending.mail_id, address=box, password_hash=crypto.hash_password(password), now=now
            )
        except AccountExists:  # registered meanwhile, through a message's link
            raise RegistrationRefused(RegistrationRefused.EXISTS) from None
        return new_session(self._store, account, now)

    # Password reset.

    def request_reset(self, address: str, language: Language, client: str | None) -> None:
        """Send the address's account a reset link; nothing if it has none (the same
        answer). InvalidAddress, AuthenticationThrottled as for sign-up."""
        box = mailbox(normalise_address(address))
        self._count_mail(box, client)
        if self._store.find_recipient_account(box) is None:
            return
        token = crypto.new_secret_token()
        self._queue(
            AccountMailKind.RESET,
            box,
            language,
            token,
            _token_hash(token),
            self._now(),
            RESET_LIFETIME,
        )

    def reset_address(self, token: str) -> str:
        """The mailbox a working reset link is for; SignupRefused if it does not work."""
        return self._pending_reset(token).address

    def reset_password(self, token: str, password: str, repeated: str) -> str:
        """Set the password of the link's account, end its other sessions; the new
        session's token."""
        check_new_password(password, repeated, consent=True)
        pending = self._pending_reset(token)
        now = self._now()
        account = self._store.reset_password(
            pending.mail_id,
            address=pending.address,
            password_hash=crypto.hash_password(password),
            now=now,
        )
        if account is None:
            raise SignupRefused()
        if self._store.totp_secret(account.id) is not None:
            # The mailbox alone does not pass the second factor: the code page follows.
            raise SecondFactorNeeded(account.id)
        return new_session(self._store, account, now)

    # Logged in.

    def set_time_zone(self, session: str, zone: str) -> bool:
        """The zone the person's pages show times in ("" for the default); False without a
        session or for a zone that does not exist."""
        account = session_account(self._store, session, self._now())
        if account is None or (zone and zone not in TIME_ZONES):
            return False
        self._store.set_time_zone(account.id, zone or None)
        return True

    def session_address(self, session: str) -> str | None:
        """The mailbox logged in with this session, while it lasts."""
        account = session_account(self._store, session, self._now())
        return account.address if account is not None else None

    def change_password(
        self, session: str, current: str, password: str, repeated: str, client: str | None
    ) -> str | None:
        """The session's mailbox, after its password was changed; None without a session.
        PasswordChangeRefused for a wrong current password (counted like a wrong login)."""
        now = self._now()
        account = session_account(self._store, session, now)
        if account is None:
            return None
        check_new_password(password, repeated, consent=True)
        self._check_current(account, current, client)
        self._store.change_password(account.id, crypto.hash_password(password))
        return account.address

    def confirm_password(self, session: str, current: str, client: str | None) -> None:
        """PasswordChangeRefused unless `current` is the session's password (before a
        change to the account's security, such as turning the second factor off)."""
        account = session_account(self._store, session, self._now())
        if account is None:
            raise PasswordChangeRefused(PasswordChangeRefused.WRONG)
        self._check_current(account, current, client)

    # Parts.

    def _check_current(self, account: RecipientAccount, current: str, client: str | None) -> None:
        # Counted like a wrong login, by address and client.
        attempt = self._login_guard.attempt(f"person:{account.address}", client)
        try:
            check_password(self._store, account.address, current, self._now())
        except LoginRefused as refused:
            if refused.reason == LoginRefused.WRONG:
                attempt.failed()
            raise PasswordChangeRefused(PasswordChangeRefused.WRONG) from None
        attempt.succeeded()

    def _count_mail(self, box: str, client: str | None) -> None:
        # Every request counts: each one sends a mail.
        self._mail_guard.attempt(f"mail:{box}", f"mail:{client}" if client else None).failed()

    def _queue(
        self,
        kind: AccountMailKind,
        box: str,
        language: Language,
        secret: str | None,
        token_hash: bytes | None,
        now: datetime,
        lifetime: timedelta,
    ) -> None:
        sealed = None
        if secret is not None:
            sealed = self._keyring.seal_secret(
                mail_secret_context(kind, box), secret.encode("ascii")
            )
        self._store.queue_account_mail(
            NewAccountMail(
                kind=kind,
                address=box,
                language=language,
                secret=sealed,
                token_hash=token_hash,
                created_at=now,
                expires_at=now + lifetime,
            )
        )

    def _pending_reset(self, token: str) -> PendingSecret:
        if len(token) != 43:
            raise SignupRefused()
        pending = self._store.pending_reset(_token_hash(token), self._now())
        if pending is None:
            raise SignupRefused()
        # The hash found it; the sealed token proves the row was made by this service.
        if not crypto.constant_time_equal(
            token, self._open(AccountMailKind.RESET, pending.address, pending.secret)
        ):
            raise SignupRefused()
        return pending

    def _open(self, kind: AccountMailKind, box: str, secret: WrappedKey) -> str:
        return self._keyring.open_secret(secret, mail_secret_context(kind, box)).decode("ascii")


def open_mail_secret(keyring: crypto.Keyring, job: AccountMailJob) -> str | None:
    """The code or link token an account mail carries, for the worker that writes it."""
    if job.secret is None:
        return None
    return keyring.open_secret(job.secret, mail_secret_context(job.kind, job.address)).decode(
        "ascii"
    )


def _token_hash(token: str) -> bytes:
    return crypto.sha256(token.encode("ascii"))
