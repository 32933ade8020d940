"""Accepting messages and reporting their status: the heart of SendMessage(s) and GetStatus."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from soap_service import crypto
from soap_service.domain import sealing
from soap_service.domain.model import (
    Account,
    Language,
    MessageDraft,
    MessageLimits,
    MessageStatus,
    RecipientState,
    RecipientStatus,
    ValidMessage,
)
from soap_service.domain.ports import MessageStore, NewMessage, ReferenceRecord, SealedAttachment
from soap_service.domain.sealing import MessageCipher
from soap_service.domain.validation import validate_message
from soap_service.errors import DuplicateReference, NotFound, ServiceError, ValidationError

# Messages in one SendMessages call.
MAX_BATCH_MESSAGES = 100


class MessageService:
    def __init__(
        self,
        *,
        store: MessageStore,
        keyring: crypto.Keyring,
        limits: MessageLimits,
        default_language: Language,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._limits = limits
        self._default_language = default_language
        self._now = now

    def send(self, account: Account, draft: MessageDraft) -> MessageStatus:
        """Validate, encrypt and store a message; returns only after the commit.

        The reference is an idempotency key: the same reference with the same content
        returns the stored message's status, with other content it is refused.
        """
        message = self._validate(account, draft)
        # Sealed before we know whether the reference is new: one transaction in the common
        # case, a little wasted work on a resend.
        record = self._seal(account, message)
        existing = self._store.insert_message(record)
        if existing is not None:
            return self._resend(account, existing, message)
        return _status_of_new(record)

    def send_batch(
        self, account: Account, drafts: Sequence[MessageDraft]
    ) -> list[MessageStatus | ServiceError]:
        """Send up to MAX_BATCH_MESSAGES messages, each as `send` would: one result per
        draft, in order, its status or the error that refused it alone. The valid ones are
        stored in one transaction, and this returns after its commit.

        Each message keeps its idempotency by reference: a resent batch answers with the
        original messages. A reference twice in one batch is the same message twice (the
        later one answers like a resend of the earlier, refused if its content differs).
        """
        if not 0 < len(drafts) <= MAX_BATCH_MESSAGES:
            raise ValidationError(f"send 1 to {MAX_BATCH_MESSAGES} messages in one batch")
        results: dict[int, MessageStatus | ServiceError] = {}
        checked: list[tuple[int, ValidMessage]] = []
        for position, draft in enumerate(drafts):
            try:
                checked.append((position, self._validate(account, draft)))
            except ServiceError as error:
                results[position] = error
        # A batch sent again (a payroll run started over after a crash) is mostly known
        # references: those are answered without sealing and storing them once more.
        known = self._store.find_references(account.id, [m.reference for _, m in checked])
        valid: list[tuple[int, ValidMessage, NewMessage]] = []
        for position, message in checked:
            try:
                if message.reference in known:
                    results[position] = self._resend(account, known[message.reference], message)
                else:
                    valid.append((position, message, self._seal(account, message)))
            except ServiceError as error:
                results[position] = error
        existing = self._store.insert_messages([record for _, _, record in valid])
        for (position, message, record), found in zip(valid, existing, strict=True):
            try:
                if found is None:
                    results[position] = _status_of_new(record)
                else:
                    results[position] = self._resend(account, found, message)
            except ServiceError as error:
                results[position] = error
        return [results[position] for position in range(len(drafts))]

    def _validate(self, account: Account, draft: MessageDraft) -> ValidMessage:
        """The draft with the account's defaults, validated."""
        if draft.language is None or draft.expiry_days is None:
            draft = replace(
                draft,
                language=draft.language or account.default_language,
                expiry_days=(
                    account.default_expiry_days if draft.expiry_days is None else draft.expiry_days
                ),
            )
        return validate_message(draft, self._limits, self._default_language)

    def status(
        self, account: Account, *, message_id: str | None = None, reference: str | None = None
    ) -> MessageStatus:
        if (message_id is None) == (reference is None):
            raise ValidationError("give either MessageId or Reference, not both and not neither")
        status = self._store.message_status(account.id, message_id=message_id, reference=reference)
        if status is None:
            # Another account's message answers exactly like a message that does not exist.
            raise NotFound("no message with this " + ("MessageId" if message_id else "Reference"))
        return status

    def cancel(
        self, account: Account, *, message_id: str | None = None, reference: str | None = None
    ) -> MessageStatus:
        """Withdraw a message: every recipient who has not opened it yet (queued, deferred,
        sent) becomes `cancelled` and its link says so; final recipients keep their state.
        Withdrawing again changes nothing."""
        status = self.status(account, message_id=message_id, reference=reference)
        if self._store.cancel_message(status.message_id, self._now()):
            status = self.status(account, message_id=status.message_id)
        return status

    def _resend(
        self, account: Account, existing: ReferenceRecord, message: ValidMessage
    ) -> MessageStatus:
        fingerprint = self._keyring.fingerprint(existing.key_id, content_parts(message))
        if not crypto.constant_time_equal(fingerprint, existing.fingerprint):
            raise DuplicateReference(
                f"the reference {message.reference!r} was already used for a message "
                "with different content; use a new reference for a new message"
            )
        status = self._store.message_status(account.id, message_id=existing.message_id)
        if status is None:  # pragma: no cover - messages are never deleted
            raise NotFound("no message with this Reference")
        return status

    def _seal(self, account: Account, message: ValidMessage) -> NewMessage:
        message_id = str(uuid.uuid4())
        cipher, wrapped = MessageCipher.create(self._keyring, message_id)
        seal = cipher.seal
        accepted_at = self._now()
        return NewMessage(
            message_id=message_id,
            account_id=account.id,
            reference=message.reference,
            type=message.type,
            language=message.language,
            accepted_at=accepted_at,
            expires_at=accepted_at + timedelta(days=message.expiry_days),
            data_key=wrapped,
            fingerprint=self._keyring.fingerprint(wrapped.key_id, content_parts(message)),
            sealed_subject=seal(sealing.SUBJECT, message.subject.encode("utf-8")),
            sealed_text_body=seal(sealing.TEXT_BODY, message.text_body.encode("utf-8")),
            sealed_html_body=(
                seal(sealing.HTML_BODY, message.html_body.encode("utf-8"))
                if message.html_body
                else None
            ),
            attachments=tuple(
                SealedAttachment(
                    position=position,
                    sealed_filename=seal(
                        sealing.attachment_name(position), attachment.filename.encode("utf-8")
                    ),
                    content_type=attachment.content_type,
                    size=len(attachment.content),
                    sealed_content=seal(sealing.attachment_content(position), attachment.content),
                )
                for position, attachment in enumerate(message.attachments, start=1)
            ),
            recipients=message.recipients,
            recipient_token_hashes=tuple(
                sealing.token_hash(cipher.pickup_token(position))
                for position in range(1, len(message.recipients) + 1)
            ),
            content_bytes=message.attachment_bytes
            + len(message.text_body.encode("utf-8"))
            + len((message.html_body or "").encode("utf-8")),
            report_to=message.report_to,
        )


