"""The SOAP API's types, version 1. Changing them changes the WSDL: run `make wsdl`.

Required elements are minOccurs=1 and not nillable; optional ones minOccurs=0 and not
nillable, so that generated clients get plain typed fields. Numbers are xs:int.
"""

from __future__ import annotations

from typing import Any

from spyne import Boolean, ByteArray, ComplexModel, DateTime, Enum, Integer32, Unicode

from soap_service.domain.journal import MAX_CHANGES_PAGE, MAX_MESSAGES_PAGE
from soap_service.domain.messages import MAX_BATCH_MESSAGES

TNS = "urn:soap-service:messaging:v1"


def required(type_: Any, doc: str, **attributes: Any) -> Any:
    return type_.customize(min_occurs=1, nillable=False, doc=doc, **attributes)


def optional(type_: Any, doc: str, **attributes: Any) -> Any:
    return type_.customize(min_occurs=0, nillable=False, doc=doc, **attributes)


def _enum(name: str, *values: str, doc: str) -> Any:
    enum = Enum(*values, type_name=name)
    enum.__namespace__ = TNS
    return enum.customize(doc=doc)


MessageType = _enum(
    "MessageType",
    "confidential",
    "personal",
    "registered",
    doc="confidential: whoever holds the link reads it; personal: only the registered "
    "recipient; registered: like personal, and the recipient accepts or refuses it.",
)
Language = _enum("Language", "de", "fr", "it", "en", doc="Language of the notification e-mail.")
RecipientState = _enum(
    "RecipientState",
    "queued",
    "deferred",
    "sent",
    "delivered",
    "opened",
    "accepted",
    "refused",
    "expired",
    "failed",
    "cancelled",
    doc="Final states (delivered, opened, accepted, refused, expired, failed, cancelled) "
    "never change again.",
)
MessageState = _enum(
    "MessageState",
    "queued",
    "in_progress",
    "completed",
    "cancelled",
    doc="Derived from the recipients: queued (all waiting), in_progress (some not final), "
    "completed (all final), cancelled (all withdrawn).",
)


ReceiptKind = _enum(
    "ReceiptKind",
    "submission",
    "pickup",
    "refusal",
    "expiry",
    doc="submission: the service accepted the message; pickup: the recipient accepted it; "
    "refusal: the recipient refused it; expiry: no decision before it expired.",
)


def _required_string(name: str, max_length: int, doc: str) -> Any:
    """A named, length-limited, required string type for one field.

    Customising a restricted Spyne type again (for minOccurs or a doc) would publish a
    second, anonymous copy of the type, so each field gets its own named type instead.
    """
    string = Unicode(max_length, type_name=name, min_occurs=1, nillable=False, doc=doc)
    string.__namespace__ = TNS
    return string


class _Model(ComplexModel):
    __namespace__ = TNS


class Recipient(_Model):
    _type_info = [
        (
            "Address",
            _required_string(
                "EmailAddress", 320, "E-mail address; internationalised domains allowed."
            ),
        ),
    ]


class RecipientList(_Model):
    _type_info = [
        ("Recipient", Recipient.customize(min_occurs=1, max_occurs=100, nillable=False)),
    ]


class Attachment(_Model):
    _type_info = [
        (
            "FileName",
            _required_string("FileName", 255, "File name without folders, e.g. payslip.pdf."),
        ),
        ("ContentType", _required_string("MediaType", 255, "Media type, e.g. application/pdf.")),
        ("Content", required(ByteArray, "The file's bytes, base64.")),
    ]


class AttachmentList(_Model):
    _type_info = [
        ("Attachment", Attachment.customize(min_occurs=0, max_occurs=20, nillable=False)),
    ]


class OutgoingMessage(_Model):
    """A message to send. At most 30 MiB of attachments; programs, scripts and macros are
    refused."""

    _type_info = [
        (
            "Reference",
            _required_string(
                "Reference",
                100,
                "Your own unique reference: sending the same reference again with the same "
                "content returns the original result instead of sending twice.",
            ),
        ),
        ("Type", required(MessageType, "The kind of message.")),
        ("Recipients", required(RecipientList, "1 to 100 recipients; duplicates are folded.")),
        ("Subject", _required_string("Subject", 255, "Subject, at most 255 characters, one line.")),
        ("TextBody", required(Unicode, "Plain text body, at most 1 MiB in UTF-8.")),
        ("HtmlBody", optional(Unicode, "Optional HTML body, at most 1 MiB in UTF-8.")),
        ("Attachments", optional(AttachmentList, "Up to 20 attachments.")),
        ("Language", optional(Language, "Notification language; default de.")),
        (
            "ExpiryDays",
            optional(Integer32, "Days until the message expires, 1 to 30; default 7."),
        ),
    ]


