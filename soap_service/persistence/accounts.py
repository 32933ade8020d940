"""Sender accounts, the UsernameToken nonces they used, and the master keys' check values."""

from __future__ import annotations

import functools
import random
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import ReturningInsert

from soap_service.crypto import WrappedKey
from soap_service.domain.model import Account, Language
from soap_service.domain.ports import AccountRecord, NewAccount
from soap_service.errors import AccountExists
from soap_service.persistence.dialects import POSTGRESQL
from soap_service.persistence.tables import accounts, master_keys, used_nonces
from soap_service.persistence.transactions import Transactions

# Forget old nonces on about one call in this many: cheap, and the table stays small.
NONCE_PRUNE_ONE_IN = 50


class AccountQueries(Transactions):
    def find_account(self, username: str) -> AccountRecord | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(accounts).where(accounts.c.username == username)
            ).first()
        return _record(row) if row is not None else None

    def list_accounts(self) -> list[AccountRecord]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(select(accounts).order_by(accounts.c.username)).all()
        return [_record(row) for row in rows]

    def set_account_disabled(self, username: str, disabled: bool) -> bool:
        return self._change_account(username, disabled=disabled)

    def set_account_password(
        self, username: str, password_hash: str, digest_secret: WrappedKey | None
    ) -> bool:
        return self._change_account(
            username,
            password_hash=password_hash,
            digest_key_id=digest_secret.key_id if digest_secret else None,
            digest_secret=digest_secret.wrapped if digest_secret else None,
        )

    def _change_account(self, username: str, **values: Any) -> bool:
        with self._transaction() as connection:
            changed = connection.execute(
                update(accounts)
                .where(accounts.c.username == username)
                .values(**values)
                .returning(accounts.c.id)
            ).first()
        return changed is not None

    def add_account(self, account: NewAccount) -> Account:
        secret = account.digest_secret
        try:
            with self._transaction() as connection:
                account_id = connection.execute(
                    insert(accounts)
                    .values(
                        username=account.username,
                        organisation=account.organisation,
                        password_hash=account.password_hash,
                        digest_key_id=secret.key_id if secret else None,
                        digest_secret=secret.wrapped if secret else None,
                        disabled=False,
                        show_subject=account.show_subject,
                        created_at=account.created_at,
                        default_language=(
                            account.default_language.value if account.default_language else None
                        ),
                        default_expiry_days=account.default_expiry_days,
                    )
                    .returning(accounts.c.id)
                ).scalar_one()
        except IntegrityError as exc:
            raise AccountExists(f"an account named {account.username!r} exists") from exc
        return Account(
            id=account_id,
            username=account.username,
            organisation=account.organisation,
            default_language=account.default_language,
            default_expiry_days=account.default_expiry_days,
        )

    def remember_nonce(
        self, account_id: int, nonce_digest: bytes, created_at: datetime, forget_before: datetime
    ) -> bool:
        with self._transaction() as connection:
            if random.randrange(NONCE_PRUNE_ONE_IN) == 0:
                connection.execute(
                    delete(used_nonces).where(used_nonces.c.created_at < forget_before)
                )
            result = connection.execute(
                _remember_nonce(connection.dialect.name),
                {"account_id": account_id, "nonce_digest": nonce_digest, "created_at": created_at},
            )
            return result.first() is not None  # nothing returned: the row existed

    # Master keys.

    def known_master_keys(self) -> dict[str, bytes]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(select(master_keys.c.key_id, master_keys.c.check_value))
            return {row.key_id: bytes(row.check_value) for row in rows}

    def add_master_keys(self, check_values: dict[str, bytes], created_at: datetime) -> None:
        if not check_values:
            return
        with self._transaction() as connection:
            connection.execute(
                insert(master_keys),
                [
                    {"key_id": key_id, "check_value": check, "created_at": created_at}
                    for key_id, check in check_values.items()
                ],
            )


@functools.cache
def _remember_nonce(dialect: str) -> ReturningInsert[tuple[int]]:
    # SQLite and PostgreSQL share INSERT ... ON CONFLICT DO NOTHING ... RETURNING, but
    # SQLAlchemy spells it with each dialect's own insert().
    upsert = pg_insert if dialect == POSTGRESQL else sqlite_insert
    return upsert(used_nonces).on_conflict_do_nothing().returning(used_nonces.c.account_id)


def account_of(row: Any) -> Account:
    """An account from a row with the accounts table's columns (`id` the account's)."""
    return Account(
        id=row.id,
        username=row.username,
        organisation=row.organisation,
        default_language=Language(row.default_language) if row.default_language else None,
        default_expiry_days=row.default_expiry_days,
    )


def _record(row: Any) -> AccountRecord:
    return AccountRecord(
        account=account_of(row),
        password_hash=row.password_hash,
        digest_secret=(
            WrappedKey(key_id=row.digest_key_id, wrapped=row.digest_secret)
            if row.digest_secret is not None and row.digest_key_id is not None
            else None
        ),
        disabled=row.disabled,
    )
