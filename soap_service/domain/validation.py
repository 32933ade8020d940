"""Validation of a submitted message: the rules of the product, whatever the transport.

The SOAP layer's schema validation already refuses wrong types and missing elements; the
rules here are the ones a schema cannot say (address syntax, sizes in bytes, blocked
content) and they hold for any caller of the domain.
"""

from __future__ import annotations

import re
import unicodedata

from email_validator import EmailNotValidError, validate_email

from soap_service.domain import attachment_policy
from soap_service.domain.model import (
    AttachmentDraft,
    Language,
    MessageDraft,
    MessageLimits,
    ValidMessage,
)
from soap_service.errors import (
    AttachmentRejected,
    InvalidAddress,
    MessageTooLarge,
    ValidationError,
)

# RFC 6838 type/subtype, optionally followed by parameters.
_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_CONTENT_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=(\"[^\"\\\r\n]*\"|{_TOKEN}))*$")


def validate_message(
    draft: MessageDraft, limits: MessageLimits, default_language: Language
) -> ValidMessage:
    reference = _check_text(
        draft.reference, "Reference", max_chars=limits.max_reference_chars, single_line=True
    )
    recipients = normalise_recipients(draft.recipients, limits)
    subject = _check_text(
        draft.subject, "Subject", max_chars=limits.max_subject_chars, single_line=True
    )
    text_body = _check_body(draft.text_body, "TextBody", limits)
    html_body = _check_body(draft.html_body, "HtmlBody", limits) if draft.html_body else None
    attachments = _check_attachments(draft.attachments, limits)
    expiry_days = limits.default_expiry_days if draft.expiry_days is None else draft.expiry_days
    if not limits.min_expiry_days <= expiry_days <= limits.max_expiry_days:
        raise ValidationError(
            f"ExpiryDays must be between {limits.min_expiry_days} and {limits.max_expiry_days} days"
        )
    return ValidMessage(
        reference=reference,
        type=draft.type,
        recipients=recipients,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        attachments=attachments,
        language=draft.language or default_language,
        expiry_days=expiry_days,
        report_to=normalise_address(draft.report_to) if draft.report_to else None,
    )


def normalise_address(address: str) -> str:
    """The canonical form of one address; raises InvalidAddress with the reason.

    Strict: a part before the @ over 64 characters (RFC 5321) is refused here, rather
    than by the recipient's server after the message was accepted."""
    try:
        result = validate_email(
            address.strip(), check_deliverability=False, allow_smtputf8=True, strict=True
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(_reason(exc)) from None
    return result.normalized


def _reason(exc: EmailNotValidError) -> str:
    """The library's reason without what it quotes of the address (the characters it
    refused, the domain), which a fault must not echo: its sentence up to the detail."""
    reason = str(exc)
    for detail in (": ", " ("):
        reason = reason.split(detail, 1)[0]
    return reason.rstrip(".") + "."


def normalise_recipients(addresses: tuple[str, ...], limits: MessageLimits) -> tuple[str, ...]:
    if not addresses:
        raise ValidationError("a message needs at least one recipient")
    seen: set[str] = set()
    folded: list[str] = []
    for position, address in enumerate(addresses, start=1):
        try:
            normalised = normalise_address(address)
        except InvalidAddress as exc:
            raise InvalidAddress(
                f"Recipient {position} is not a valid e-mail address: {exc.message}"
            ) from None
        key = normalised.casefold()
        if key not in seen:  # the same mailbox twice gets one notification
            seen.add(key)
            folded.append(normalised)
    if len(folded) > limits.max_recipients:
        raise ValidationError(f"a message can have at most {limits.max_recipients} recipients")
    return tuple(folded)


def _check_text(value: str, field: str, *, max_chars: int, single_line: bool) -> str:
    if not value or not value.strip():
        raise ValidationError(f"{field} must not be empty")
    if len(value) > max_chars:
        raise ValidationError(f"{field} is longer than {max_chars} characters")
    if single_line and any(_is_control(char) for char in value):
        raise ValidationError(f"{field} must not contain line breaks or control characters")
    return value


def _check_body(value: str, field: str, limits: MessageLimits) -> str:
    size = len(value.encode("utf-8"))
    if size > limits.max_body_bytes:
        raise MessageTooLarge(
            f"{field} is {size} bytes in UTF-8; the limit is {limits.max_body_bytes} bytes"
        )
    return value


def _check_attachments(
    attachments: tuple[AttachmentDraft, ...], limits: MessageLimits
) -> tuple[AttachmentDraft, ...]:
    if len(attachments) > limits.max_attachments:
        raise ValidationError(f"a message can have at most {limits.max_attachments} attachments")
    total = sum(len(attachment.content) for attachment in attachments)
    if total > limits.max_attachment_bytes:
        raise MessageTooLarge(
            f"the attachments are {total} bytes in total; the limit is "
            f"{limits.max_attachment_bytes} bytes ({limits.max_attachment_bytes // 2**20} MiB)"
        )
    checked = []
    for position, attachment in enumerate(attachments, start=1):
        label = f"Attachment {position}"
        filename = _check_filename(attachment.filename, label, limits)
        content_type = attachment.content_type.strip().lower()
        if len(content_type) > 255 or not _CONTENT_TYPE.match(content_type):
            raise ValidationError(f"{label}: ContentType must be a media type like application/pdf")
        if not attachment.content:
            raise ValidationError(f"{label} is empty")
        reason = attachment_policy.refused_by_name(
            filename
        ) or attachment_policy.refused_by_content(attachment.content)
        if reason:
            raise AttachmentRejected(
                f"{label} is refused: {reason}", position=position, reason=reason
            )
        checked.append(
            AttachmentDraft(
                filename=filename, content_type=content_type, content=attachment.content
            )
        )
    return tuple(checked)


def _check_filename(filename: str, label: str, limits: MessageLimits) -> str:
    name = unicodedata.normalize("NFC", filename.strip())
    if not name or name in {".", ".."}:
        raise ValidationError(f"{label}: FileName must not be empty")
    if len(name) > limits.max_filename_chars:
        raise ValidationError(
            f"{label}: FileName is longer than {limits.max_filename_chars} characters"
        )
    if "/" in name or "\\" in name or any(_is_control(char) for char in name):
        raise ValidationError(
            f"{label}: FileName must be a plain file name, without folders or control characters"
        )
    return name


# Bidirectional overrides let "gpj.exe" display as "exe.jpg": refused in names.
_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Zl", "Zp"} or char in _BIDI_CONTROLS