class RecipientStatus(_Model):
    _type_info = [
        ("Address", required(Unicode, "The recipient's address, normalised.")),
        ("State", required(RecipientState, "The recipient's current state.")),
        ("Attempts", required(Integer32, "Delivery attempts so far.")),
        ("StateChangedAt", required(DateTime, "When the state last changed.")),
        ("LastAttemptAt", optional(DateTime, "When delivery was last tried.")),
        ("NextAttemptAt", optional(DateTime, "When delivery will be tried again.")),
        ("LastError", optional(Unicode, "Why the last attempt failed.")),
    ]


class RecipientStatusList(_Model):
    _type_info = [
        ("Recipient", RecipientStatus.customize(min_occurs=1, max_occurs=100, nillable=False)),
    ]


class MessageStatus(_Model):
    """A message and the state of each of its recipients."""

    _type_info = [
        ("MessageId", required(Unicode, "The service's id of the message.")),
        ("Reference", required(Unicode, "The sender's reference.")),
        ("Type", required(MessageType, "The kind of message.")),
        ("State", required(MessageState, "The message's state, derived from its recipients.")),
        ("Language", required(Language, "The notification language.")),
        ("AcceptedAt", required(DateTime, "When the service accepted and stored the message.")),
        ("ExpiresAt", required(DateTime, "When the message expires.")),
        ("Recipients", required(RecipientStatusList, "Every recipient, in the order sent.")),
    ]


class Receipt(_Model):
    """A signed receipt of a registered message (PDF, signed with the service's key)."""

    _type_info = [
        ("Kind", required(ReceiptKind, "What the receipt attests.")),
        ("MessageId", required(Unicode, "The message it is about.")),
        ("RecipientAddress", optional(Unicode, "The recipient it is about (not for submission).")),
        ("IssuedAt", required(DateTime, "When the receipt was first issued.")),
        ("FileName", required(Unicode, "A file name for the document.")),
        ("ContentType", required(Unicode, "application/pdf")),
        ("Content", required(ByteArray, "The signed PDF document, base64.")),
    ]


class EntryFault(_Model):
    """Why one message of a batch was refused: the fault SendMessage would have given."""

    _type_info = [
        ("Code", required(Unicode, "The fault code, e.g. Client.InvalidAddress.")),
        ("Text", required(Unicode, "What is wrong, for the person reading it.")),
    ]


class MessageResult(_Model):
    """One message of a SendMessages call: its status, or its fault."""

    _type_info = [
        ("Position", required(Integer32, "The message's place in the request, from 1.")),
        ("Reference", optional(Unicode, "The message's Reference, if it could be read.")),
        ("Status", optional(MessageStatus, "The stored message, if it was accepted.")),
        ("Fault", optional(EntryFault, "Why it was refused, if it was.")),
    ]


class MessageResultList(_Model):
    _type_info = [
        (
            "Result",
            MessageResult.customize(min_occurs=1, max_occurs=MAX_BATCH_MESSAGES, nillable=False),
        ),
    ]


class StatusChange(_Model):
    """One recipient's change of state."""

    _type_info = [
        ("MessageId", required(Unicode, "The message.")),
        ("Reference", required(Unicode, "The sender's reference of the message.")),
        ("RecipientAddress", required(Unicode, "The recipient whose state changed.")),
        ("State", required(RecipientState, "The state it took.")),
        ("ChangedAt", required(DateTime, "When.")),
        ("Detail", optional(Unicode, "What happened, e.g. the mail server's answer.")),
    ]


class StatusChangeList(_Model):
    _type_info = [
        (
            "Change",
            StatusChange.customize(min_occurs=0, max_occurs=MAX_CHANGES_PAGE, nillable=False),
        ),
        ("NextCursor", required(Unicode, "Where to go on from: pass it to the next call.")),
        (
            "HasMore",
            required(
                Boolean,
                "Whether more changes may be waiting: call again at once. A page may hold "
                "fewer changes than PageSize, even none, and still have more after it.",
            ),
        ),
    ]


class MessageList(_Model):
    _type_info = [
        (
            "Message",
            MessageStatus.customize(min_occurs=0, max_occurs=MAX_MESSAGES_PAGE, nillable=False),
        ),
        ("NextCursor", optional(Unicode, "For the next page; absent on the last page.")),
    ]
