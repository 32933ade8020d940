"""Mails about a person's account (domain/person_accounts.py), as the queue holds them:
what each says, and what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from soap_service.crypto import WrappedKey
from soap_service.domain.model import Language


class AccountMailKind(StrEnum):
    ACTIVATION = "activation"  # a sign-up's code
    RESET = "reset"  # a password reset link
    EXISTS = "exists"  # a sign-up for an address that has an account
    INVITATION = "invitation"  # to join a team (domain/teams.py)


@dataclass(frozen=True, kw_only=True)
class NewAccountMail:
    kind: AccountMailKind
    address: str  # a mailbox
    language: Language
    secret: WrappedKey | None  # the code or the link's token, sealed
    token_hash: bytes | None  # a reset link's, to find it by
    created_at: datetime
    expires_at: datetime
    # An invitation's team and the role it gives.
    team_id: int | None = None
    role: str | None = None


@dataclass(frozen=True, kw_only=True)
class AccountMailJob:
    """A claimed account mail, with what it says."""

    mail_id: int
    kind: AccountMailKind
    attempts: int
    created_at: datetime
    address: str
    language: Language
    secret: WrappedKey | None
    expires_at: datetime
    team_name: str | None = None  # an invitation's


@dataclass(frozen=True, kw_only=True)
class AccountMailResult:
    mail_id: int
    state: str  # "sent", "queued" again (next_attempt_at), or "failed" (given up)
    next_attempt_at: datetime | None
    detail: str
    attempted_at: datetime


def mail_secret_context(kind: AccountMailKind, box: str) -> bytes:
    """What a mail's secret is sealed for: its kind and mailbox, so that a code sealed for
    one address opens for no other."""
    return f"account-mail:{kind.value}:{box}".encode()