def content_parts(message: ValidMessage) -> Iterator[bytes]:
    """The content that decides whether a resend is the same message, in a fixed order."""
    yield b"soap-service message v1"
    for value in (message.type, message.language, str(message.expiry_days)):
        yield str(value).encode("ascii")
    yield message.subject.encode("utf-8")
    yield message.text_body.encode("utf-8")
    yield b"" if message.html_body is None else b"html:" + message.html_body.encode("utf-8")
    yield str(len(message.recipients)).encode("ascii")
    for address in message.recipients:
        yield address.casefold().encode("utf-8")  # folded like duplicates are
    yield str(len(message.attachments)).encode("ascii")
    for attachment in message.attachments:
        yield attachment.filename.encode("utf-8")
        yield attachment.content_type.encode("utf-8")
        yield attachment.content


def _status_of_new(message: NewMessage) -> MessageStatus:
    return MessageStatus(
        message_id=message.message_id,
        reference=message.reference,
        type=message.type,
        language=message.language,
        accepted_at=message.accepted_at,
        expires_at=message.expires_at,
        recipients=tuple(
            RecipientStatus(
                address=address,
                state=RecipientState.QUEUED,
                attempts=0,
                state_changed_at=message.accepted_at,
            )
            for address in message.recipients
        ),
    )
