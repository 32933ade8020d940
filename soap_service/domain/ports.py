"""What the domain needs from storage: the records it reads and writes, and the protocols
that `persistence.store.SqlStore` implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from soap_service.crypto import WrappedKey
from soap_service.domain.account_mails import AccountMailJob, AccountMailResult, NewAccountMail
from soap_service.domain.delivery import DeliveryJob, DeliveryResult
from soap_service.domain.journal import JournalStore
from soap_service.domain.model import (
    Account,
    Invitation,
    Language,
    Member,
    Membership,
    MessageStatus,
    MessageType,
    RecipientState,
    Team,
)
from soap_service.domain.organisations import Organisation
from soap_service.domain.sender_reports import ReportJob, ReportResult


@dataclass(frozen=True, kw_only=True)
class AccountRecord:
    account: Account
    password_hash: str
    # The PasswordDigest shared secret, sealed by the master key; None when the account
    # was created for PasswordText only.
    digest_secret: WrappedKey | None
    disabled: bool


@dataclass(frozen=True, kw_only=True)
class NewAccount:
    username: str
    organisation: str
    password_hash: str
    digest_secret: WrappedKey | None
    created_at: datetime
    show_subject: bool = False
    default_language: Language | None = None
    default_expiry_days: int | None = None


@dataclass(frozen=True, kw_only=True)
class SealedAttachment:
    position: int
    sealed_filename: bytes | bytearray
    content_type: str
    size: int
    sealed_content: bytes | bytearray


@dataclass(frozen=True, kw_only=True)
class NewMessage:
    message_id: str
    account_id: int
    reference: str
    type: MessageType
    language: Language
    accepted_at: datetime
    expires_at: datetime
    data_key: WrappedKey
    fingerprint: bytes
    sealed_subject: bytes | bytearray
    sealed_text_body: bytes | bytearray
    sealed_html_body: bytes | bytearray | None
    attachments: tuple[SealedAttachment, ...]
    recipients: tuple[str, ...]
    # SHA-256 of each recipient's pickup token, in recipient order.
    recipient_token_hashes: tuple[bytes, ...]
    content_bytes: int
    # Where failure reports and receipts go by mail (an SMTP submission's sender).
    report_to: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReferenceRecord:
    """What an idempotent resend needs to know about the message that holds a reference."""

    message_id: str
    key_id: str
    fingerprint: bytes


@dataclass(frozen=True, kw_only=True)
class PickupAttachment:
    position: int
    sealed_filename: bytes
    content_type: str
    size: int


@dataclass(frozen=True, kw_only=True)
class SealedTexts:
    """A stored message's key (wrapped) and its sealed subject and bodies."""

    data_key: WrappedKey
    subject: bytes
    text_body: bytes
    html_body: bytes | None


@dataclass(frozen=True, kw_only=True)
class SealedContent:
    """A message as a gateway receives it, sealed: its texts and attachments."""

    texts: SealedTexts
    attachments: tuple[SealedAttachment, ...]


@dataclass(frozen=True, kw_only=True)
class RecipientAccount:
    id: int
    address: str
    auto_accept: bool
    time_zone: str | None = None  # None: the service's (Europe/Zurich)
    second_factor: bool = False  # a TOTP code after the password (domain/second_factor.py)


@dataclass(frozen=True, kw_only=True)
class RecipientAccountRecord:
    account: RecipientAccount
    password_hash: str
    failed_logins: int
    locked_until: datetime | None


@dataclass(frozen=True, kw_only=True)
class PickupRecord:
    """A recipient found by its pickup token's hash, with what its page shows (sealed)."""

    recipient_id: int
    message_id: str
    position: int
    address: str
    state: RecipientState
    type: MessageType
    language: Language
    organisation: str
    accepted_at: datetime
    expires_at: datetime
    texts: SealedTexts
    attachments: tuple[PickupAttachment, ...]
    # The bodies and attachments were deleted at the end of the retention period.
    content_deleted: bool = False


@dataclass(frozen=True, kw_only=True)
class SealedFile:
    position: int
    sealed_filename: bytes
    size: int
    sealed_content: bytes


@dataclass(frozen=True, kw_only=True)
class ReceiptContent:
    """A message as a receipt states it (sealed), with its sender."""

    message_id: str
    reference: str
    organisation: str
    username: str
    accepted_at: datetime
    expires_at: datetime
    texts: SealedTexts
    attachments: tuple[SealedFile, ...]
    language: Language
    content_deleted: bool = False


@dataclass(frozen=True, kw_only=True)
class LoginFailures:
    failures: int
    last_failure_at: datetime
    blocked_until: datetime | None


