"""Every query of the service. Driver errors are translated here, at the boundary.

One `SqlStore` serves one request on one pooled connection (SendMessage's insert may run on
a connection kept aside for it instead, see connections.py); each public method is one
transaction and commits before it returns. Core statements, not the ORM: the hot path
runs a few inserts and the ORM's unit of work cost more than the inserts themselves.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from soap_service.crypto import WrappedKey
from soap_service.domain.delivery import DeliveryJob, DeliveryResult
from soap_service.domain.model import (
    Account,
    Language,
    MessageStatus,
    MessageType,
    RecipientState,
    RecipientStatus,
)
from soap_service.domain.ports import (
    AccountRecord,
    NewAccount,
    NewMessage,
    PickupAttachment,
    PickupRecord,
    ReceiptContent,
    RecipientAccount,
    RecipientAccountRecord,
    ReferenceRecord,
    SealedFile,
    SealedTexts,
)
from soap_service.errors import (
    AccountExists,
    InternalError,
    SoapServiceError,
    Unavailable,
)
from soap_service.logs import describe_exception
from soap_service.persistence.connections import Kept, KeptConnections
from soap_service.persistence.tables import (
    AccountRow,
    AttachmentRow,
    EventRow,
    MasterKeyRow,
    MessageRow,
    PickupSessionRow,
    ReceiptRow,
    RecipientAccountRow,
    RecipientRow,
    UsedNonceRow,
    UtcDateTime,
)

log = logging.getLogger(__name__)

# Forget old nonces on about one call in this many: cheap, and the table stays small.
NONCE_PRUNE_ONE_IN = 50


class SqlStore:
    """The queries of one request, on one pooled connection taken at first use (or, for
    SendMessage's insert, a kept one: `_driver_transaction`)."""

    def __init__(
        self,
        engine: Engine,
        write_lock: Callable[[], AbstractContextManager[None]],
        kept: KeptConnections,
    ) -> None:
        self._engine = engine
        self._write_lock = write_lock
        self._kept = kept
        self._connection: Connection | None = None

    @contextmanager
    def _transaction(self, *, read_only: bool = False) -> Iterator[Connection]:
        try:
            with nullcontext() if read_only else self._write_lock():
                if self._connection is None:
                    self._connection = self._engine.connect()
                connection = self._connection
                # SQLite: a reader need not take the write lock (see database.py).
                connection.execution_options(sqlite_begin="DEFERRED" if read_only else "IMMEDIATE")
                with connection.begin():
                    yield connection
        except (SoapServiceError, IntegrityError):
            raise
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            self._lost_connection(exc)
        except SQLAlchemyError as exc:
            log.error("storage error: %s", describe_exception(exc))
            raise InternalError("a storage error occurred") from exc

    @contextmanager
    def _driver_transaction(self, *, single_statement: bool = False) -> Iterator[Any]:
        """One write transaction on the driver's own cursor, for SendMessage's insert.

        Through SQLAlchemy, each statement's events and result set-up cost more CPU than
        SQLite spends storing it, and on SQLite that time is spent holding the one write
        lock that every sender waits for. Here the connection is taken before the lock and
        only BEGIN, the statements and COMMIT run while holding it. The connection is the
        request's own if it has one already, else one kept aside for this (see
        KeptConnections). Driver errors are translated like `_transaction` translates
        SQLAlchemy's. A `single_statement` runs in the driver's autocommit mode
        (PostgreSQL), where it is its own transaction.
        """
        dbapi = self._engine.dialect.loaded_dbapi
        kept: Kept | None = None
        driver: Any = None
        broken = False
        try:
            try:
                if self._connection is not None:
                    driver = self._connection.connection.driver_connection
                else:
                    kept = self._kept.take()
                    driver = kept.connection.driver_connection
                cursor = driver.cursor()
                with self._write_lock():
                    if single_statement:
                        driver.autocommit = True
                        try:
                            yield cursor
                        finally:
                            try:
                                driver.autocommit = False
                            except dbapi.Error:
                                # A broken connection: it must not be used again, least of
                                # all in autocommit mode.
                                broken = True
                    else:
                        if self._engine.dialect.name == "sqlite":
                            cursor.execute("BEGIN IMMEDIATE")  # autocommit mode: database.py
                        try:
                            yield cursor
                            driver.commit()
                        except BaseException:
                            with suppress(dbapi.Error):
                                driver.rollback()
                            raise
            except BaseException as exc:
                lost = isinstance(exc, dbapi.Error) and self._engine.dialect.is_disconnect(
                    exc, driver, None
                )
                self._release(kept, broken=lost or broken, failure=exc)
                raise
        except SoapServiceError:
            raise
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            self._lost_connection(exc)
        except (dbapi.OperationalError, dbapi.InterfaceError) as exc:
            if self._engine.dialect.is_disconnect(exc, driver, None):
                # As SQLAlchemy does for its own statements: every pooled connection
                # is as dead as this one, so the pool starts afresh.
                self._engine.dispose(close=False)
            if self._connection is not None:
                self._connection.invalidate(exc)
            self._lost_connection(exc)
        except (SQLAlchemyError, dbapi.Error) as exc:
            log.error("storage error: %s", describe_exception(exc))
            raise InternalError("a storage error occurred") from exc
        self._release(kept, broken=broken)

    def _release(
        self, kept: Kept | None, *, broken: bool, failure: BaseException | None = None
    ) -> None:
        """After `_driver_transaction`: a kept connection goes back to be kept if all went
        well, else it is discarded; the request's own connection is invalidated if broken
        (a connection left in autocommit mode must not go back to the pool)."""
        if kept is not None:
            if broken or failure is not None:
                self._kept.discard(kept, broken=broken, error=failure)
            else:
                self._kept.give_back(kept)
        elif broken and self._connection is not None:
            self._connection.invalidate(failure)

    def _lost_connection(self, exc: Exception) -> NoReturn:
        # Said once per outage by the worker, and per request in the request log.
        log.debug("database unavailable: %s", describe_exception(exc))
        self.close()  # a broken connection goes back to be replaced
        raise Unavailable("the database is unavailable; retry later") from exc

    def ping(self) -> None:
        with self._transaction(read_only=True) as connection:
            connection.execute(select(1))

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    # Accounts and authentication.

    def find_account(self, username: str) -> AccountRecord | None:
        accounts = AccountRow.__table__
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(accounts).where(accounts.c.username == username)
            ).first()
        if row is None:
            return None
        return AccountRecord(
            account=Account(id=row.id, username=row.username, organisation=row.organisation),
            password_hash=row.password_hash,
            digest_secret=(
                WrappedKey(key_id=row.digest_key_id, wrapped=row.digest_secret)
                if row.digest_secret is not None and row.digest_key_id is not None
                else None
            ),
            disabled=row.disabled,
        )

    def add_account(self, account: NewAccount) -> Account:
        accounts = AccountRow.__table__
        try:
            with self._transaction() as connection:
                account_id = connection.execute(
                    insert(accounts)
                    .values(
                        username=account.username,
                        organisation=account.organisation,
                        password_hash=account.password_hash,
                        digest_key_id=account.digest_secret.key_id
                        if account.digest_secret
                        else None,
                        digest_secret=account.digest_secret.wrapped
                        if account.digest_secret
                        else None,
                        disabled=False,
                        show_subject=account.show_subject,
                        created_at=account.created_at,
                    )
                    .returning(accounts.c.id)
                ).scalar_one()
        except IntegrityError as exc:
            raise AccountExists(f"an account named {account.username!r} exists") from exc
        return Account(id=account_id, username=account.username, organisation=account.organisation)

    def remember_nonce(
        self, account_id: int, nonce_digest: bytes, created_at: datetime, forget_before: datetime
    ) -> bool:
        nonces = UsedNonceRow.__table__
        with self._transaction() as connection:
            if random.randrange(NONCE_PRUNE_ONE_IN) == 0:
                connection.execute(delete(nonces).where(nonces.c.created_at < forget_before))
            result = connection.execute(
                _statements(connection.dialect.name).remember_nonce,
                {"account_id": account_id, "nonce_digest": nonce_digest, "created_at": created_at},
            )
            return result.first() is not None  # nothing returned: the row existed

    # Master keys.

    def known_master_keys(self) -> dict[str, bytes]:
        keys = MasterKeyRow.__table__
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(select(keys.c.key_id, keys.c.check_value)).all()
        return {row.key_id: bytes(row.check_value) for row in rows}

    def add_master_keys(self, check_values: dict[str, bytes], created_at: datetime) -> None:
        if not check_values:
            return
        with self._transaction() as connection:
            connection.execute(
                insert(MasterKeyRow.__table__),
                [
                    {"key_id": key_id, "check_value": check, "created_at": created_at}
                    for key_id, check in check_values.items()
                ],
            )

    # Delivery.

    def claim_due(
        self, worker: str, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[DeliveryJob]:
        """Lease up to `limit` recipients that are due, in one atomic step: on PostgreSQL
        one statement skipping rows other workers hold; on SQLite inside the one write
        transaction SQLite allows."""
        parameters = {"worker": worker, "now": now, "until": lease_until, "limit": limit}
        with self._transaction() as connection:
            if connection.dialect.name == "postgresql":
                rows = connection.execute(_CLAIM_POSTGRESQL, parameters).all()
            else:
                ids = connection.execute(_CLAIM_SQLITE, parameters).scalars().all()
                rows = connection.execute(_JOB_DETAILS, {"ids": list(ids)}).all() if ids else []
        return [_job(row) for row in rows]

    def extend_leases(self, worker: str, recipient_ids: list[int], until: datetime) -> set[int]:
        """Renew this worker's leases; the ids it still holds (the others were taken back:
        expired, or their lease ran out and another worker claimed them)."""
        if not recipient_ids:
            return set()
        with self._transaction() as connection:
            return set(
                connection.execute(
                    _EXTEND_LEASES, {"ids": recipient_ids, "worker": worker, "until": until}
                ).scalars()
            )

    def release_leases(self, worker: str, recipient_ids: list[int]) -> None:
        """Give back recipients claimed but not tried (the worker is stopping): due again
        at once for any worker, with no attempt counted."""
        if not recipient_ids:
            return
        recipients = RecipientRow.__table__
        with self._transaction() as connection:
            connection.execute(
                update(recipients)
                .where(recipients.c.id.in_(recipient_ids), recipients.c.lease_owner == worker)
                .values(lease_owner=None, leased_until=None)
            )

    def record_results(self, worker: str, results: list[DeliveryResult]) -> int:
        """Record each attempt; returns how many changed a recipient's state.

        A result only changes a recipient this worker still holds and that is still
        waiting for delivery: states never move backwards, and an attempt that comes late
        (the lease passed to another worker, or the message expired or was withdrawn
        meanwhile) is written to the journal only.
        """
        if not results:
            return 0
        with self._transaction() as connection:
            # Three statements for the whole batch: which of them this worker still holds
            # (locked on PostgreSQL, so that no claim takes them meanwhile), their updates,
            # and one journal event each.
            held_query = _HELD_POSTGRESQL if connection.dialect.name == "postgresql" else _HELD
            ids = [result.job.recipient_id for result in results]
            held = set(connection.execute(held_query, {"ids": ids, "worker": worker}).scalars())
            updates = [
                {
                    "id": result.job.recipient_id,
                    "state": result.decision.state.value,
                    "at": result.attempted_at,
                    "next": result.decision.next_attempt_at,
                    "error": (
                        None
                        if result.decision.state is RecipientState.SENT
                        else _storable(result.decision.detail)
                    ),
                }
                for result in results
                if result.job.recipient_id in held
            ]
            if updates:
                connection.execute(_RECORD_ATTEMPT, updates)
            connection.execute(
                insert(EventRow.__table__),
                [
                    {
                        "message_id": result.job.message_id,
                        "recipient_id": result.job.recipient_id,
                        "at": result.attempted_at,
                        "kind": (
                            result.decision.state.value
                            if result.job.recipient_id in held
                            else "late-attempt"
                        ),
                        "detail": _storable(result.decision.detail),
                    }
                    for result in results
                ],
            )
        return len(updates)

    def expire_due(self, *, now: datetime, limit: int) -> int:
        """Recipients not final when their message expires become expired; at most
        `limit` in one transaction (the caller repeats while it gets a full batch)."""
        return self._change_states(
            (_EXPIRE, _EXPIRE_POSTGRESQL),
            {"now": now, "limit": limit},
            RecipientState.EXPIRED,
            "the message expired",
            now,
        )

    # Messages.

    def insert_message(self, message: NewMessage) -> ReferenceRecord | None:
        """Store the message, its attachments, recipients (queued) and journal events in one
        transaction; or, if the account already has a message with this reference, store
        nothing and return that message's reference record.

        The unique (account, reference) index decides between concurrent senders: the
        loser's INSERT waits for the winner's commit, then does nothing.
        """
        if self._engine.dialect.name == "postgresql":
            parameters = _postgresql_insert_parameters(message, self._engine.dialect)
            # One statement is one transaction: no BEGIN and COMMIT round trips.
            with self._driver_transaction(single_statement=True) as cursor:
                cursor.execute(
                    _postgresql_insert_message(len(message.attachments)), parameters, prepare=True
                )
                inserted = cursor.fetchone() is not None
        else:
            steps = _sqlite_insert_steps(message, self._engine.dialect)
            with self._driver_transaction() as cursor:
                inserted = _run_sqlite_insert(cursor, steps)
        if inserted:
            return None
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                _statements(connection.dialect.name).find_reference,
                {"account_id": message.account_id, "reference": message.reference},
            ).one()
        return ReferenceRecord(message_id=row.id, key_id=row.key_id, fingerprint=row.fingerprint)

    def message_status(
        self, account_id: int, *, message_id: str | None = None, reference: str | None = None
    ) -> MessageStatus | None:
        messages, recipients = MessageRow.__table__, RecipientRow.__table__
        query = select(
            messages.c.id,
            messages.c.reference,
            messages.c.type,
            messages.c.language,
            messages.c.accepted_at,
            messages.c.expires_at,
        ).where(messages.c.account_id == account_id)
        if message_id is not None:
            query = query.where(messages.c.id == message_id)
        if reference is not None:
            query = query.where(messages.c.reference == reference)
        with self._transaction(read_only=True) as connection:
            message = connection.execute(query).first()
            if message is None:
                return None
            rows = connection.execute(
                select(recipients)
                .where(recipients.c.message_id == message.id)
                .order_by(recipients.c.position)
            ).all()
        return MessageStatus(
            message_id=message.id,
            reference=message.reference,
            type=MessageType(message.type),
            language=Language(message.language),
            accepted_at=message.accepted_at,
            expires_at=message.expires_at,
            recipients=tuple(
                RecipientStatus(
                    address=row.address,
                    state=RecipientState(row.state),
                    attempts=row.attempts,
                    state_changed_at=row.state_changed_at,
                    last_attempt_at=row.last_attempt_at,
                    next_attempt_at=row.next_attempt_at,
                    last_error=row.last_error,
                )
                for row in rows
            ),
        )

    def cancel_message(self, message_id: str, now: datetime) -> int:
        return self._change_states(
            (_CANCEL, _CANCEL_POSTGRESQL),
            {"message_id": message_id, "now": now},
            RecipientState.CANCELLED,
            "withdrawn by the sender",
            now,
        )

    def _change_states(
        self,
        statements: tuple[Any, Any],
        parameters: dict[str, Any],
        state: RecipientState,
        detail: str,
        now: datetime,
    ) -> int:
        """Run a state change (SQLite's statement, or PostgreSQL's, which locks in id
        order) that returns (id, message_id) of each recipient it changed, and journal
        each change in the same transaction; how many changed."""
        with self._transaction() as connection:
            sqlite, postgresql = statements
            statement = postgresql if connection.dialect.name == "postgresql" else sqlite
            rows = connection.execute(statement, parameters).all()
            _journal(connection, rows, state, detail, now)
        return len(rows)

    # Pickup.

    def find_pickup(self, token_hash: bytes) -> PickupRecord | None:
        messages, recipients = MessageRow.__table__, RecipientRow.__table__
        accounts, attachments = AccountRow.__table__, AttachmentRow.__table__
        query = (
            select(
                recipients.c.id.label("recipient_id"),
                recipients.c.position,
                recipients.c.address,
                recipients.c.state,
                messages.c.id.label("message_id"),
                messages.c.type,
                messages.c.language,
                messages.c.accepted_at,
                messages.c.expires_at,
                messages.c.key_id,
                messages.c.wrapped_key,
                messages.c.sealed_subject,
                messages.c.sealed_text_body,
                messages.c.sealed_html_body,
                accounts.c.organisation,
            )
            .join(messages, messages.c.id == recipients.c.message_id)
            .join(accounts, accounts.c.id == messages.c.account_id)
            .where(recipients.c.token_hash == token_hash)
        )
        with self._transaction(read_only=True) as connection:
            row = connection.execute(query).first()
            if row is None:
                return None
            files = connection.execute(
                select(
                    attachments.c.position,
                    attachments.c.sealed_filename,
                    attachments.c.content_type,
                    attachments.c.size,
                )
                .where(attachments.c.message_id == row.message_id)
                .order_by(attachments.c.position)
            ).all()
        return PickupRecord(
            recipient_id=row.recipient_id,
            message_id=row.message_id,
            position=row.position,
            address=row.address,
            state=RecipientState(row.state),
            type=MessageType(row.type),
            language=Language(row.language),
            organisation=row.organisation,
            accepted_at=row.accepted_at,
            expires_at=row.expires_at,
            texts=_sealed_texts(row),
            attachments=tuple(
                PickupAttachment(
                    position=file.position,
                    sealed_filename=bytes(file.sealed_filename),
                    content_type=file.content_type,
                    size=file.size,
                )
                for file in files
            ),
        )

    def attachment_content(self, message_id: str, position: int) -> bytes | None:
        attachments = AttachmentRow.__table__
        with self._transaction(read_only=True) as connection:
            content = connection.execute(
                select(attachments.c.sealed_content).where(
                    attachments.c.message_id == message_id, attachments.c.position == position
                )
            ).scalar()
        return bytes(content) if content is not None else None

    def mark_opened(self, recipient_id: int, now: datetime) -> bool:
        return bool(
            self._change_states(
                (_MARK_OPENED, _MARK_OPENED),
                {"id": recipient_id, "now": now},
                RecipientState.OPENED,
                "opened on the pickup page",
                now,
            )
        )

    def decide(self, recipient_id: int, state: RecipientState, detail: str, now: datetime) -> bool:
        return bool(
            self._change_states(
                (_DECIDE, _DECIDE),
                {"id": recipient_id, "state": state.value, "now": now},
                state,
                detail,
                now,
            )
        )

    # Recipient accounts.

    def find_recipient_account(self, address: str) -> RecipientAccountRecord | None:
        accounts = RecipientAccountRow.__table__
        with self._transaction(read_only=True) as connection:
            row = connection.execute(select(accounts).where(accounts.c.address == address)).first()
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
        accounts = RecipientAccountRow.__table__
        try:
            with self._transaction() as connection:
                account_id = connection.execute(
                    insert(accounts)
                    .values(
                        address=address,
                        password_hash=password_hash,
                        consent_at=now,
                        auto_accept=False,
                        failed_logins=0,
                        created_at=now,
                    )
                    .returning(accounts.c.id)
                ).scalar_one()
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
        accounts = RecipientAccountRow.__table__
        with self._transaction() as connection:
            connection.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(failed_logins=0, locked_until=None)
            )

    def set_auto_accept(self, account_id: int, auto_accept: bool) -> None:
        accounts = RecipientAccountRow.__table__
        with self._transaction() as connection:
            connection.execute(
                update(accounts).where(accounts.c.id == account_id).values(auto_accept=auto_accept)
            )

    def add_pickup_session(
        self, token_hash: bytes, account_id: int, *, now: datetime, expires_at: datetime
    ) -> None:
        sessions = PickupSessionRow.__table__
        with self._transaction() as connection:
            connection.execute(
                delete(sessions).where(
                    sessions.c.account_id == account_id, sessions.c.expires_at <= now
                )
            )
            connection.execute(
                insert(sessions).values(
                    token_hash=token_hash,
                    account_id=account_id,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def find_pickup_session(self, token_hash: bytes, now: datetime) -> RecipientAccount | None:
        sessions, accounts = PickupSessionRow.__table__, RecipientAccountRow.__table__
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(accounts)
                .join(sessions, sessions.c.account_id == accounts.c.id)
                .where(sessions.c.token_hash == token_hash, sessions.c.expires_at > now)
            ).first()
        return _recipient_account(row) if row is not None else None

    def delete_pickup_session(self, token_hash: bytes) -> None:
        sessions = PickupSessionRow.__table__
        with self._transaction() as connection:
            connection.execute(delete(sessions).where(sessions.c.token_hash == token_hash))

    # Receipts.

    def receipt_content(self, message_id: str) -> ReceiptContent:
        messages, accounts = MessageRow.__table__, AccountRow.__table__
        attachments = AttachmentRow.__table__
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(messages, accounts.c.organisation, accounts.c.username)
                .join(accounts, accounts.c.id == messages.c.account_id)
                .where(messages.c.id == message_id)
            ).one()
            files = connection.execute(
                select(attachments)
                .where(attachments.c.message_id == message_id)
                .order_by(attachments.c.position)
            ).all()
        return ReceiptContent(
            message_id=row.id,
            reference=row.reference,
            organisation=row.organisation,
            username=row.username,
            accepted_at=row.accepted_at,
            expires_at=row.expires_at,
            texts=_sealed_texts(row),
            attachments=tuple(
                SealedFile(
                    position=file.position,
                    sealed_filename=bytes(file.sealed_filename),
                    size=file.size,
                    sealed_content=bytes(file.sealed_content),
                )
                for file in files
            ),
        )

    def find_receipt(
        self, message_id: str, position: int, kind: str
    ) -> tuple[datetime, bytes] | None:
        receipts = ReceiptRow.__table__
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(receipts.c.issued_at, receipts.c.pdf).where(
                    receipts.c.message_id == message_id,
                    receipts.c.position == position,
                    receipts.c.kind == kind,
                )
            ).first()
        return (row.issued_at, bytes(row.pdf)) if row is not None else None

    def add_receipt(
        self, message_id: str, position: int, kind: str, *, issued_at: datetime, pdf: bytes
    ) -> tuple[datetime, bytes]:
        receipts = ReceiptRow.__table__
        try:
            with self._transaction() as connection:
                connection.execute(
                    insert(receipts).values(
                        message_id=message_id,
                        position=position,
                        kind=kind,
                        issued_at=issued_at,
                        pdf=pdf,
                    )
                )
        except IntegrityError:
            pass  # kept by another request meanwhile: that one counts
        kept = self.find_receipt(message_id, position, kind)
        assert kept is not None
        return kept


