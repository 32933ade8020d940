"""An optional second factor for a person's account: a TOTP code from an authenticator app,
asked for after the password on every login (the site's and a message link's).

Turning it on shows a new secret (as text and as an otpauth:// link) and takes effect only
once a code made from it is typed back; the secret waits in the form, sealed for this
person, never in the database before that. The secret is kept sealed by a master key. A
code is good for its 30-second step and the ones either side (clocks drift), and once: the
last step used is kept. Turning it off needs the password and a code. A login whose
password was right but that still needs a code carries a signed, short-lived token to the
code page; wrong codes count like wrong passwords (LoginGuard).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from soap_service import crypto
from soap_service.crypto import WrappedKey
from soap_service.domain.login_throttle import LoginGuard
from soap_service.domain.pickup import session_for
from soap_service.domain.ports import RecipientAccount, SecondFactorStore
from soap_service.errors import SoapServiceError

ISSUER = "soap-service"
# How long the code page of a login waits for its code.
PENDING_LIFETIME = timedelta(minutes=5)
_PENDING = struct.Struct(">qq")  # account id, until (seconds since the epoch)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SecondFactorRefused(SoapServiceError):
    """A wrong, reused or expired code, or a login token that does not work."""

    def __init__(self) -> None:
        super().__init__("the code is wrong")


@dataclass(frozen=True, kw_only=True)
class Enrolment:
    key_text: str  # for typing into an app
    uri: str  # for an app that opens otpauth:// links
    pending: str  # the secret, sealed for this person, for the confirming form


class SecondFactor:
    def __init__(
        self,
        *,
        store: SecondFactorStore,
        keyring: crypto.Keyring,
        guard: LoginGuard,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._guard = guard
        self._now = now

    def enabled(self, person: RecipientAccount) -> bool:
        return self._store.totp_secret(person.id) is not None

    def start(self, person: RecipientAccount) -> Enrolment:
        secret = crypto.new_totp_secret()
        sealed = self._keyring.seal_secret(_enrol_context(person), secret)
        pending = f"{sealed.key_id}.{_text(sealed.wrapped)}"
        return Enrolment(
            key_text=crypto.totp_key_text(secret),
            uri=crypto.totp_uri(secret, person.address, ISSUER),
            pending=pending,
        )

    def confirm(self, person: RecipientAccount, pending: str, code: str) -> None:
        """Turn it on with the secret of `pending`, if `code` is made from it."""
        secret = self._pending_secret(person, pending)
        step = _matching_step(secret, code, self._now(), after=None)
        if step is None:
            raise SecondFactorRefused()
        sealed = self._keyring.seal_secret(_context(person.id), secret)
        self._store.set_totp(person.id, sealed, step)

    def disable(self, person: RecipientAccount, code: str) -> None:
        """Turn it off (the caller checked the password); a code is needed too."""
        self.verify(person.id, code)
        self._store.set_totp(person.id, None, None)

    def verify(self, person_id: int, code: str) -> None:
        """Whether `code` is the account's, now, and not used before (SecondFactorRefused)."""
        found = self._store.totp_secret(person_id)
        if found is None:
            raise SecondFactorRefused()
        sealed, last_step = found
        secret = self._keyring.open_secret(sealed, _context(person_id))
        step = _matching_step(secret, code, self._now(), after=last_step)
        # The step is recorded only if no other login used it meanwhile (one statement).
        if step is None or not self._store.use_totp_step(person_id, step):
            raise SecondFactorRefused()

    # A login between its password and its code.

    def complete_login(self, token: str, code: str, client: str | None) -> str:
        """The new session of a login whose password was right, once its code is; wrong
        codes are throttled as wrong passwords are (AuthenticationThrottled)."""
        person_id = self.pending_person(token)
        attempt = self._guard.attempt(f"code:{person_id}", client)
        try:
            self.verify(person_id, code)
        except SecondFactorRefused:
            attempt.failed()
            raise
        attempt.succeeded()
        return session_for(self._store, person_id, self._now())

    def pending_login(self, person_id: int) -> str:
        until = int((self._now() + PENDING_LIFETIME - _EPOCH).total_seconds())
        data = _PENDING.pack(person_id, until)
        return _text(data + self._keyring.sign_token(b"second-factor-login", data))

    def pending_person(self, token: str) -> int:
        """The account a login token is for, while it lasts (SecondFactorRefused)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise SecondFactorRefused() from None
        data, tag = raw[: _PENDING.size], raw[_PENDING.size :]
        if len(data) != _PENDING.size or not self._keyring.token_is_genuine(
            b"second-factor-login", data, tag
        ):
            raise SecondFactorRefused()
        person_id, until = _PENDING.unpack(data)
        if _EPOCH + timedelta(seconds=until) < self._now():
            raise SecondFactorRefused()
        return int(person_id)

    def _pending_secret(self, person: RecipientAccount, pending: str) -> bytes:
        key_id, _, wrapped = pending.partition(".")
        try:
            sealed = WrappedKey(key_id=key_id, wrapped=base64.urlsafe_b64decode(wrapped + "=="))
            return self._keyring.open_secret(sealed, _enrol_context(person))
        except (ValueError, crypto.DecryptionFailed):
            raise SecondFactorRefused() from None


def _matching_step(secret: bytes, code: str, now: datetime, *, after: int | None) -> int | None:
    typed = "".join(code.split())
    current = int((now - _EPOCH).total_seconds()) // crypto.TOTP_STEP_SECONDS
    for step in (current - 1, current, current + 1):
        if after is not None and step <= after:
            continue
        if crypto.constant_time_equal(typed, crypto.totp_code(secret, step)):
            return step
    return None


def _context(person_id: int) -> bytes:
    return f"totp:{person_id}".encode()


def _enrol_context(person: RecipientAccount) -> bytes:
    # Bound to the person: a form's secret cannot be moved to another account.
    return f"totp-enrol:{person.id}:{person.address}".encode()


def _text(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
