"""Sender accounts: created by an operator, credentials shown once."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from soap_service import crypto
from soap_service.domain.auth import digest_context
from soap_service.domain.model import Account, Language, MessageLimits
from soap_service.domain.ports import AccountStore, NewAccount
from soap_service.errors import ValidationError

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")


@dataclass(frozen=True, kw_only=True)
class NewCredentials:
    account: Account
    password: str


def create_account(
    store: AccountStore,
    keyring: crypto.Keyring,
    *,
    username: str,
    organisation: str | None,
    allow_digest: bool,
    now: Callable[[], datetime],
    show_subject: bool = False,
    default_language: Language | None = None,
    default_expiry_days: int | None = None,
    limits: MessageLimits | None = None,
) -> NewCredentials:
    """Create an account with a generated password; raises AccountExists if the name is taken.

    With `allow_digest` the password is also kept sealed by the master key, because the
    WS-Security PasswordDigest can only be checked by someone who knows the password.
    """
    if not _USERNAME.match(username):
        raise ValidationError("a username is 3 to 64 letters, digits, dots, dashes or underscores")
    limits = limits or MessageLimits()
    if default_expiry_days is not None and not (
        limits.min_expiry_days <= default_expiry_days <= limits.max_expiry_days
    ):
        raise ValidationError(
            f"the expiry is {limits.min_expiry_days} to {limits.max_expiry_days} days"
        )
    password = crypto.generate_password()
    digest_secret = (
        keyring.seal_secret(digest_context(username), password.encode("utf-8"))
        if allow_digest
        else None
    )
    account = store.add_account(
        NewAccount(
            username=username,
            organisation=(organisation or username).strip()[:200],
            password_hash=crypto.hash_password(password),
            digest_secret=digest_secret,
            show_subject=show_subject,
            created_at=now(),
            default_language=default_language,
            default_expiry_days=default_expiry_days,
        )
    )
    return NewCredentials(account=account, password=password)


def reset_password(
    store: AccountStore, keyring: crypto.Keyring, username: str
) -> NewCredentials | None:
    """A new generated password for the account (shown once), in place of the old one; an
    account that accepted PasswordDigest keeps doing so with the new password. None if
    there is no such account. A worker that checked the old password a moment ago may
    accept it until its memory of it expires (auth.VerifiedPasswords)."""
    found = store.find_account(username)
    if found is None:
        return None
    password = crypto.generate_password()
    digest_secret = (
        keyring.seal_secret(digest_context(username), password.encode("utf-8"))
        if found.digest_secret is not None
        else None
    )
    if not store.set_account_password(username, crypto.hash_password(password), digest_secret):
        return None
    return NewCredentials(account=found.account, password=password)
