"""Throttling failed sender logins, by username and by client address.

A wrong password costs a scrypt (over 100 ms of CPU): without a bound, a few requests a
second keep the cores busy, and guessing goes as fast as the CPU allows. So after 5
failures for a username, or 20 from an address (it may serve many senders), the next
password check for it waits: 1 s, 2 s, 4 s ... A username waits at most half a minute, so
that nobody can lock a payroll account out for longer than a client's retry takes; an
address up to a quarter of an hour. Until the wait is over, a login is refused before
its password is checked.

No answer says whether an account exists: unknown usernames are counted and blocked like
known ones, and keys are SHA-256 digests, never the username itself. A password this
process verified a moment ago (auth.VerifiedPasswords) is not held up by a username's
block: the sender who knows it keeps working while someone else guesses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from soap_service import crypto
from soap_service.domain.ports import LoginFailureStore
from soap_service.errors import AuthenticationThrottled


@dataclass(frozen=True, kw_only=True)
class LoginThrottle:
    """How long failures hold up the next password check: a pure policy."""

    free_username_failures: int = 5
    free_address_failures: int = 20
    first_wait: timedelta = timedelta(seconds=1)
    longest_username_wait: timedelta = timedelta(seconds=30)
    longest_address_wait: timedelta = timedelta(minutes=15)
    # Failures this old are forgotten: a count starts again.
    forget_after: timedelta = timedelta(minutes=15)

    def wait(self, failures: int, *, by_address: bool) -> timedelta:
        """After `failures` in a row: how long the next password check waits."""
        free = self.free_address_failures if by_address else self.free_username_failures
        if failures < free:
            return timedelta(0)
        wait = self.first_wait * (1 << min(failures - free, 20))
        return min(wait, self.longest_address_wait if by_address else self.longest_username_wait)


def username_key(username: str) -> str:
    return "user:" + crypto.sha256(username.casefold().encode("utf-8")).hex()


def address_key(address: str) -> str:
    return "addr:" + crypto.sha256(address.encode("utf-8")).hex()


class LoginGuard:
    """The throttle, applied to each login whose password is to be checked."""

    def __init__(
        self, *, store: LoginFailureStore, policy: LoginThrottle, now: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._policy = policy
        self._now = now

    def attempt(self, username: str, address: str | None) -> LoginAttempt:
        """Raises AuthenticationThrottled while the username or the address must wait."""
        keys = {username_key(username): False}
        if address:
            keys[address_key(address)] = True
        now = self._now()
        known = self._store.login_failures(list(keys))
        waits = [
            found.blocked_until
            for found in known.values()
            if found.blocked_until is not None and found.blocked_until > now
        ]
        if waits:
            seconds = max(1, round((max(waits) - now).total_seconds()))
            raise AuthenticationThrottled(
                "too many failed logins for this username or from this address; "
                f"try again in {seconds} seconds"
            )
        return LoginAttempt(self, keys, username_failed_before=username_key(username) in known)

    def _failed(self, keys: dict[str, bool]) -> None:
        now = self._now()
        forget_before = now - self._policy.forget_after
        for key, by_address in keys.items():
            failures = self._store.add_login_failure(key, now=now, forget_before=forget_before)
            wait = self._policy.wait(failures, by_address=by_address)
            if wait:
                self._store.block_logins(key, now + wait)

    def _succeeded(self, username: str) -> None:
        self._store.clear_login_failures(username)


@dataclass(frozen=True)
class LoginAttempt:
    """One login let through to its password check: how it went."""

    _guard: LoginGuard
    _keys: dict[str, bool]  # key -> whether it is the address's
    username_failed_before: bool

    def failed(self) -> None:
        self._guard._failed(self._keys)

    def succeeded(self) -> None:
        """The username's failures are forgotten; the address's are not (it may have
        guessed at other usernames). Nothing to write if there were none."""
        if self.username_failed_before:
            username = next(key for key, by_address in self._keys.items() if not by_address)
            self._guard._succeeded(username)
