"""Conversions between the SOAP types and the domain's values."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from spyne import ComplexModelBase

from soap_service.domain import model
from soap_service.domain.journal import MessageFilter, MessagePage, StatusChangePage
from soap_service.domain.receipts import Receipt, ReceiptKind
from soap_service.errors import ServiceError
from soap_service.soap import types
from soap_service.soap.faults import entry_fault

_Soap = TypeVar("_Soap", bound=ComplexModelBase)


def draft_from_soap(message: Any) -> model.MessageDraft:
    recipients = message.Recipients.Recipient or []
    attachments = (message.Attachments.Attachment or []) if message.Attachments else []
    return model.MessageDraft(
        reference=message.Reference,
        type=model.MessageType(str(message.Type)),
        recipients=tuple(recipient.Address or "" for recipient in recipients),
        subject=message.Subject or "",
        text_body=message.TextBody or "",
        html_body=message.HtmlBody,
        attachments=tuple(
            model.AttachmentDraft(
                filename=attachment.FileName or "",
                content_type=attachment.ContentType or "",
                content=attachment.Content or b"",
            )
            for attachment in attachments
        ),
        language=model.Language(str(message.Language)) if message.Language else None,
        expiry_days=message.ExpiryDays,
    )


def status_to_soap(status: model.MessageStatus) -> types.MessageStatus:
    return _build(
        types.MessageStatus,
        MessageId=status.message_id,
        Reference=status.reference,
        Type=status.type.value,
        State=status.state.value,
        Language=status.language.value,
        AcceptedAt=status.accepted_at,
        ExpiresAt=status.expires_at,
        Recipients=_build(
            types.RecipientStatusList,
            Recipient=[
                _build(
                    types.RecipientStatus,
                    Address=recipient.address,
                    State=recipient.state.value,
                    Attempts=recipient.attempts,
                    StateChangedAt=recipient.state_changed_at,
                    LastAttemptAt=recipient.last_attempt_at,
                    NextAttemptAt=recipient.next_attempt_at,
                    LastError=recipient.last_error,
                )
                for recipient in status.recipients
            ],
        ),
    )


def batch_to_soap(
    results: list[tuple[str | None, model.MessageStatus | ServiceError]],
) -> types.MessageResultList:
    """SendMessages' answer: for each message, in order, (its Reference, its outcome)."""
    return _build(
        types.MessageResultList,
        Result=[
            _message_result(position, reference, outcome)
            for position, (reference, outcome) in enumerate(results, start=1)
        ],
    )


def _message_result(
    position: int, reference: str | None, outcome: model.MessageStatus | ServiceError
) -> types.MessageResult:
    if isinstance(outcome, ServiceError):
        code, text = entry_fault(outcome)
        fault = _build(types.EntryFault, Code=code, Text=text)
        return _build(types.MessageResult, Position=position, Reference=reference, Fault=fault)
    return _build(
        types.MessageResult,
        Position=position,
        Reference=outcome.reference,
        Status=status_to_soap(outcome),
    )


def changes_to_soap(page: StatusChangePage) -> types.StatusChangeList:
    return _build(
        types.StatusChangeList,
        Change=[
            _build(
                types.StatusChange,
                MessageId=change.message_id,
                Reference=change.reference,
                RecipientAddress=change.recipient,
                State=change.state.value,
                ChangedAt=change.at,
                Detail=change.detail,
            )
            for change in page.changes
        ],
        NextCursor=page.cursor,
        HasMore=page.more,
    )


def message_filter(
    *,
    state: Any,
    message_type: Any,
    accepted_from: datetime | None,
    accepted_before: datetime | None,
    reference_prefix: str | None,
) -> MessageFilter:
    return MessageFilter(
        state=model.MessageState(str(state)) if state else None,
        type=model.MessageType(str(message_type)) if message_type else None,
        accepted_from=accepted_from,
        accepted_before=accepted_before,
        reference_prefix=reference_prefix,
    )


def message_page_to_soap(page: MessagePage) -> types.MessageList:
    return _build(
        types.MessageList,
        Message=[status_to_soap(status) for status in page.messages],
        NextCursor=page.cursor,
    )


def _build(cls: type[_Soap], **values: Any) -> _Soap:
    """An instance of a SOAP type with these fields (the others None), without Spyne's
    __init__, which runs its per-field machinery: for a status with 100 recipients that
    cost more than writing the answer. The codec reads the fields from __dict__."""
    # object.__new__ is what cls.__new__ is for every SOAP type, and mypy can type it.
    instance = object.__new__(cls)
    instance.__dict__.update(dict.fromkeys(cls._type_info), **values)
    return instance


def receipt_kind(kind: Any) -> ReceiptKind:
    return ReceiptKind(str(kind))


def receipt_to_soap(receipt: Receipt) -> types.Receipt:
    return _build(
        types.Receipt,
        Kind=receipt.kind.value,
        MessageId=receipt.message_id,
        RecipientAddress=receipt.recipient,
        IssuedAt=receipt.issued_at,
        FileName=receipt.filename,
        ContentType="application/pdf",
        Content=receipt.pdf,
    )
