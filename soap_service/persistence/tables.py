"""The database schema as SQLAlchemy 2.x typed models. Migrations in `migrations/` create it.

Changing a table means a new migration, and, for messages, attachments, recipients and
events, the hand-written SendMessage insert in message_insert.py (its SQL is the hot path).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite has no 64-bit autoincrement type other than INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    organisation: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    digest_key_id: Mapped[str | None] = mapped_column(String(32))
    digest_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether notification e-mails may show the message's subject.
    show_subject: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Defaults for the account's messages that give none; NULL: the service's.
    default_language: Mapped[str | None] = mapped_column(String(2), nullable=True)
    default_expiry_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The team whose logbook shows the account's messages (domain/teams.py).
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True, nullable=True)


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("account_id", "reference"),
        Index("ix_messages_account_id_accepted_at", "account_id", "accepted_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    reference: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(2))
    accepted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The message's data key, wrapped by master key `key_id`.
    key_id: Mapped[str] = mapped_column(String(32))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    # Keyed MAC of the content (master key `key_id`), for idempotent resends.
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_subject: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_text_body: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_html_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    content_bytes: Mapped[int] = mapped_column(BigInteger)
    # Set when the bodies and attachments were deleted at the end of the retention period.
    content_deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Where reports about it go by mail (failures, receipts): an SMTP submission's sender.
    report_to: Mapped[str | None] = mapped_column(String(320), nullable=True)


class RecipientRow(Base):
    __tablename__ = "recipients"
    __table_args__ = (
        UniqueConstraint("message_id", "position"),
        Index("ix_recipients_state_next_attempt_at", "state", "next_attempt_at"),
        # A person's inbox: the messages of a mailbox, however senders spelled it.
        Index("ix_recipients_mailbox", text("lower(address)")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"))
    position: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    state_changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    # SHA-256 of the recipient's pickup token (the token itself is never stored).
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    # A delivery worker's claim: who holds the recipient, and until when.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    leased_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the organisation's gateway was given up for a notification (its fallback).
    gateway_given_up_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AttachmentRow(Base):
    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("message_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"))
    position: Mapped[int] = mapped_column(Integer)
    # File names say whose payslip it is: sealed like the content.
    sealed_filename: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sealed_content: Mapped[bytes] = mapped_column(LargeBinary)


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


class EventRow(Base):
    """The append-only journal: every change of a message or recipient, with its time."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_message_id_id", "message_id", "id"),
        Index("ix_events_xact_id", "xact", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipients.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(1000))
    # The writing transaction's id on PostgreSQL, 0 on SQLite; never set by the service:
    # the journal's order for GetStatusChanges (migration 0010 says why).
    xact: Mapped[int] = mapped_column(
        BigInteger().with_variant(Xid8(), "postgresql"), server_default=text("0")
    )