@dataclass(frozen=True, kw_only=True)
class SettledMessage:
    """A message whose recipients are all done (or which expired), with its content."""

    message_id: str
    account_id: int
    reference: str
    type: MessageType
    # When its last recipient became final, or when it expired if that came first.
    settled_at: datetime


# What the domain needs from storage, one protocol per concern; `Store` is all of them,
# as `persistence.store.SqlStore` implements it. Each method is one transaction.


class StoreSession(Protocol):
    def close(self) -> None:
        """Give back the connection; a store serves one request or one worker step."""
        ...


class MasterKeyStore(Protocol):
    def known_master_keys(self) -> dict[str, bytes]:
        """Key id -> check value of every master key the database knows."""
        ...

    def add_master_keys(self, check_values: dict[str, bytes], created_at: datetime) -> None: ...


class AccountStore(Protocol):
    def find_account(self, username: str) -> AccountRecord | None: ...

    def list_accounts(self) -> list[AccountRecord]:
        """Every sender account, by username."""
        ...

    def set_account_disabled(self, username: str, disabled: bool) -> bool:
        """False if there is no such account."""
        ...

    def set_account_password(
        self, username: str, password_hash: str, digest_secret: WrappedKey | None
    ) -> bool:
        """False if there is no such account."""
        ...

    def add_account(self, account: NewAccount) -> Account:
        """Raises AccountExists if the username is taken."""
        ...

    def remember_nonce(
        self, account_id: int, nonce_digest: bytes, created_at: datetime, forget_before: datetime
    ) -> bool:
        """Record a UsernameToken nonce; False if this account already used it."""
        ...


class OrganisationStore(Protocol):
    def find_account(self, username: str) -> AccountRecord | None: ...

    def add_organisation(self, organisation: Organisation, created_at: datetime) -> None:
        """Raises OrganisationConflict if its name, a domain or its certificate is taken."""
        ...

    def organisations(self, *, active_only: bool = False) -> list[Organisation]:
        """Every organisation, by name; `active_only`: those whose account is not
        disabled (whose mail server may submit)."""
        ...

    def update_organisation(self, organisation: Organisation) -> bool:
        """Store its domains, certificate and gateway; False if there is none of its name.
        Raises OrganisationConflict if a domain or the certificate is another's."""
        ...

    def remove_organisation(self, name: str) -> bool:
        """False if there is none of that name (its messages stay its account's)."""
        ...


class StatusStore(Protocol):
    def message_status(
        self, account_id: int, *, message_id: str | None = None, reference: str | None = None
    ) -> MessageStatus | None:
        """A message of this account, by id or by reference, with its recipients."""
        ...


class LoginFailureStore(Protocol):
    """Failed logins by key (a username's or a client address's, as login_throttle.py
    makes them)."""

    def login_failures(self, keys: list[str]) -> dict[str, LoginFailures]: ...

    def add_login_failure(self, key: str, *, now: datetime, forget_before: datetime) -> int:
        """One more failure; a count last added to before `forget_before` starts again.
        The count now."""
        ...

    def block_logins(self, key: str, until: datetime) -> None: ...

    def clear_login_failures(self, key: str) -> None: ...


class RetentionStore(Protocol):
    def settled_before(
        self, moment: datetime, *, now: datetime, limit: int
    ) -> list[SettledMessage]:
        """Messages settled before `moment` whose content is still kept, oldest first."""
        ...

    def delete_content(self, message_id: str, now: datetime) -> bool:
        """Delete the bodies and attachments (the subject, states, journal and issued
        receipts stay), with a journal event; False if they were deleted already."""
        ...


class MessageStore(StatusStore, Protocol):
    def insert_message(self, message: NewMessage) -> ReferenceRecord | None:
        """Store the message, its recipients (queued) and journal events in one transaction,
        and return None; if the account already has a message with this reference, store
        nothing and return that message's record."""
        ...

    def find_references(
        self, account_id: int, references: Sequence[str]
    ) -> dict[str, ReferenceRecord]:
        """The account's messages that have one of these references, by reference."""
        ...

    def insert_messages(self, messages: Sequence[NewMessage]) -> list[ReferenceRecord | None]:
        """`insert_message` for each message, all in one transaction: for each, None if it
        was stored, else the record of the account's message that already has its
        reference (possibly one earlier in the same list)."""
        ...

    def cancel_message(self, message_id: str, now: datetime) -> int:
        """Recipients not final yet become `cancelled`, each with a journal event; how many."""
        ...


