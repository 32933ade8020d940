"""Authenticator: WS-Security UsernameToken checks against a real SqlStore on SQLite."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soap_service import crypto
from soap_service.domain.accounts import create_account
from soap_service.domain.auth import (
    Authenticator,
    PasswordType,
    UsernameToken,
    VerifiedPasswords,
)
from soap_service.domain.login_throttle import LoginGuard, LoginThrottle
from soap_service.domain.model import Account
from soap_service.domain.ports import AccountRecord
from soap_service.errors import AuthenticationFailed
from soap_service.persistence.database import Database
from soap_service.persistence.store import SqlStore

NOW = datetime(2024, 5, 31, 10, 0, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
CREATED = "2024-05-31T10:00:00Z"
BAD_CREDENTIALS = "^the username or password is wrong$"


class CountingStore(SqlStore):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.account_lookups = 0

    def find_account(self, username: str) -> AccountRecord | None:
        self.account_lookups += 1
        return super().find_account(username)


@pytest.fixture(autouse=True)
def fast_password_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # scrypt at N=2**15 takes a few hundred ms per hash; the cost is stored in each hash,
    # so a cheaper cost for the accounts made here exercises the same code, only faster.
    # The cached dummy hash is dropped so that no cheap one outlives these tests.
    monkeypatch.setattr(crypto, "_SCRYPT_LOG_N", 10)
    crypto.dummy_password_hash.cache_clear()
    yield
    crypto.dummy_password_hash.cache_clear()


@dataclass
class Setup:
    database: Database
    store: CountingStore
    keyring: crypto.Keyring
    authenticator: Authenticator
    clock: list[datetime]

    def account(self, username: str, *, allow_digest: bool = True) -> tuple[Account, str]:
        credentials = create_account(
            self.store,
            self.keyring,
            username=username,
            organisation="ACME Payroll",
            allow_digest=allow_digest,
            now=lambda: NOW,
        )
        return credentials.account, credentials.password


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    database = Database(f"sqlite:///{tmp_path / 'auth.sqlite3'}")
    database.upgrade()
    store = CountingStore(database.engine, database.write_lock, database.kept)
    keyring = crypto.Keyring.load_or_create(tmp_path / "keyring.json")
    clock = [NOW]
    authenticator = Authenticator(
        store=store,
        keyring=keyring,
        verified=VerifiedPasswords(),
        guard=LoginGuard(store=store, policy=LoginThrottle(), now=lambda: clock[0]),
        time_window=WINDOW,
        now=lambda: clock[0],
    )
    yield Setup(
        database=database, store=store, keyring=keyring, authenticator=authenticator, clock=clock
    )
    store.close()
    database.dispose()


def text_token(username: str, password: str, **extra: object) -> UsernameToken:
    return UsernameToken(
        username=username, password=password, password_type=PasswordType.TEXT, **extra
    )  # type: ignore[arg-type]


def digest_token(
    username: str, password: str, *, nonce: bytes = b"nonce-0123456789", created: str = CREATED
) -> UsernameToken:
    return UsernameToken(
        username=username,
        password=crypto.username_token_digest(nonce, created, password),
        password_type=PasswordType.DIGEST,
        nonce=nonce,
        created=created,
    )


def test_no_token_is_refused(setup: Setup) -> None:
    with pytest.raises(AuthenticationFailed, match=r"^authentication required") as caught:
        setup.authenticator.authenticate(None)
    assert caught.value.code == "Client.AuthenticationFailed"


def test_unknown_user_is_refused_like_a_wrong_password(setup: Setup) -> None:
    with pytest.raises(AuthenticationFailed, match=BAD_CREDENTIALS):
        setup.authenticator.authenticate(text_token("nobody", "whatever"))


def test_wrong_password_is_refused(setup: Setup) -> None:
    _, password = setup.account("acme")
    with pytest.raises(AuthenticationFailed, match=BAD_CREDENTIALS):
        setup.authenticator.authenticate(text_token("acme", password + "x"))


def test_password_text_is_accepted_and_remembered(setup: Setup) -> None:
    account, password = setup.account("acme")
    setup.store.account_lookups = 0

    assert setup.authenticator.authenticate(text_token("acme", password)) == account
    assert setup.store.account_lookups == 1
    assert setup.authenticator.authenticate(text_token("acme", password)) == account
    assert setup.store.account_lookups == 1  # the second check came from memory

    # A wrong password is not answered from memory.
    with pytest.raises(AuthenticationFailed, match=BAD_CREDENTIALS):
        setup.authenticator.authenticate(text_token("acme", password + "x"))
    assert setup.store.account_lookups == 2


def test_the_password_memory_is_per_username_and_password() -> None:
    verified = VerifiedPasswords()
    account = Account(id=1, username="acme", organisation="ACME")
    verified.put("acme", "secret", account)
    assert verified.get("acme", "secret") == account
    assert verified.get("acme", "secret2") is None
    assert verified.get("acmes", "ecret") is None


def test_the_password_memory_forgets_after_its_ttl() -> None:
    verified = VerifiedPasswords(ttl_seconds=-1.0)
    verified.put("acme", "secret", Account(id=1, username="acme", organisation="ACME"))
    assert verified.get("acme", "secret") is None


def test_password_text_with_a_created_time_in_the_window_is_accepted(setup: Setup) -> None:
    account, password = setup.account("acme")
    token = text_token("acme", password, created="2024-05-31T10:04:00Z")
    assert setup.authenticator.authenticate(token) == account


def test_password_digest_is_accepted(setup: Setup) -> None:
    account, password = setup.account("acme")
    assert setup.authenticator.authenticate(digest_token("acme", password)) == account


def test_password_digest_with_surrounding_whitespace_is_accepted(setup: Setup) -> None:
    account, password = setup.account("acme")
    token = digest_token("acme", password)
    padded = UsernameToken(
        username=token.username,
        password=f"\n  {token.password}  \n",
        password_type=token.password_type,
        nonce=token.nonce,
        created=token.created,
    )
    assert setup.authenticator.authenticate(padded) == account


def test_password_digest_with_the_wrong_password_is_refused(setup: Setup) -> None:
    _, password = setup.account("acme")
    with pytest.raises(AuthenticationFailed, match=BAD_CREDENTIALS):
        setup.authenticator.authenticate(digest_token("acme", password + "x"))


def test_password_digest_of_an_unknown_user_is_refused(setup: Setup) -> None:
    with pytest.raises(AuthenticationFailed, match=BAD_CREDENTIALS):
        setup.authenticator.authenticate(digest_token("nobody", "whatever"))


def test_password_digest_for_a_text_only_account_is_refused(setup: Setup) -> None:
    account, password = setup.account("textonly", allow_digest=False)
    assert setup.authenticator.authenticate(text_token("textonly", password)) == account
    with pytest.raises(AuthenticationFailed, match=BAD_CREDENTIALS):
        setup.authenticator.authenticate(digest_token("textonly", password))


def test_the_digest_secret_is_bound_to_its_username(setup: Setup) -> None:
    _, password = setup.account("acme")
    record = setup.store.find_account("acme")
    assert record is not None and record.digest_secret is not None
    assert password.encode() not in record.digest_secret.wrapped
    with pytest.raises(crypto.DecryptionFailed):
        setup.keyring.open_secret(record.digest_secret, b"password-digest:other")


def test_password_digest_without_nonce_or_created_is_refused(setup: Setup) -> None:
    _, password = setup.account("acme")
    without_created = UsernameToken(
        username="acme",
        password=crypto.username_token_digest(b"nonce-0123456789", "", password),
        password_type=PasswordType.DIGEST,
        nonce=b"nonce-0123456789",
    )
    with pytest.raises(AuthenticationFailed, match=r"needs a Nonce and a Created time"):
        setup.authenticator.authenticate(without_created)
    without_nonce = UsernameToken(
        username="acme",
        password=crypto.username_token_digest(b"", CREATED, password),
        password_type=PasswordType.DIGEST,
        created=CREATED,
    )
    with pytest.raises(AuthenticationFailed, match=r"needs a Nonce and a Created time"):
        setup.authenticator.authenticate(without_nonce)


@pytest.mark.parametrize(
    "created",
    [
        "2024-05-31T09:54:59Z",  # 5 min 1 s old
        "2024-05-31T10:05:01Z",  # 5 min 1 s in the future
        "2024-05-31T12:00:00+01:00",  # 11:00 UTC
        "2024-05-30T10:00:00Z",
    ],
)
def test_a_created_time_outside_the_window_is_refused(setup: Setup, created: str) -> None:
    _, password = setup.account("acme")
    with pytest.raises(
        AuthenticationFailed, match=r"^the UsernameToken Created time is more than 300"
    ):
        setup.authenticator.authenticate(digest_token("acme", password, created=created))


@pytest.mark.parametrize(
    "created", ["2024-05-31T09:55:00Z", "2024-05-31T10:05:00Z", "2024-05-31T12:02:00+02:00"]
)
def test_a_created_time_at_the_edge_of_the_window_is_accepted(setup: Setup, created: str) -> None:
    account, password = setup.account("acme")
    assert setup.authenticator.authenticate(digest_token("acme", password, created=created)) == (
        account
    )


def test_a_created_time_that_is_not_a_date_is_refused(setup: Setup) -> None:
    _, password = setup.account("acme")
    with pytest.raises(AuthenticationFailed, match=r"Created is not an xs:dateTime"):
        setup.authenticator.authenticate(digest_token("acme", password, created="yesterday"))


def test_the_window_follows_the_clock(setup: Setup) -> None:
    account, password = setup.account("acme")
    setup.clock[0] = NOW + timedelta(hours=1)
    with pytest.raises(AuthenticationFailed, match=r"Created time is more than"):
        setup.authenticator.authenticate(digest_token("acme", password))
    fresh = (NOW + timedelta(hours=1)).isoformat()
    assert setup.authenticator.authenticate(digest_token("acme", password, created=fresh)) == (
        account
    )


def test_a_reused_nonce_is_refused_as_a_replay(setup: Setup) -> None:
    account, password = setup.account("acme")
    token = digest_token("acme", password, nonce=b"nonce-AAAAAAAAAA")
    assert setup.authenticator.authenticate(token) == account

    with pytest.raises(AuthenticationFailed, match=r"Nonce was already used \(replay\)$"):
        setup.authenticator.authenticate(token)

    fresh = digest_token("acme", password, nonce=b"nonce-BBBBBBBBBB")
    assert setup.authenticator.authenticate(fresh) == account


def test_a_nonce_is_remembered_per_account(setup: Setup) -> None:
    first, first_password = setup.account("first")
    second, second_password = setup.account("second")
    nonce = b"shared-nonce-123"
    assert setup.authenticator.authenticate(digest_token("first", first_password, nonce=nonce)) == (
        first
    )
    assert setup.authenticator.authenticate(
        digest_token("second", second_password, nonce=nonce)
    ) == (second)


def test_a_nonce_with_password_text_is_checked_against_replay_too(setup: Setup) -> None:
    account, password = setup.account("acme")
    token = text_token("acme", password, nonce=b"text-nonce-12345", created=CREATED)
    assert setup.authenticator.authenticate(token) == account
    with pytest.raises(AuthenticationFailed, match=r"replay"):
        setup.authenticator.authenticate(token)


def test_a_failed_password_does_not_use_up_the_nonce(setup: Setup) -> None:
    account, password = setup.account("acme")
    nonce = b"nonce-CCCCCCCCCC"
    with pytest.raises(AuthenticationFailed, match=BAD_CREDENTIALS):
        setup.authenticator.authenticate(digest_token("acme", password + "x", nonce=nonce))
    assert setup.authenticator.authenticate(digest_token("acme", password, nonce=nonce)) == account


@pytest.mark.parametrize("size", [0, 7, 129])
def test_a_nonce_of_the_wrong_size_is_refused(setup: Setup, size: int) -> None:
    _, password = setup.account("acme")
    with pytest.raises(
        AuthenticationFailed, match=r"^the UsernameToken Nonce must be 8 to 128 bytes$"
    ):
        setup.authenticator.authenticate(digest_token("acme", password, nonce=b"n" * size))


@pytest.mark.parametrize("size", [8, 128])
def test_a_nonce_at_the_size_limits_is_accepted(setup: Setup, size: int) -> None:
    account, password = setup.account("acme")
    assert setup.authenticator.authenticate(digest_token("acme", password, nonce=b"n" * size)) == (
        account
    )


def test_the_nonce_is_stored_as_a_hash(setup: Setup) -> None:
    from sqlalchemy import select

    from soap_service.persistence.tables import UsedNonceRow

    _, password = setup.account("acme")
    nonce = b"nonce-DDDDDDDDDD"
    setup.authenticator.authenticate(digest_token("acme", password, nonce=nonce))
    with setup.database.engine.connect() as connection:
        stored = connection.scalars(select(UsedNonceRow.nonce_digest)).all()
    assert stored == [crypto.sha256(nonce)]
    assert base64.b64encode(nonce) not in stored[0]
