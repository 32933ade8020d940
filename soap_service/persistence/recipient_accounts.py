"""Recipients' accounts (personal and registered messages), their failed logins and their
pickup sessions (only each session token's hash is stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from soap_service.crypto import WrappedKey
from soap_service.domain.model import Account
from soap_service.domain.ports import RecipientAccount, RecipientAccountRecord
from soap_service.errors import AccountExists
from soap_service.persistence.accounts import account_of
from soap_service.persistence.tables import (
    UtcDateTime,
    accounts,
    pickup_sessions,
    recipient_accounts,
)
from soap_service.persistence.transactions import Transactions

# Counted in one statement before the password is checked, so that parallel guesses
# cannot pass the lock; a locked account counts nothing (and says so).
_LOGIN_ATTEMPT = text(
    """
    UPDATE recipient_accounts SET failed_logins = failed_logins + 1,
        locked_until = CASE WHEN failed_logins + 1 >= :lock_after THEN :until
                       ELSE locked_until END
    WHERE id = :id AND (locked_until IS NULL OR locked_until <= :now)
    RETURNING id
    """
).bindparams(bindparam("until", type_=UtcDateTime()), bindparam("now", type_=UtcDateTime()))


class RecipientAccountQueries(Transactions):
    def find_recipient_account(self, address: str) -> RecipientAccountRecord | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(recipient_accounts).where(recipient_accounts.c.address == address)
            ).first()
        if row is None:
            return None
        return RecipientAccountRecord(
            account=_recipient_account(row),
            password_hash=row.password_hash,
            failed_logins=row.failed_logins,
            locked_until=row.locked_until,
        )

    def add_recipient_account(
        self, *, address: str, password_hash: str, now: datetime
    ) -> RecipientAccount:
        try:
            with self._transaction() as connection:
                account_id = insert_person(
                    connection, address=address, password_hash=password_hash, now=now
                )
        except IntegrityError as exc:
            raise AccountExists("this address has an account") from exc
        return RecipientAccount(id=account_id, address=address, auto_accept=False)

    def login_attempt(
        self, account_id: int, *, now: datetime, lock_after: int, lock_until: datetime
    ) -> bool:
        with self._transaction() as connection:
            counted = connection.execute(
                _LOGIN_ATTEMPT,
                {"id": account_id, "now": now, "lock_after": lock_after, "until": lock_until},
            ).first()
        return counted is not None

    def login_succeeded(self, account_id: int) -> None:
        with self._transaction() as connection:
            connection.execute(
                update(recipient_accounts)
                .where(recipient_accounts.c.id == account_id)
                .values(failed_logins=0, locked_until=None)
            )

    def set_auto_accept(self, account_id: int, auto_accept: bool) -> None:
        with self._transaction() as connection:
            connection.execute(
                update(recipient_accounts)
                .where(recipient_accounts.c.id == account_id)
                .values(auto_accept=auto_accept)
            )

    # The sender account a person sends from the site with.

    def person_sender(self, person_id: int) -> Account | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(accounts)
                .join(recipient_accounts, recipient_accounts.c.sender_account_id == accounts.c.id)
                .where(recipient_accounts.c.id == person_id)
            ).first()
        return account_of(row) if row is not None else None

    def link_person_sender(self, person_id: int, account_id: int) -> bool:
        with self._transaction() as connection:
            linked = connection.execute(
                update(recipient_accounts)
                .where(
                    recipient_accounts.c.id == person_id,
                    recipient_accounts.c.sender_account_id.is_(None),
                )
                .values(sender_account_id=account_id)
                .returning(recipient_accounts.c.id)
            ).first()
        return linked is not None

    def set_time_zone(self, account_id: int, time_zone: str | None) -> None:
        with self._transaction() as connection:
            connection.execute(
                update(recipient_accounts)
                .where(recipient_accounts.c.id == account_id)
                .values(time_zone=time_zone)
            )

    # The second factor.

    def totp_secret(self, account_id: int) -> tuple[WrappedKey, int | None] | None:
        columns = recipient_accounts.c
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(columns.totp_key_id, columns.totp_secret, columns.totp_last_step).where(
                    columns.id == account_id
                )
            ).first()
        if row is None or row.totp_secret is None:
            return None
        sealed = WrappedKey(key_id=row.totp_key_id, wrapped=bytes(row.totp_secret))
        return sealed, row.totp_last_step

    def set_totp(self, account_id: int, sealed: WrappedKey | None, step: int | None) -> None:
        with self._transaction() as connection:
            connection.execute(
                update(recipient_accounts)
                .where(recipient_accounts.c.id == account_id)
                .values(
                    totp_key_id=sealed.key_id if sealed else None,
                    totp_secret=sealed.wrapped if sealed else None,
                    totp_last_step=step,
                )
            )

    def use_totp_step(self, account_id: int, step: int) -> bool:
        columns = recipient_accounts.c
        with self._transaction() as connection:
            used = connection.execute(
                update(recipient_accounts)
                .where(
                    columns.id == account_id,
                    (columns.totp_last_step.is_(None)) | (columns.totp_last_step < step),
                )
                .values(totp_last_step=step)
                .returning(columns.id)
            ).first()
        return used is not None

    # Sessions.

    def add_pickup_session(
        self, token_hash: bytes, account_id: int, *, now: datetime, expires_at: datetime
    ) -> None:
        with self._transaction() as connection:
            connection.execute(
                delete(pickup_sessions).where(
                    pickup_sessions.c.account_id == account_id,
                    pickup_sessions.c.expires_at <= now,
                )
            )
            connection.execute(
                insert(pickup_sessions).values(
                    token_hash=token_hash,
                    account_id=account_id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def find_pickup_session(self, token_hash: bytes, now: datetime) -> RecipientAccount | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(recipient_accounts)
                .join(pickup_sessions, pickup_sessions.c.account_id == recipient_accounts.c.id)
                .where(
                    pickup_sessions.c.token_hash == token_hash, pickup_sessions.c.expires_at > now
                )
            ).first()
        return _recipient_account(row) if row is not None else None

    def delete_pickup_session(self, token_hash: bytes) -> None:
        with self._transaction() as connection:
            connection.execute(
                delete(pickup_sessions).where(pickup_sessions.c.token_hash == token_hash)
            )


def _recipient_account(row: Any) -> RecipientAccount:
    return RecipientAccount(
        id=row.id,
        address=row.address,
        auto_accept=bool(row.auto_accept),
        time_zone=row.time_zone,
        second_factor=row.totp_secret is not None,
    )


def insert_person(
    connection: Connection, *, address: str, password_hash: str, now: datetime
) -> int:
    """A person's account, with consent given now; its id (IntegrityError if the address
    has one)."""
    return int(
        connection.execute(
            insert(recipient_accounts)
            .values(
                address=address,
                password_hash=password_hash,
                consent_at=now,
                auto_accept=False,
                failed_logins=0,
                created_at=now,
            )
            .returning(recipient_accounts.c.id)
        ).scalar_one()
    )