class LoginFailureRow(Base):
    """Failed sender logins, by username and by client address (each key a SHA-256 in hex
    with its kind: never the username itself), and how long their next check waits."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_last_failure_at", "last_failure_at"),)

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(UtcDateTime)
    blocked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class UsedNonceRow(Base):
    """WS-Security nonces seen recently, per account, to refuse replays."""

    __tablename__ = "used_nonces"
    __table_args__ = (Index("ix_used_nonces_created_at", "created_at"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    nonce_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MasterKeyRow(Base):
    """The master keys the database holds data under, by id, with a check value (not the
    key): a host whose keyring differs is stopped at start instead of failing later."""

    __tablename__ = "master_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    check_value: Mapped[bytes] = mapped_column(LargeBinary(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RecipientAccountRow(Base):
    """A recipient who registered (through a link sent to the address, which proves it)
    and gave consent: personal and registered messages open after logging in."""

    __tablename__ = "recipient_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Lower case: one account per mailbox, however a sender spells the address.
    address: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    consent_at: Mapped[datetime] = mapped_column(UtcDateTime)
    auto_accept: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The sender account the person's messages from the site are stored under, made at
    # their first message.
    sender_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id"), unique=True, nullable=True
    )
    # The zone the person's pages show times in (NULL: Europe/Zurich).
    time_zone: Mapped[str | None] = mapped_column(String(64))
    # The second factor, if the person turned it on: a TOTP secret sealed by master key
    # totp_key_id, and the last time step a code was used for (each code works once).
    totp_key_id: Mapped[str | None] = mapped_column(String(32))
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class PickupSessionRow(Base):
    """A logged-in recipient's browser session; only the hash of its cookie is kept."""

    __tablename__ = "pickup_sessions"
    __table_args__ = (Index("ix_pickup_sessions_expires_at", "expires_at"),)

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("recipient_accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReceiptRow(Base):
    """A signed receipt of a registered message, kept as first issued: asked for again,
    the sender gets the same document. Position 0 is the message's submission receipt."""

    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("message_id", "position", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)


class OrganisationRow(Base):
    """An organisation whose mail server submits over the SMTP channel with its client
    certificate, as the sender account it names."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    # SHA-256 of the certificate's DER form, and the certificate itself.
    client_cert_sha256: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    client_cert_pem: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The gateway its confidential messages are delivered to: none while gateway_tls is
    # NULL; the domains' MX while gateway_host is NULL.
    gateway_host: Mapped[str | None] = mapped_column(String(253))
    gateway_port: Mapped[int | None] = mapped_column(Integer)
    gateway_tls: Mapped[str | None] = mapped_column(String(16))
    gateway_ca_pem: Mapped[str | None] = mapped_column(Text)
    gateway_fallback: Mapped[bool] = mapped_column(Boolean, default=False)


class OrganisationDomainRow(Base):
    """A mail domain of an organisation; a domain belongs to one organisation at most."""

    __tablename__ = "organisation_domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)


class SenderReportRow(Base):
    """A report owed to a message's sender by mail (messages.report_to): a failed
    recipient's delivery status notification, or a registered message's receipt. Queued
    by triggers (on messages and on the journal), in the transaction of what it reports;
    sent by the delivery workers like notifications (claimed with a lease, retried)."""

    __tablename__ = "sender_reports"
    __table_args__ = (
        UniqueConstraint("message_id", "position", "kind"),
        Index("ix_sender_reports_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"))
    # 0: the message (its submission receipt); else the recipient's position.
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AccountMailRow(Base):
    """A mail about a person's account, and the secret it carries: an activation code
    (sign-up), a password reset link, or word that the address already has an account (a
    sign-up for it). Its secret is sealed with a master key: the worker puts it into the
    mail; the pages check a typed code against it, and find a reset link by its hash.
    Queued by the pages, sent by the delivery workers (claimed with a lease, retried)."""

    __tablename__ = "account_mails"
    __table_args__ = (
        Index("ix_account_mails_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_account_mails_address_kind", "address", "kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    # A mailbox (casefolded), as recipient_accounts.address.
    address: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(2))
    key_id: Mapped[str | None] = mapped_column(String(32))
    sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    failed_codes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # An invitation's team and the role it gives.
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), nullable=True)
    role: Mapped[str | None] = mapped_column(String(8))


class TeamRow(Base):
    """An organisation's people who share the logbook of its sender accounts."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TeamMemberRow(Base):
    __tablename__ = "team_members"

    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    person_id: Mapped[int] = mapped_column(
        ForeignKey("recipient_accounts.id"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(8))
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime)


def table_of(model: type[Base]) -> Table:
    """The model's table for Core statements (DeclarativeBase types `__table__` loosely)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


accounts = table_of(AccountRow)
messages = table_of(MessageRow)
recipients = table_of(RecipientRow)
attachments = table_of(AttachmentRow)
events = table_of(EventRow)
used_nonces = table_of(UsedNonceRow)
login_failures = table_of(LoginFailureRow)
master_keys = table_of(MasterKeyRow)
recipient_accounts = table_of(RecipientAccountRow)
pickup_sessions = table_of(PickupSessionRow)
receipts = table_of(ReceiptRow)
organisations = table_of(OrganisationRow)
organisation_domains = table_of(OrganisationDomainRow)
sender_reports = table_of(SenderReportRow)
account_mails = table_of(AccountMailRow)
teams = table_of(TeamRow)
team_members = table_of(TeamMemberRow)
