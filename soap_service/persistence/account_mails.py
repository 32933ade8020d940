"""Mails about people's accounts (domain/person_accounts.py): queued by the pages, claimed
by the delivery workers with a lease like sender reports, and the codes and reset links
they carry, used once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from soap_service.crypto import WrappedKey
from soap_service.domain.account_mails import (
    AccountMailJob,
    AccountMailKind,
    AccountMailResult,
    NewAccountMail,
)
from soap_service.domain.model import Language
from soap_service.domain.ports import PendingSecret, RecipientAccount
from soap_service.errors import AccountExists
from soap_service.persistence.queues import LeaseClaim
from soap_service.persistence.recipient_accounts import insert_person
from soap_service.persistence.state_changes import storable
from soap_service.persistence.tables import (
    account_mails,
    pickup_sessions,
    recipient_accounts,
    teams,
)
from soap_service.persistence.transactions import Transactions

_MAILS = account_mails.c


class AccountMailQueries(Transactions):
    def queue_account_mail(self, mail: NewAccountMail) -> None:
        with self._transaction() as connection:
            connection.execute(
                insert(account_mails).values(
                    kind=mail.kind.value,
                    address=mail.address,
                    language=mail.language.value,
                    key_id=mail.secret.key_id if mail.secret else None,
                    sealed_secret=mail.secret.wrapped if mail.secret else None,
                    token_hash=mail.token_hash,
                    failed_codes=0,
                    created_at=mail.created_at,
                    expires_at=mail.expires_at,
                    state="queued",
                    attempts=0,
                    next_attempt_at=mail.created_at,
                    team_id=mail.team_id,
                    role=mail.role,
                )
            )

    def pending_code(self, address: str, now: datetime) -> PendingSecret | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(account_mails)
                .where(
                    _MAILS.address == address,
                    _MAILS.kind == AccountMailKind.ACTIVATION.value,
                    _MAILS.used_at.is_(None),
                    _MAILS.expires_at > now,
                )
                .order_by(_MAILS.id.desc())
                .limit(1)
            ).first()
        return _pending(row) if row is not None else None

    def code_failed(self, mail_id: int) -> None:
        with self._transaction() as connection:
            connection.execute(
                update(account_mails)
                .where(_MAILS.id == mail_id)
                .values(failed_codes=_MAILS.failed_codes + 1)
            )

    def activate_account(
        self, mail_id: int, *, address: str, password_hash: str, now: datetime
    ) -> RecipientAccount:
        try:
            with self._transaction() as connection:
                used = connection.execute(
                    update(account_mails)
                    .where(_MAILS.id == mail_id, _MAILS.used_at.is_(None))
                    .values(used_at=now)
                    .returning(_MAILS.id)
                ).first()
                if used is None:  # used meanwhile by a parallel request: it made the account
                    raise AccountExists("this address has an account")
                account_id = insert_person(
                    connection, address=address, password_hash=password_hash, now=now
                )
        except IntegrityError as exc:
            raise AccountExists("this address has an account") from exc
        return RecipientAccount(id=account_id, address=address, auto_accept=False)

    def pending_reset(self, token_hash: bytes, now: datetime) -> PendingSecret | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(account_mails).where(
                    _MAILS.token_hash == token_hash,
                    _MAILS.kind == AccountMailKind.RESET.value,
                    _MAILS.used_at.is_(None),
                    _MAILS.expires_at > now,
                )
            ).first()
        return _pending(row) if row is not None else None

    def reset_password(
        self, mail_id: int, *, address: str, password_hash: str, now: datetime
    ) -> RecipientAccount | None:
        with self._transaction() as connection:
            used = connection.execute(
                update(account_mails)
                .where(_MAILS.id == mail_id, _MAILS.used_at.is_(None))
                .values(used_at=now)
                .returning(_MAILS.id)
            ).first()
            if used is None:
                return None
            row = connection.execute(
                update(recipient_accounts)
                .where(recipient_accounts.c.address == address)
                .values(password_hash=password_hash, failed_logins=0, locked_until=None)
                .returning(recipient_accounts.c.id, recipient_accounts.c.auto_accept)
            ).first()
            if row is None:
                return None
            # Whoever knew the old password is logged out everywhere.
            connection.execute(
                delete(pickup_sessions).where(pickup_sessions.c.account_id == row.id)
            )
        return RecipientAccount(id=row.id, address=address, auto_accept=bool(row.auto_accept))

    def change_password(self, account_id: int, password_hash: str) -> None:
        with self._transaction() as connection:
            connection.execute(
                update(recipient_accounts)
                .where(recipient_accounts.c.id == account_id)
                .values(password_hash=password_hash)
            )

    # The delivery workers' queue.

    def claim_due_account_mails(
        self, worker: str, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[AccountMailJob]:
        parameters = {"worker": worker, "now": now, "until": lease_until, "limit": limit}
        with self._transaction() as connection:
            ids = _CLAIM(connection, **parameters)
            rows = (
                connection.execute(
                    select(account_mails, teams.c.name.label("team_name"))
                    .outerjoin(teams, teams.c.id == _MAILS.team_id)
                    .where(_MAILS.id.in_(ids))
                    .order_by(_MAILS.id)
                ).all()
                if ids
                else []
            )
        return [_job(row) for row in rows]

    def forget_account_mails(self, *, before: datetime) -> int:
        with self._transaction(durable=False) as connection:
            deleted = connection.execute(delete(account_mails).where(_spent_before(before)))
        return int(deleted.rowcount or 0)

    def record_account_mails(self, worker: str, results: list[AccountMailResult]) -> None:
        """Each attempt's outcome, for mails this worker still holds."""
        with self._transaction() as connection:
            for result in results:
                connection.execute(
                    update(account_mails)
                    .where(
                        _MAILS.id == result.mail_id,
                        _MAILS.lease_owner == worker,
                        _MAILS.state == "queued",
                    )
                    .values(
                        state=result.state,
                        attempts=_MAILS.attempts + 1,
                        next_attempt_at=result.next_attempt_at or result.attempted_at,
                        sent_at=result.attempted_at if result.state == "sent" else None,
                        last_error=None if result.state == "sent" else storable(result.detail),
                        lease_owner=None,
                        lease_until=None,
                    )
                )


def _spent_before(before: datetime) -> Any:
    return or_(_MAILS.used_at < before, _MAILS.expires_at < before)


def _secret(row: Any) -> WrappedKey | None:
    if row.sealed_secret is None:
        return None
    return WrappedKey(key_id=row.key_id, wrapped=bytes(row.sealed_secret))


def _pending(row: Any) -> PendingSecret | None:
    secret = _secret(row)
    if secret is None:
        return None
    return PendingSecret(
        mail_id=row.id, address=row.address, secret=secret, failed_codes=row.failed_codes
    )


def _job(row: Any) -> AccountMailJob:
    return AccountMailJob(
        mail_id=row.id,
        kind=AccountMailKind(row.kind),
        attempts=row.attempts,
        created_at=row.created_at,
        address=row.address,
        language=Language(row.language),
        secret=_secret(row),
        expires_at=row.expires_at,
        team_name=row.team_name,
    )


# A mail whose code or link has expired is not worth sending any more.
_CLAIM = LeaseClaim("account_mails", also="expires_at > :now")