@dataclass(frozen=True)
class _Statements:
    find_reference: Any
    remember_nonce: Any


@functools.cache
def _statements(dialect: str) -> _Statements:
    # SQLite and PostgreSQL share INSERT ... ON CONFLICT DO NOTHING ... RETURNING.
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    messages = MessageRow.__table__
    nonces = UsedNonceRow.__table__
    return _Statements(
        find_reference=select(messages.c.id, messages.c.key_id, messages.c.fingerprint).where(
            messages.c.account_id == bindparam("account_id"),
            messages.c.reference == bindparam("reference"),
        ),
        remember_nonce=upsert(nonces).on_conflict_do_nothing().returning(nonces.c.account_id),
    )


# SendMessage's insert is the service's hot path. It is written in the drivers' own SQL and
# run on the driver's cursor (`_driver_transaction`): compiling and processing Core
# statements cost more CPU than SQLite spends storing them, and on PostgreSQL one statement
# is one round trip instead of six.

_MESSAGE_COLUMNS = (
    "id, account_id, reference, type, language, accepted_at, expires_at, key_id, "
    "wrapped_key, fingerprint, sealed_subject, sealed_text_body, sealed_html_body, "
    "content_bytes"
)
_ACCEPTED = "accepted"
_WAITING = "waiting for delivery"