class DeliveryStore(StoreSession, Protocol):
    """What the delivery worker uses: claims with leases, outcomes, expiry."""

    def claim_due(
        self, worker: str, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[DeliveryJob]:
        """Lease up to `limit` due recipients to `worker` until `lease_until`, atomically."""
        ...

    def extend_leases(self, worker: str, recipient_ids: list[int], until: datetime) -> set[int]:
        """Renew the worker's leases; the ids it still holds."""
        ...

    def release_leases(self, worker: str, recipient_ids: list[int]) -> None:
        """Give back recipients claimed but not tried: due again at once."""
        ...

    def message_contents(self, message_ids: list[str]) -> dict[str, SealedContent]:
        """Messages' sealed texts and attachments, for their gateway mails, by message id;
        a message whose content was deleted (the end of its retention) is left out."""
        ...

    def record_results(self, worker: str, results: list[DeliveryResult]) -> int:
        """Record each attempt (a recipient the worker no longer holds, in the journal
        only); how many changed a recipient's state."""
        ...

    def expire_due(self, *, now: datetime, limit: int) -> int:
        """At most `limit` recipients whose message expired become `expired`; how many."""
        ...

    def claim_due_reports(
        self, worker: str, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[ReportJob]:
        """Lease up to `limit` due sender reports to `worker`, atomically."""
        ...

    def record_reports(self, worker: str, results: list[ReportResult]) -> None:
        """Each report attempt's outcome (for reports the worker still holds)."""
        ...

    def claim_due_account_mails(
        self, worker: str, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[AccountMailJob]: ...

    def record_account_mails(self, worker: str, results: list[AccountMailResult]) -> None: ...

    def forget_account_mails(self, *, before: datetime) -> int:
        """Delete the account mails used or expired before `before`; how many."""
        ...


class RecipientAccountStore(Protocol):
    """People's accounts and sessions (recipients who registered)."""

    # Addresses are given as mailboxes (casefolded).

    def find_recipient_account(self, address: str) -> RecipientAccountRecord | None: ...

    def add_recipient_account(
        self, *, address: str, password_hash: str, now: datetime
    ) -> RecipientAccount:
        """With consent given now. Raises AccountExists if the address has an account."""
        ...

    def login_attempt(
        self, account_id: int, *, now: datetime, lock_after: int, lock_until: datetime
    ) -> bool:
        """Count an attempt as failed (from the `lock_after`th on, lock the account until
        `lock_until`), unless the account is locked now: then False."""
        ...

    def login_succeeded(self, account_id: int) -> None: ...

    def set_auto_accept(self, account_id: int, auto_accept: bool) -> None: ...

    def set_time_zone(self, account_id: int, time_zone: str | None) -> None: ...

    def add_pickup_session(
        self, token_hash: bytes, account_id: int, *, now: datetime, expires_at: datetime
    ) -> None:
        """Also forgets the account's expired sessions."""
        ...

    def find_pickup_session(self, token_hash: bytes, now: datetime) -> RecipientAccount | None: ...

    def delete_pickup_session(self, token_hash: bytes) -> None: ...


class PersonSenderStore(AccountStore, RecipientAccountStore, Protocol):
    """The sender accounts people send from the site with."""

    def person_sender(self, person_id: int) -> Account | None: ...

    def link_person_sender(self, person_id: int, account_id: int) -> bool:
        """Make `account_id` the person's sender account, unless they have one: then False."""
        ...


@dataclass(frozen=True, kw_only=True)
class InboxRecord:
    """A message one mailbox received, as its inbox lists it (its subject sealed)."""

    recipient_id: int
    message_id: str
    position: int
    state: RecipientState
    type: MessageType
    organisation: str
    accepted_at: datetime
    data_key: WrappedKey
    sealed_subject: bytes


@dataclass(frozen=True, kw_only=True)
class InboxFilter:
    states: frozenset[RecipientState] | None = None
    type: MessageType | None = None
    accepted_from: datetime | None = None  # inclusive
    accepted_before: datetime | None = None  # exclusive


@dataclass(frozen=True, kw_only=True)
class InboxPosition:
    """An entry's place in the newest-first inbox: after it come older ones."""

    accepted_at: datetime
    recipient_id: int


class InboxStore(RecipientAccountStore, Protocol):
    def inbox(
        self,
        mailbox: str,
        *,
        where: InboxFilter,
        before: InboxPosition | None,
        limit: int,
    ) -> list[InboxRecord]:
        """Up to `limit` messages addressed to this mailbox (any spelling of it) that
        match, newest first, older than `before`."""
        ...


class PickupStore(RecipientAccountStore, Protocol):
    def find_pickup(self, token_hash: bytes) -> PickupRecord | None: ...

    def attachment_content(self, message_id: str, position: int) -> bytes | None:
        """The sealed content of one attachment."""
        ...

    def mark_opened(self, recipient_id: int, now: datetime) -> bool:
        """`opened` and a journal event, if the recipient is not final yet; False if it was
        (opened meanwhile, expired, withdrawn): states never move backwards."""
        ...

    def decide(self, recipient_id: int, state: RecipientState, detail: str, now: datetime) -> bool:
        """A registered message accepted or refused, with a journal event, if the recipient
        is not final yet; False if it was."""
        ...


class ReceiptStore(StatusStore, Protocol):
    def receipt_content(self, message_id: str) -> ReceiptContent: ...

    def find_receipt(
        self, message_id: str, position: int, kind: str
    ) -> tuple[datetime, bytes] | None:
        """(issued at, PDF) of a receipt issued before."""
        ...

    def add_receipt(
        self, message_id: str, position: int, kind: str, *, issued_at: datetime, pdf: bytes
    ) -> tuple[datetime, bytes]:
        """Keep a new receipt; if one was kept meanwhile, that one. (issued at, PDF)."""
        ...


@dataclass(frozen=True, kw_only=True)
class PendingSecret:
    """An unused, unexpired code or reset link."""

    mail_id: int
    address: str
    secret: WrappedKey
    failed_codes: int


class AccountMailStore(RecipientAccountStore, Protocol):
    """Mails about people's accounts, the codes and links they carry, and their sending."""

    def queue_account_mail(self, mail: NewAccountMail) -> None: ...

    def pending_code(self, address: str, now: datetime) -> PendingSecret | None:
        """The address's newest activation code, unless used or expired."""
        ...

    def code_failed(self, mail_id: int) -> None: ...

    def activate_account(
        self, mail_id: int, *, address: str, password_hash: str, now: datetime
    ) -> RecipientAccount:
        """Create the account (with consent given now) and use the code, together; raises
        AccountExists if the address has an account."""
        ...

    def pending_reset(self, token_hash: bytes, now: datetime) -> PendingSecret | None: ...

    def reset_password(
        self, mail_id: int, *, address: str, password_hash: str, now: datetime
    ) -> RecipientAccount | None:
        """Set the account's password, unlock it, end its sessions and use the link,
        together; None if the address has no account (any more)."""
        ...

    def change_password(self, account_id: int, password_hash: str) -> None: ...


@dataclass(frozen=True, kw_only=True)
class SealedSubject:
    sealed: bytes
    data_key: WrappedKey
    sender: str  # the account's name as recipients see it


class SubjectStore(Protocol):
    def sealed_subjects(
        self, account_ids: list[int], message_ids: list[str]
    ) -> dict[str, SealedSubject]:
        """The accounts' messages' subjects, sealed, by message id (others' are left out)."""
        ...


class SecondFactorStore(RecipientAccountStore, Protocol):
    """People's TOTP secrets (sealed) and the last time step each used."""

    def totp_secret(self, account_id: int) -> tuple[WrappedKey, int | None] | None: ...

    def set_totp(self, account_id: int, sealed: WrappedKey | None, step: int | None) -> None: ...

    def use_totp_step(self, account_id: int, step: int) -> bool:
        """Record `step` as used unless this or a later one was: then False."""
        ...


class TeamStore(AccountMailStore, StoreSession, Protocol):
    """Teams, their members and sender accounts; invitations are account mails."""

    def add_team(self, name: str, now: datetime) -> Team:
        """Conflict if the name is taken."""
        ...

    def team_named(self, name: str) -> Team | None: ...

    def teams(self) -> list[Team]: ...

    def set_account_team(self, username: str, team_id: int) -> bool: ...

    def team_accounts(self, team_id: int) -> list[Account]: ...

    def memberships(self, person_id: int) -> list[Membership]: ...

    def team_members(self, team_id: int) -> list[Member]: ...

    def remove_team_member(self, team_id: int, person_id: int) -> None: ...

    def pending_invitation(self, token_hash: bytes, now: datetime) -> Invitation | None: ...

    def join_team(self, mail_id: int, person_id: int, now: datetime) -> bool:
        """Use the invitation and make the person a member; False if used meanwhile."""
        ...


class Store(
    MasterKeyStore,
    PersonSenderStore,
    AccountStore,
    OrganisationStore,
    LoginFailureStore,
    RetentionStore,
    MessageStore,
    JournalStore,
    DeliveryStore,
    PickupStore,
    InboxStore,
    TeamStore,
    SecondFactorStore,
    AccountMailStore,
    SubjectStore,
    ReceiptStore,
    StoreSession,
    Protocol,
):
    """Everything above, on one request's connection."""
