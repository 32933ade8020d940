"""Sender authentication: WS-Security UsernameToken, PasswordText and PasswordDigest.

PasswordText is checked against the account's scrypt hash. Because scrypt is slow on
purpose, a successful check is remembered in memory for a short time (60 s), under a key
that is a MAC with a per-process random key (the password itself is never kept); an
account disabled meanwhile is refused once that memory expires.

PasswordDigest (Base64(SHA-1(nonce + created + password))) can only be checked by a
party that knows the password, so the account keeps that secret sealed by the master key.
A Created outside the time window, or a nonce used before, is refused.

Failed passwords are throttled by username and by client address (login_throttle.py): a
password check that must wait is refused before it costs anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from soap_service import crypto
from soap_service.domain.login_throttle import LoginGuard
from soap_service.domain.model import Account
from soap_service.domain.ports import AccountStore
from soap_service.errors import AuthenticationFailed

BAD_CREDENTIALS = "the username or password is wrong"


class PasswordType(StrEnum):
    TEXT = "PasswordText"
    DIGEST = "PasswordDigest"


@dataclass(frozen=True, kw_only=True)
class UsernameToken:
    username: str
    password: str
    password_type: PasswordType
    nonce: bytes | None = None
    # Exactly as sent: the digest covers these characters, not a re-formatted time.
    created: str | None = None


class VerifiedPasswords:
    """A bounded, short-lived memory of PasswordText checks that succeeded."""

    def __init__(self, ttl_seconds: float = 60.0, max_entries: int = 4096) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._key = crypto.ProcessKey()
        self._entries: dict[bytes, tuple[float, Account]] = {}
        self._lock = threading.Lock()

    def get(self, username: str, password: str) -> Account | None:
        key = self._key.digest(username, password)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, username: str, password: str, account: Account) -> None:
        key = self._key.digest(username, password)
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self._ttl, account)


def parse_created(created: str) -> datetime:
    try:
        moment = datetime.fromisoformat(created.strip())
    except ValueError:
        raise AuthenticationFailed("the UsernameToken Created is not an xs:dateTime") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Authenticator:
    def __init__(
        self,
        *,
        store: AccountStore,
        keyring: crypto.Keyring,
        verified: VerifiedPasswords,
        guard: LoginGuard,
        time_window: timedelta,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._verified = verified
        self._guard = guard
        self._window = time_window
        self._now = now

    def authenticate(self, token: UsernameToken | None, client: str | None = None) -> Account:
        """The sender the token proves; `client` is the address it came from (throttling)."""
        if token is None:
            raise AuthenticationFailed(
                "authentication required: send a WS-Security UsernameToken header"
            )
        created_at = self._check_created(token)
        account = self._verified_account(token, client)
        if token.nonce is not None:
            self._check_nonce(account, token.nonce, created_at or self._now())
        return account

    def _verified_account(self, token: UsernameToken, client: str | None) -> Account:
        if token.password_type is PasswordType.TEXT:
            cached = self._verified.get(token.username, token.password)
            if cached is not None:  # a password that checked out a moment ago: no wait
                return cached
        attempt = self._guard.attempt(token.username, client)
        try:
            if token.password_type is PasswordType.DIGEST:
                account = self._check_digest(token)
            else:
                account = self._check_text(token)
        except AuthenticationFailed:
            attempt.failed()
            raise
        attempt.succeeded()
        return account

    def _check_created(self, token: UsernameToken) -> datetime | None:
        if token.created is None:
            if token.password_type is PasswordType.DIGEST:
                raise AuthenticationFailed("a PasswordDigest needs a Nonce and a Created time")
            return None
        created_at = parse_created(token.created)
        if abs(self._now() - created_at) > self._window:
            raise AuthenticationFailed(
                "the UsernameToken Created time is more than "
                f"{int(self._window.total_seconds())} seconds away from the service's clock"
            )
        return created_at

    def _check_text(self, token: UsernameToken) -> Account:
        record = self._store.find_account(token.username)
        password_hash = record.password_hash if record else crypto.dummy_password_hash()
        valid = crypto.verify_password(token.password, password_hash)
        if record is None or record.disabled or not valid:
            raise AuthenticationFailed(BAD_CREDENTIALS)
        self._verified.put(token.username, token.password, record.account)
        return record.account

    def _check_digest(self, token: UsernameToken) -> Account:
        if token.nonce is None or token.created is None:
            raise AuthenticationFailed("a PasswordDigest needs a Nonce and a Created time")
        record = self._store.find_account(token.username)
        if record is None or record.disabled or record.digest_secret is None:
            raise AuthenticationFailed(BAD_CREDENTIALS)
        secret = self._keyring.open_secret(record.digest_secret, digest_context(token.username))
        expected = crypto.username_token_digest(token.nonce, token.created, secret.decode("utf-8"))
        if not crypto.constant_time_equal(expected, token.password.strip()):
            raise AuthenticationFailed(BAD_CREDENTIALS)
        return record.account

    def _check_nonce(self, account: Account, nonce: bytes, created_at: datetime) -> None:
        if not 8 <= len(nonce) <= 128:
            raise AuthenticationFailed("the UsernameToken Nonce must be 8 to 128 bytes")
        fresh = self._store.remember_nonce(
            account.id,
            crypto.sha256(nonce),
            created_at,
            forget_before=self._now() - 2 * self._window,
        )
        if not fresh:
            raise AuthenticationFailed("the UsernameToken Nonce was already used (replay)")


def digest_context(username: str) -> bytes:
    return b"password-digest:" + username.encode("utf-8")