def _message_values(message: NewMessage, timestamp: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The messages row, in the order of _MESSAGE_COLUMNS."""
    return (
        message.message_id,
        message.account_id,
        message.reference,
        message.type.value,
        message.language.value,
        timestamp(message.accepted_at),
        timestamp(message.expires_at),
        message.data_key.key_id,
        message.data_key.wrapped,
        message.fingerprint,
        message.sealed_subject,
        message.sealed_text_body,
        message.sealed_html_body,
        message.content_bytes,
    )


def _accepted_detail(message: NewMessage) -> str:
    return (
        f"{len(message.recipients)} recipient(s), {len(message.attachments)} attachment(s), "
        f"{message.content_bytes} bytes"
    )


@functools.cache
def _timestamp_format(dialect: Dialect) -> Callable[[datetime], Any]:
    """How the driver receives a UtcDateTime value, exactly as SQLAlchemy would send it."""
    process = UtcDateTime().bind_processor(dialect)
    return process if process is not None else lambda value: value


_SQLITE_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ("
    + ", ".join("?" for _ in _MESSAGE_COLUMNS.split(","))
    + ") ON CONFLICT (account_id, reference) DO NOTHING RETURNING id"
)
_SQLITE_INSERT_ATTACHMENT = (
    "INSERT INTO attachments (message_id, position, sealed_filename, content_type, size, "
    "sealed_content) VALUES (?, ?, ?, ?, ?, ?)"
)
_SQLITE_INSERT_RECIPIENT = (
    "INSERT INTO recipients (message_id, position, address, token_hash, state, attempts, "
    "state_changed_at) VALUES (?, ?, ?, ?, 'queued', 0, ?)"
)
# The journal: the message's acceptance, then each recipient's queueing, in position order.
_SQLITE_INSERT_ACCEPTED_EVENT = (
    f"INSERT INTO events (message_id, recipient_id, at, kind, detail) "
    f"VALUES (?, NULL, ?, '{_ACCEPTED}', ?)"
)
_SQLITE_INSERT_QUEUED_EVENTS = f"""
INSERT INTO events (message_id, recipient_id, at, kind, detail)
SELECT message_id, id, state_changed_at, 'queued', '{_WAITING}'
FROM recipients WHERE message_id = ? ORDER BY position
"""


@dataclass(frozen=True)
class _SqliteInsert:
    """SendMessage's rows for SQLite, built before the write lock is taken."""

    message: tuple[Any, ...]
    attachments: list[tuple[Any, ...]]
    recipients: list[tuple[Any, ...]]
    accepted_event: tuple[Any, ...]
    message_id: str


def _sqlite_insert_steps(message: NewMessage, dialect: Dialect) -> _SqliteInsert:
    values = _message_values(message, _timestamp_format(dialect))
    message_id, accepted_at = message.message_id, values[5]
    return _SqliteInsert(
        message=values,
        attachments=[
            (
                message_id,
                attachment.position,
                attachment.sealed_filename,
                attachment.content_type,
                attachment.size,
                attachment.sealed_content,
            )
            for attachment in message.attachments
        ],
        recipients=[
            (message_id, position, address, token_hash, accepted_at)
            for position, (address, token_hash) in enumerate(
                zip(message.recipients, message.recipient_token_hashes, strict=True), start=1
            )
        ],
        accepted_event=(message_id, accepted_at, _accepted_detail(message)),
        message_id=message_id,
    )


def _run_sqlite_insert(cursor: Any, steps: _SqliteInsert) -> bool:
    """False if the reference was taken: then nothing is stored."""
    if cursor.execute(_SQLITE_INSERT_MESSAGE, steps.message).fetchone() is None:
        return False
    if steps.attachments:
        cursor.executemany(_SQLITE_INSERT_ATTACHMENT, steps.attachments)
    cursor.executemany(_SQLITE_INSERT_RECIPIENT, steps.recipients)
    cursor.execute(_SQLITE_INSERT_ACCEPTED_EVENT, steps.accepted_event)
    cursor.execute(_SQLITE_INSERT_QUEUED_EVENTS, (steps.message_id,))
    return True


# One statement: data-modifying CTEs insert the message, then (only if it was new) its
# attachments, recipients and journal; foreign keys are checked at its end. Attachments come
# as rows of scalar parameters, recipients as two texts split in SQL: psycopg dumps array
# parameters in Python, which cost more than the rest of the client's side of the statement
# (0.1 ms a message); its scalar dumpers are C. Bytes go in binary (%b): in text they would
# be hex-escaped, 30 MB becoming 60. One statement per number of attachments (0 to 20),
# each prepared once per connection.
_RECIPIENT_SEPARATOR = "\n"  # a valid address never holds a line break


@functools.cache
def _postgresql_insert_message(attachments: int) -> bytes:
    rows = ", ".join(
        f"({position}, %b::bytea, %s::text, %s::bigint, %b::bytea)"
        for position in range(1, attachments + 1)
    )
    insert_attachments = f"""
, new_attachments AS (
    INSERT INTO attachments
        (message_id, position, sealed_filename, content_type, size, sealed_content)
    SELECT new_message.id, a.position, a.sealed_filename, a.content_type, a.size,
           a.sealed_content
    FROM new_message, (VALUES {rows})
         AS a(position, sealed_filename, content_type, size, sealed_content)
)"""
    return f"""
WITH new_message AS (
    INSERT INTO messages ({_MESSAGE_COLUMNS})
    VALUES ({", ".join("%s" for _ in _MESSAGE_COLUMNS.split(","))})
    ON CONFLICT (account_id, reference) DO NOTHING
    RETURNING id, accepted_at
){insert_attachments if attachments else ""}, new_recipients AS (
    INSERT INTO recipients
        (message_id, position, address, token_hash, state, attempts, state_changed_at)
    SELECT new_message.id, r.position, r.address, decode(r.token_hash, 'hex'), 'queued', 0,
           new_message.accepted_at
    FROM new_message,
         unnest(string_to_array(%s, E'\\n'), string_to_array(%s, ','))
         WITH ORDINALITY AS r(address, token_hash, position)
    RETURNING id, position
)
INSERT INTO events (message_id, recipient_id, at, kind, detail)
SELECT message_id, recipient_id, at, kind, detail FROM (
    SELECT new_message.id AS message_id, NULL::bigint AS recipient_id,
           new_message.accepted_at AS at, '{_ACCEPTED}' AS kind, %s AS detail, 0 AS n
    FROM new_message
    UNION ALL
    SELECT new_message.id, new_recipients.id, new_message.accepted_at, 'queued',
           '{_WAITING}', new_recipients.position
    FROM new_message, new_recipients
) AS journal ORDER BY n
RETURNING message_id
""".encode()


def _postgresql_insert_parameters(message: NewMessage, dialect: Dialect) -> tuple[Any, ...]:
    """In the order of the statement's placeholders. Attachments are numbered 1, 2 ...
    in order (SealedAttachment.position), as the statement numbers its rows."""
    if any(_RECIPIENT_SEPARATOR in address for address in message.recipients):
        raise InternalError("a recipient address holds a line break")  # validation refuses it
    attachments: list[Any] = []
    for attachment in message.attachments:
        attachments += (
            attachment.sealed_filename,
            attachment.content_type,
            attachment.size,
            attachment.sealed_content,
        )
    return (
        *_message_values(message, _timestamp_format(dialect)),
        *attachments,
        _RECIPIENT_SEPARATOR.join(message.recipients),
        ",".join(token.hex() for token in message.recipient_token_hashes),
        _accepted_detail(message),
    )


# Delivery statements. Due: waiting, its time has come, nobody holds it, not expired.

_WAITING_STATES = "('queued', 'deferred')"
_DUE = f"""
    r.state IN {_WAITING_STATES}
    AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= :now)
    AND (r.leased_until IS NULL OR r.leased_until < :now)
    AND m.expires_at > :now
"""
_JOB_COLUMNS = """
    r.id, r.message_id, r.position, r.address, r.attempts, m.accepted_at, m.expires_at,
    m.type, m.language, a.organisation, a.show_subject, m.sealed_subject, m.key_id,
    m.wrapped_key
"""
_TIMES = (
    bindparam("now", type_=UtcDateTime()),
    bindparam("until", type_=UtcDateTime()),
)
_JOB_TYPES = {"accepted_at": UtcDateTime(), "expires_at": UtcDateTime()}

_CLAIM_POSTGRESQL = (
    text(
        f"""
        WITH due AS (
            SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id
            WHERE {_DUE}
            ORDER BY r.id
            LIMIT :limit
            FOR UPDATE OF r SKIP LOCKED
        )
        UPDATE recipients r SET lease_owner = :worker, leased_until = :until
        FROM due, messages m, accounts a
        WHERE r.id = due.id AND m.id = r.message_id AND a.id = m.account_id
        RETURNING {_JOB_COLUMNS}
        """
    )
    .bindparams(*_TIMES)
    .columns(**_JOB_TYPES)
)
_CLAIM_SQLITE = text(
    f"""
    UPDATE recipients SET lease_owner = :worker, leased_until = :until
    WHERE id IN (
        SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE {_DUE}
        ORDER BY r.id
        LIMIT :limit
    )
    RETURNING id
    """
).bindparams(*_TIMES)
_JOB_DETAILS = (
    text(
        f"""
        SELECT {_JOB_COLUMNS}
        FROM recipients r JOIN messages m ON m.id = r.message_id
        JOIN accounts a ON a.id = m.account_id
        WHERE r.id IN :ids ORDER BY r.id
        """
    )
    .bindparams(bindparam("ids", expanding=True))
    .columns(**_JOB_TYPES)
)
_HELD = text(
    f"""
    SELECT id FROM recipients
    WHERE id IN :ids AND lease_owner = :worker AND state IN {_WAITING_STATES}
    ORDER BY id
    """
).bindparams(bindparam("ids", expanding=True))
# Locked in id order, as every other writer of these rows locks them: no deadlock.
_HELD_POSTGRESQL = text(_HELD.text + " FOR UPDATE").bindparams(bindparam("ids", expanding=True))
_EXTEND_LEASES = text(
    f"""
    UPDATE recipients SET leased_until = :until
    WHERE id IN :ids AND lease_owner = :worker AND state IN {_WAITING_STATES}
    RETURNING id
    """
).bindparams(bindparam("ids", expanding=True), bindparam("until", type_=UtcDateTime()))
_RECORD_ATTEMPT = text(
    """
    UPDATE recipients SET
        state_changed_at = CASE WHEN state = :state THEN state_changed_at ELSE :at END,
        state = :state, attempts = attempts + 1, last_attempt_at = :at,
        next_attempt_at = :next, last_error = :error,
        lease_owner = NULL, leased_until = NULL
    WHERE id = :id
    """
).bindparams(bindparam("at", type_=UtcDateTime()), bindparam("next", type_=UtcDateTime()))
_EXPIRABLE_STATES = "('queued', 'deferred', 'sent')"
# The outer state test matters: on PostgreSQL a row the subquery chose may have been
# changed (read, withdrawn) by a commit the UPDATE waited for; it is checked again then.
_EXPIRE_TEMPLATE = f"""
    UPDATE recipients SET state = 'expired', state_changed_at = :now,
        lease_owner = NULL, leased_until = NULL
    WHERE state IN {_EXPIRABLE_STATES} AND id IN (
        SELECT r.id FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE r.state IN {_EXPIRABLE_STATES} AND m.expires_at <= :now
        ORDER BY r.id
        LIMIT :limit
        {{lock}}
    )
    RETURNING id, message_id
"""
_EXPIRE = text(_EXPIRE_TEMPLATE.format(lock="")).bindparams(bindparam("now", type_=UtcDateTime()))
# Rows a worker is recording are skipped, not waited for: the next sweep takes them.
_EXPIRE_POSTGRESQL = text(_EXPIRE_TEMPLATE.format(lock="FOR UPDATE OF r SKIP LOCKED")).bindparams(
    bindparam("now", type_=UtcDateTime())
)


# PostgreSQL checks the state again on a row it waited for (a worker recording it).
_CANCEL_TEMPLATE = f"""
    UPDATE recipients SET state = 'cancelled', state_changed_at = :now,
        lease_owner = NULL, leased_until = NULL
    WHERE state IN {_EXPIRABLE_STATES} AND id IN (
        SELECT id FROM recipients
        WHERE message_id = :message_id AND state IN {_EXPIRABLE_STATES}
        ORDER BY id {{lock}}
    )
    RETURNING id, message_id
"""
_CANCEL = text(_CANCEL_TEMPLATE.format(lock="")).bindparams(bindparam("now", type_=UtcDateTime()))
# Locked in id order, as the worker's recording locks them: no deadlock.
_CANCEL_POSTGRESQL = text(_CANCEL_TEMPLATE.format(lock="FOR UPDATE")).bindparams(
    bindparam("now", type_=UtcDateTime())
)
_DECIDE = text(
    f"""
    UPDATE recipients SET state = :state, state_changed_at = :now,
        lease_owner = NULL, leased_until = NULL
    WHERE id = :id AND state IN {_EXPIRABLE_STATES}
    RETURNING id, message_id
    """
).bindparams(bindparam("now", type_=UtcDateTime()))
_LOGIN_ATTEMPT = text(
    """
    UPDATE recipient_accounts SET failed_logins = failed_logins + 1,
        locked_until = CASE WHEN failed_logins + 1 >= :lock_after THEN :until
                       ELSE locked_until END
    WHERE id = :id AND (locked_until IS NULL OR locked_until <= :now)
    RETURNING id
    """
).bindparams(bindparam("until", type_=UtcDateTime()), bindparam("now", type_=UtcDateTime()))
_MARK_OPENED = text(
    f"""
    UPDATE recipients SET state = 'opened', state_changed_at = :now,
        lease_owner = NULL, leased_until = NULL
    WHERE id = :id AND state IN {_EXPIRABLE_STATES}
    RETURNING id, message_id
    """
).bindparams(bindparam("now", type_=UtcDateTime()))


def _journal(
    connection: Connection, rows: Sequence[Any], state: RecipientState, detail: str, at: datetime
) -> None:
    """One journal event for each recipient row (id, message_id) that just took `state`."""
    if rows:
        connection.execute(
            insert(EventRow.__table__),
            [
                {
                    "message_id": row.message_id,
                    "recipient_id": row.id,
                    "at": at,
                    "kind": state.value,
                    "detail": detail,
                }
                for row in rows
            ],
        )


def _sealed_texts(row: Any) -> SealedTexts:
    return SealedTexts(
        data_key=WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key)),
        subject=bytes(row.sealed_subject),
        text_body=bytes(row.sealed_text_body),
        html_body=bytes(row.sealed_html_body) if row.sealed_html_body is not None else None,
    )


def _recipient_account(row: Any) -> RecipientAccount:
    return RecipientAccount(id=row.id, address=row.address, auto_accept=bool(row.auto_accept))


def _storable(detail: str) -> str:
    """A detail fit for a text column: PostgreSQL refuses NUL characters."""
    return detail.replace("\x00", "")[:1000]


def _job(row: Any) -> DeliveryJob:
    return DeliveryJob(
        recipient_id=row.id,
        message_id=row.message_id,
        position=row.position,
        address=row.address,
        attempts=row.attempts,
        accepted_at=row.accepted_at,
        expires_at=row.expires_at,
        type=MessageType(row.type),
        language=Language(row.language),
        organisation=row.organisation,
        show_subject=bool(row.show_subject),
        sealed_subject=bytes(row.sealed_subject),
        data_key=WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key)),
    )
