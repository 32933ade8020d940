"""Failed sender logins are throttled by username and by client address, on both databases:
a login that must wait is refused before its password costs a scrypt, nobody learns
whether an account exists, and a payroll account is never locked out for long."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soap_service import crypto
from soap_service.domain.accounts import create_account
from soap_service.domain.auth import Authenticator, PasswordType, UsernameToken, VerifiedPasswords
from soap_service.domain.login_throttle import LoginGuard, LoginThrottle
from soap_service.errors import AuthenticationFailed, AuthenticationThrottled
from soap_service.persistence.database import Database
from soap_service.persistence.store import SqlStore

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # the 25th: payroll day
POLICY = LoginThrottle()


def test_the_policy_waits_after_the_free_failures_doubling_up_to_its_caps() -> None:
    seconds = [POLICY.wait(n, by_address=False).total_seconds() for n in range(4, 12)]
    assert seconds == [0, 1, 2, 4, 8, 16, 30, 30]
    assert POLICY.wait(10_000, by_address=False) == timedelta(seconds=30)
    assert POLICY.wait(19, by_address=True) == timedelta(0)
    assert POLICY.wait(20, by_address=True) == timedelta(seconds=1)
    assert POLICY.wait(10_000, by_address=True) == timedelta(minutes=15)


@pytest.fixture(autouse=True)
def fast_password_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(crypto, "_SCRYPT_LOG_N", 10)
    crypto.dummy_password_hash.cache_clear()
    yield
    crypto.dummy_password_hash.cache_clear()


@dataclass
class Setup:
    authenticator: Authenticator
    clock: list[datetime]
    password: str
    checks: list[str]  # the password checks run (scrypt), by password

    def login(self, username: str, password: str, client: str | None = "192.0.2.7") -> str:
        """How a login went: "ok", or the fault code."""
        token = UsernameToken(username=username, password=password, password_type=PasswordType.TEXT)
        try:
            self.authenticator.authenticate(token, client)
        except (AuthenticationFailed, AuthenticationThrottled) as exc:
            return exc.code
        return "ok"

    def advance(self, seconds: float) -> None:
        self.clock[0] += timedelta(seconds=seconds)


@pytest.fixture
def setup(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    database = Database(database_url)
    database.upgrade()
    store = SqlStore(database.engine, database.write_lock, database.kept)
    keyring = crypto.Keyring.load_or_create(tmp_path / "keyring.json")
    clock = [NOW]
    password = create_account(
        store, keyring, username="payroll", organisation="ACME", allow_digest=False, now=lambda: NOW
    ).password
    checks: list[str] = []
    verify = crypto.verify_password

    def counted(given: str, encoded: str) -> bool:
        checks.append(given)
        return verify(given, encoded)

    monkeypatch.setattr(crypto, "verify_password", counted)
    authenticator = Authenticator(
        store=store,
        keyring=keyring,
        verified=VerifiedPasswords(),
        guard=LoginGuard(store=store, policy=POLICY, now=lambda: clock[0]),
        time_window=timedelta(minutes=5),
        now=lambda: clock[0],
    )
    yield Setup(authenticator, clock, password, checks)
    store.close()
    database.dispose()


def test_after_five_failures_a_username_waits_and_its_logins_cost_nothing(setup: Setup) -> None:
    assert [setup.login("payroll", f"guess-{n}") for n in range(5)] == [
        "Client.AuthenticationFailed"
    ] * 5
    assert len(setup.checks) == 5
    assert [setup.login("payroll", f"guess-{n}") for n in range(5, 25)] == [
        "Client.AuthenticationThrottled"
    ] * 20
    assert len(setup.checks) == 5  # 20 more logins, not one more scrypt
    setup.advance(1)
    assert setup.login("payroll", "guess-25") == "Client.AuthenticationFailed"  # checked
    assert setup.login("payroll", "guess-26") == "Client.AuthenticationThrottled"  # 2 s now


def test_the_throttled_fault_says_how_long_to_wait(setup: Setup) -> None:
    for n in range(6):
        setup.login("payroll", f"guess-{n}")  # five failures, then a wait of 1 s
    setup.advance(1)
    setup.login("payroll", "guess-6")  # the sixth failure: 2 s
    token = UsernameToken(username="payroll", password="x", password_type=PasswordType.TEXT)
    with pytest.raises(AuthenticationThrottled, match=r"try again in 2 seconds$"):
        setup.authenticator.authenticate(token, "192.0.2.7")


def test_a_payroll_account_is_never_locked_out_for_more_than_half_a_minute(
    setup: Setup,
) -> None:
    for _ in range(200):  # a determined attacker, always back the moment the wait is over
        setup.login("payroll", "guess", client="198.51.100.1")
        setup.advance(31)
    setup.login("payroll", "guess", client="198.51.100.1")
    assert setup.login("payroll", setup.password) == "Client.AuthenticationThrottled"
    setup.advance(30)
    assert setup.login("payroll", setup.password) == "ok"  # from the payroll's own address


def test_a_password_verified_a_moment_ago_is_not_held_up_by_a_username_block(
    setup: Setup,
) -> None:
    assert setup.login("payroll", setup.password) == "ok"
    for n in range(10):
        setup.login("payroll", f"guess-{n}", client="198.51.100.1")
    assert setup.login("payroll", f"guess-{n}") == "Client.AuthenticationThrottled"
    checks = len(setup.checks)
    assert setup.login("payroll", setup.password) == "ok"  # remembered: no check, no wait
    assert len(setup.checks) == checks


def test_a_success_clears_the_usernames_failures(setup: Setup) -> None:
    for n in range(4):
        setup.login("payroll", f"guess-{n}")
    assert setup.login("payroll", setup.password) == "ok"
    assert [setup.login("payroll", f"again-{n}") for n in range(5)] == [
        "Client.AuthenticationFailed"
    ] * 5  # five free failures again, not one


def test_an_unknown_username_is_throttled_exactly_like_a_known_one(setup: Setup) -> None:
    known = [setup.login("payroll", f"guess-{n}") for n in range(8)]
    unknown = [setup.login("nobody", f"guess-{n}") for n in range(8)]
    assert known == unknown
    assert len(setup.checks) == 10  # five each, against the dummy hash for "nobody"


def test_an_address_guessing_at_many_usernames_waits_and_others_do_not(setup: Setup) -> None:
    guesses = [setup.login(f"user-{n}", "guess", client="203.0.113.9") for n in range(20)]
    assert guesses == ["Client.AuthenticationFailed"] * 20
    assert setup.login("payroll", setup.password, client="203.0.113.9") == (
        "Client.AuthenticationThrottled"
    )
    assert setup.login("payroll", setup.password, client="192.0.2.7") == "ok"


def test_failures_are_forgotten_after_a_quarter_of_an_hour(setup: Setup) -> None:
    for n in range(4):
        setup.login("payroll", f"guess-{n}")
    setup.advance(15 * 60 + 1)
    assert [setup.login("payroll", f"later-{n}") for n in range(5)] == [
        "Client.AuthenticationFailed"
    ] * 5
