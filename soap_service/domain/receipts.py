"""Receipts for registered messages: the sender's proof, as signed PDF documents.

Four kinds, as IncaMail gives them: submission (the service accepted the message), pickup
(the recipient accepted it), refusal, and expiry (no decision in time). Each states the
sender, the recipient(s), the times, the subject and the SHA-256 of the bodies and of
every attachment, computed from the stored (sealed, authenticated) content. A receipt is
made the first time it is asked for, then kept: the same document every time after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.model import (
    Account,
    Language,
    MessageStatus,
    MessageType,
    RecipientState,
)
from soap_service.domain.ports import ReceiptContent, ReceiptStore
from soap_service.domain.sealing import MessageCipher
from soap_service.errors import NotFound, ValidationError


class ReceiptKind(StrEnum):
    SUBMISSION = "submission"
    PICKUP = "pickup"
    REFUSAL = "refusal"
    EXPIRY = "expiry"


# The recipient state each per-recipient receipt attests.
_STATE_OF = {
    ReceiptKind.PICKUP: RecipientState.ACCEPTED,
    ReceiptKind.REFUSAL: RecipientState.REFUSED,
    ReceiptKind.EXPIRY: RecipientState.EXPIRED,
}


@dataclass(frozen=True, kw_only=True)
class FileDigest:
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class ReceiptFacts:
    """Everything a receipt states; `render` turns it into a PDF."""

    kind: ReceiptKind
    receipt_id: str
    message_id: str
    reference: str
    sender_organisation: str
    sender_account: str
    recipients: tuple[str, ...]  # every recipient (submission) or the one it is about
    accepted_at: datetime
    expires_at: datetime
    event_at: datetime  # accepted by the service, accepted, refused or expired
    subject: str
    text_body_sha256: str
    html_body_sha256: str | None
    attachments: tuple[FileDigest, ...]
    issued_at: datetime
    language: Language  # the message's: the receipt is written in it


@dataclass(frozen=True, kw_only=True)
class Receipt:
    kind: ReceiptKind
    message_id: str
    recipient: str | None
    issued_at: datetime
    pdf: bytes

    @property
    def filename(self) -> str:
        return f"receipt-{self.kind.value}-{self.message_id}.pdf"


class ReceiptService:
    def __init__(
        self,
        *,
        store: ReceiptStore,
        keyring: crypto.Keyring,
        render: Callable[[ReceiptFacts], bytes],
        sign: Callable[[bytes, ReceiptFacts], bytes],
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._render = render
        self._sign = sign
        self._now = now

    def receipt(
        self,
        account: Account,
        kind: ReceiptKind,
        *,
        message_id: str | None = None,
        reference: str | None = None,
        recipient: str | None = None,
    ) -> Receipt:
        return self.receipt_of(
            account.id, kind, message_id=message_id, reference=reference, recipient=recipient
        )

    def receipt_of(
        self,
        account_id: int,
        kind: ReceiptKind,
        *,
        message_id: str | None = None,
        reference: str | None = None,
        recipient: str | None = None,
    ) -> Receipt:
        """The receipt of the account's message (the delivery worker's reports to senders
        know only the account's id)."""
        status = self._registered_message(account_id, message_id, reference)
        attested = _attested(status, kind, recipient)
        issued_at, pdf = self._kept_or_issued(status, kind, attested)
        return Receipt(
            kind=kind,
            message_id=status.message_id,
            recipient=attested.recipient,
            issued_at=issued_at,
            pdf=pdf,
        )

    def issue_due(self, account_id: int, message_id: str) -> int:
        """Make and keep every receipt of a registered message that is due now (the
        submission, and each recipient's pickup, refusal or expiry): before its content is
        deleted, since a receipt states the content's digests. How many it has."""
        status = self._store.message_status(account_id, message_id=message_id)
        if status is None or status.type is not MessageType.REGISTERED:
            return 0
        due = [(ReceiptKind.SUBMISSION, None)] + [
            (kind, recipient.address)
            for recipient in status.recipients
            for kind, state in _STATE_OF.items()
            if recipient.state is state
        ]
        for kind, recipient in due:
            self._kept_or_issued(status, kind, _attested(status, kind, recipient))
        return len(due)

    def _registered_message(
        self, account_id: int, message_id: str | None, reference: str | None
    ) -> MessageStatus:
        if (message_id is None) == (reference is None):
            raise ValidationError("give either MessageId or Reference, not both and not neither")
        status = self._store.message_status(account_id, message_id=message_id, reference=reference)
        if status is None:
            raise NotFound("no message with this " + ("MessageId" if message_id else "Reference"))
        if status.type is not MessageType.REGISTERED:
            raise ValidationError("receipts are given for registered messages only")
        return status

    def _kept_or_issued(
        self, status: MessageStatus, kind: ReceiptKind, attested: _Attested
    ) -> tuple[datetime, bytes]:
        """(issued at, PDF) of the receipt kept for this, made and kept first if none is."""
        kept = self._store.find_receipt(status.message_id, attested.position, kind.value)
        if kept is not None:
            return kept
        issued_at = self._now()
        content = self._store.receipt_content(status.message_id)
        if content.content_deleted:  # what it would attest to is gone: none made now
            raise NotFound("the message's content was deleted at the end of its retention period")
        facts = _facts(
            self._keyring,
            content,
            kind=kind,
            position=attested.position,
            recipients=(
                (attested.recipient,)
                if attested.recipient
                else tuple(r.address for r in status.recipients)
            ),
            event_at=attested.event_at,
            issued_at=issued_at,
        )
        pdf = self._sign(self._render(facts), facts)
        # Two requests at once store one; both answer with the stored one.
        return self._store.add_receipt(
            status.message_id, attested.position, kind.value, issued_at=issued_at, pdf=pdf
        )


