"""Pickup: a recipient follows the link from the notification and reads the message.

The link's token is looked up by its hash, then checked against the token the message's
own key derives for that recipient, in constant time. A link works until the message
expires or is withdrawn; the first reading makes the recipient `opened`, once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.model import Language, MessageType, RecipientState
from soap_service.domain.ports import PickupAttachment, PickupRecord, Store
from soap_service.domain.sealing import MessageCipher
from soap_service.errors import SoapServiceError

# 256 bits in base64url without padding.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
# States in which the link opens the message (a mail may arrive before its `sent` is
# recorded: a crash between the server's 250 and the record).
_READABLE = frozenset(
    {RecipientState.QUEUED, RecipientState.DEFERRED, RecipientState.SENT, RecipientState.OPENED}
)


class PickupRefused(SoapServiceError):
    """The link does not open the message; `reason` says which page the recipient sees."""

    UNKNOWN = "unknown"  # no such link (mistyped, tampered with)
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    NEEDS_ACCOUNT = "needs-account"  # personal and registered messages

    def __init__(self, reason: str, *, language: Language | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.language = language  # the message's, when the link was genuine


@dataclass(frozen=True, kw_only=True)
class AttachmentView:
    position: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, kw_only=True)
class OpenedMessage:
    message_id: str
    organisation: str
    language: Language
    subject: str
    text_body: str
    html_body: str | None
    attachments: tuple[AttachmentView, ...]
    accepted_at: datetime
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class AttachmentFile:
    filename: str
    content_type: str
    content: bytes


class PickupService:
    def __init__(
        self, *, store: Store, keyring: crypto.Keyring, now: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._now = now

    def open(self, token: str) -> OpenedMessage:
        """The message behind the link; the recipient is `opened` from the first time on."""
        record, cipher = self._readable(token)
        if record.state is not RecipientState.OPENED:
            self._store.mark_opened(record.recipient_id, self._now())
        return OpenedMessage(
            message_id=record.message_id,
            organisation=record.organisation,
            language=record.language,
            subject=_text(cipher.open(sealing.SUBJECT, record.sealed_subject)),
            text_body=_text(cipher.open(sealing.TEXT_BODY, record.sealed_text_body)),
            html_body=(
                _text(cipher.open(sealing.HTML_BODY, record.sealed_html_body))
                if record.sealed_html_body is not None
                else None
            ),
            attachments=tuple(_attachment_view(cipher, a) for a in record.attachments),
            accepted_at=record.accepted_at,
            expires_at=record.expires_at,
        )

    def attachment(self, token: str, position: int) -> AttachmentFile:
        """One attachment, for a link that opens the message (reading it opens it too)."""
        record, cipher = self._readable(token)
        found = next((a for a in record.attachments if a.position == position), None)
        sealed = (
            self._store.attachment_content(record.message_id, position)
            if found is not None
            else None
        )
        if found is None or sealed is None:
            raise PickupRefused(PickupRefused.UNKNOWN, language=record.language)
        if record.state is not RecipientState.OPENED:
            self._store.mark_opened(record.recipient_id, self._now())
        return AttachmentFile(
            filename=_text(cipher.open(sealing.attachment_name(position), found.sealed_filename)),
            content_type=found.content_type,
            content=cipher.open(sealing.attachment_content(position), sealed),
        )

    def _readable(self, token: str) -> tuple[PickupRecord, MessageCipher]:
        if not _TOKEN.fullmatch(token):
            raise PickupRefused(PickupRefused.UNKNOWN)
        record = self._store.find_pickup(sealing.token_hash(token))
        if record is None:
            raise PickupRefused(PickupRefused.UNKNOWN)
        cipher = MessageCipher.unwrap(self._keyring, record.data_key, record.message_id)
        # The hash found the row; the message's key confirms the token is this one.
        if not crypto.constant_time_equal(cipher.pickup_token(record.position), token):
            raise PickupRefused(PickupRefused.UNKNOWN)
        language = record.language
        if record.state is RecipientState.CANCELLED:
            raise PickupRefused(PickupRefused.WITHDRAWN, language=language)
        if record.state is RecipientState.EXPIRED or self._now() >= record.expires_at:
            raise PickupRefused(PickupRefused.EXPIRED, language=language)
        if record.state not in _READABLE:
            raise PickupRefused(PickupRefused.UNKNOWN, language=language)
        if record.type is not MessageType.CONFIDENTIAL:
            raise PickupRefused(PickupRefused.NEEDS_ACCOUNT, language=language)
        return record, cipher


def _attachment_view(cipher: MessageCipher, attachment: PickupAttachment) -> AttachmentView:
    return AttachmentView(
        position=attachment.position,
        filename=_text(
            cipher.open(sealing.attachment_name(attachment.position), attachment.sealed_filename)
        ),
        content_type=attachment.content_type,
        size=attachment.size,
    )


def _text(data: bytes) -> str:
    return data.decode("utf-8")
