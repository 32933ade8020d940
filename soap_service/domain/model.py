"""Domain values: message types, recipient states and the frozen records passed around.

Nothing here knows about SOAP or SQL; the SOAP layer converts to and from these values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class MessageType(StrEnum):
    CONFIDENTIAL = "confidential"
    PERSONAL = "personal"
    REGISTERED = "registered"


class Language(StrEnum):
    DE = "de"
    FR = "fr"
    IT = "it"
    EN = "en"


class RecipientState(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        RecipientState.DELIVERED,
        RecipientState.OPENED,
        RecipientState.ACCEPTED,
        RecipientState.REFUSED,
        RecipientState.EXPIRED,
        RecipientState.FAILED,
        RecipientState.CANCELLED,
    }
)


class MessageState(StrEnum):
    """A message's state, derived from its recipients' states."""

    QUEUED = "queued"  # every recipient is waiting for the delivery engine
    IN_PROGRESS = "in_progress"  # at least one recipient is not final yet
    COMPLETED = "completed"  # every recipient is final
    CANCELLED = "cancelled"  # every recipient was withdrawn

    @classmethod
    def derive(cls, states: list[RecipientState]) -> MessageState:
        if all(state is RecipientState.CANCELLED for state in states):
            return cls.CANCELLED
        if all(state is RecipientState.QUEUED for state in states):
            return cls.QUEUED
        if all(state.is_final for state in states):
            return cls.COMPLETED
        return cls.IN_PROGRESS


MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class MessageLimits:
    """Limits taken from IncaMail; 30 MB is read as 30 MiB of decoded attachment bytes."""

    max_recipients: int = 100
    max_attachments: int = 20
    max_attachment_bytes: int = 30 * MIB
    max_subject_chars: int = 255
    max_body_bytes: int = MIB
    max_reference_chars: int = 100
    max_filename_chars: int = 255
    min_expiry_days: int = 1
    max_expiry_days: int = 30
    default_expiry_days: int = 7


@dataclass(frozen=True, kw_only=True)
class AttachmentDraft:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True, kw_only=True)
class MessageDraft:
    """A message as the sender submitted it, before validation."""

    reference: str
    type: MessageType
    recipients: tuple[str, ...]
    subject: str
    text_body: str
    html_body: str | None = None
    attachments: tuple[AttachmentDraft, ...] = ()
    language: Language | None = None
    expiry_days: int | None = None
    # An address that hears by mail when a recipient fails, and gets a registered
    # message's receipts (an SMTP submission's sender). Not part of the content: a resend
    # from another envelope sender is the same message.
    report_to: str | None = None


@dataclass(frozen=True, kw_only=True)
class ValidMessage:
    """A validated message: normalised, duplicate recipients folded, defaults applied."""

    reference: str
    type: MessageType
    recipients: tuple[str, ...]
    subject: str
    text_body: str
    html_body: str | None
    attachments: tuple[AttachmentDraft, ...]
    language: Language
    expiry_days: int
    report_to: str | None = None

    @property
    def attachment_bytes(self) -> int:
        return sum(len(attachment.content) for attachment in self.attachments)


@dataclass(frozen=True, kw_only=True)
class Account:
    id: int
    username: str
    organisation: str
    # For messages that give none (a SOAP message without Language, a mail without
    # Content-Language or X-Expiry-Days); None: the service's defaults.
    default_language: Language | None = None
    default_expiry_days: int | None = None


@dataclass(frozen=True, kw_only=True)
class RecipientStatus:
    address: str
    state: RecipientState
    attempts: int
    state_changed_at: datetime
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, kw_only=True)
class MessageStatus:
    message_id: str
    reference: str
    type: MessageType
    language: Language
    accepted_at: datetime
    expires_at: datetime
    recipients: tuple[RecipientStatus, ...]

    @property
    def state(self) -> MessageState:
        return MessageState.derive([recipient.state for recipient in self.recipients])


# Teams (domain/teams.py).


class TeamRole(StrEnum):
    OWNER = "owner"
    MEMBER = "member"


@dataclass(frozen=True, kw_only=True)
class Team:
    id: int
    name: str


@dataclass(frozen=True, kw_only=True)
class Membership:
    team: Team
    role: TeamRole


@dataclass(frozen=True, kw_only=True)
class Member:
    person_id: int
    address: str
    role: TeamRole


@dataclass(frozen=True, kw_only=True)
class Invitation:
    """A pending invitation found by its link."""

    mail_id: int
    team: Team
    role: TeamRole
    address: str