@dataclass(frozen=True, kw_only=True)
class _Attested:
    """What a receipt is about: the message (position 0) or its recipient at `position`
    (from 1), and when the event it attests happened."""

    position: int
    recipient: str | None
    event_at: datetime


def _attested(status: MessageStatus, kind: ReceiptKind, recipient: str | None) -> _Attested:
    if kind is ReceiptKind.SUBMISSION:
        return _Attested(position=0, recipient=None, event_at=status.accepted_at)
    if not recipient:
        raise ValidationError(f"a {kind.value} receipt needs the RecipientAddress")
    wanted = recipient.strip().lower()
    found = next(
        (
            (number, r)
            for number, r in enumerate(status.recipients, start=1)
            if r.address.lower() == wanted
        ),
        None,
    )
    if found is None:
        raise NotFound("the message has no such recipient")
    position, state = found
    if state.state is not _STATE_OF[kind]:
        raise NotFound(
            f"no {kind.value} receipt: the recipient is {state.state.value}, "
            f"not {_STATE_OF[kind].value}"
        )
    return _Attested(position=position, recipient=state.address, event_at=state.state_changed_at)


def _facts(
    keyring: crypto.Keyring,
    content: ReceiptContent,
    *,
    kind: ReceiptKind,
    position: int,
    recipients: tuple[str, ...],
    event_at: datetime,
    issued_at: datetime,
) -> ReceiptFacts:
    cipher = MessageCipher.unwrap(keyring, content.texts.data_key, content.message_id)
    texts = cipher.open_texts(content.texts)
    return ReceiptFacts(
        kind=kind,
        receipt_id=f"{content.message_id}/{position}/{kind.value}",
        message_id=content.message_id,
        reference=content.reference,
        sender_organisation=content.organisation,
        sender_account=content.username,
        recipients=recipients,
        accepted_at=content.accepted_at,
        expires_at=content.expires_at,
        event_at=event_at,
        subject=texts.subject,
        text_body_sha256=_sha256(texts.text_body),
        html_body_sha256=_sha256(texts.html_body) if texts.html_body is not None else None,
        attachments=tuple(
            FileDigest(
                filename=cipher.open(
                    sealing.attachment_name(attachment.position), attachment.sealed_filename
                ).decode("utf-8"),
                size=attachment.size,
                sha256=_sha256(
                    cipher.open(
                        sealing.attachment_content(attachment.position), attachment.sealed_content
                    )
                ),
            )
            for attachment in content.attachments
        ),
        issued_at=issued_at,
        language=content.language,
    )


def _sha256(data: bytes) -> str:
    return crypto.sha256(data).hex()
